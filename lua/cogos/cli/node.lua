-- cogos.cli.node — `cogos start|stop|status`: the node of the selected cogent.

local config = require "cogos.config"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open, array = common.open, common.array

local M = {}

M.start = { help = "boot an image and run the node", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " [IMAGE] [--clean] [--foreground] [--llm-base-url URL]",
    max = 1, flags = { clean = "bool", foreground = "bool", ["llm-base-url"] = "string" } })
  local t = config.target()
  local llm = {}
  for k, v in pairs(t.entry.llm or {}) do llm[k] = v end
  llm.base_url = o["llm-base-url"] or llm.base_url
  require("cogos.node").start(t, { image = pos[1], clean = o.clean, foreground = o.foreground, llm = llm })
end }

M.stop = { help = "stop the node", fn = function(argv, i, p)
  args.parse(argv, i, { usage = p, max = 0 })
  local t = config.target()
  local pid = require("cogos.node").stop(t)
  print("stopped cogent " .. t.cogent .. " (pid " .. pid .. ")")
end }

M.status = { help = "show the cogent: node, processes, counts", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local db, t = open()
  local pid = config.node_pid(t)
  local procs = db:process_list({})
  local s = { cogent = t.cogent, cogtainer = t.cogtainer, running = pid ~= nil, pid = pid,
    processes = array(procs), files = #db:file_list({ limit = 100000 }),
    capabilities = #db:capability_list(), channels = #db:channel_list() }
  if o.json then return out.json(s) end
  print(string.format("cogent %s (cogtainer %s): %s", t.cogent, t.cogtainer,
    pid and ("running, pid " .. pid) or "stopped"))
  print(string.format("%d processes, %d files, %d capabilities, %d channels", #procs, s.files,
    s.capabilities, s.channels))
  out.table(procs, { "name", "status", "mode", "executor" })
end }


return M
