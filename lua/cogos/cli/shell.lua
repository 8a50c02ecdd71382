-- cogos.cli.shell — `cogos shell`: the interactive shell over the selected cogent.

local args = require "cogos.cli.args"
local common = require "cogos.cli.common"

local M = {}

M.shell = { help = "an interactive shell over the cogent (or -c 'CMD; CMD', or commands on stdin)",
  fn = function(argv, i, p)
    local o = args.parse(argv, i, { usage = p .. " [-c COMMANDS]", max = 0, flags = { c = "string" } })
    local db, t = common.open()
    local llm = {}
    for k, v in pairs(t.entry.llm or {}) do llm[k] = v end
    local failed = require("cogos.shell.repl").main({ db = db, target = t, llm = llm, command = o.c })
    db:close()
    if failed > 0 then args.fail(failed .. " command" .. (failed == 1 and "" or "s") .. " failed") end
  end }

return M
