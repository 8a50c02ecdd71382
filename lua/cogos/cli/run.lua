-- cogos.cli.run — `cogos run list|show`.

local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open = common.open
local ok_or_fail = common.ok_or_fail
local array = common.array
local with_process_names = common.with_process_names

local M = {}

local RUN_COLS = { "id", "process_name", "status", "tokens_in", "tokens_out", "duration_ms", "created_at" }

M.list = { help = "list runs, newest first", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--process NAME] [--limit N] [--json]", max = 0,
    flags = { process = "string", limit = "integer", json = "bool" } })
  local db = open()
  if o.process then ok_or_fail(db:process_get(o.process)) end
  local rows = with_process_names(db, db:run_list({ process = o.process, limit = o.limit or 20 }))
  if o.json then return out.json(array(rows)) end
  out.table(rows, RUN_COLS)
end }

M.show = { help = "show one run", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " ID [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local r = with_process_names(db, { ok_or_fail(db:run_get(pos[1])) })[1]
  if o.json then return out.json(r) end
  out.record(r, { "id", "process_name", "status", "tokens_in", "tokens_out", "cost_usd", "duration_ms",
    "model_version", "error", "message", "created_at", "completed_at" })
end }


return M
