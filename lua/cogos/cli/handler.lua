-- cogos.cli.handler — `cogos handler list|add|remove`.

local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open = common.open
local ok_or_fail = common.ok_or_fail
local array = common.array
local with_process_names = common.with_process_names

local M = {}

M.list = { help = "list handlers", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--process NAME] [--json]", max = 0,
    flags = { process = "string", json = "bool" } })
  local db = open()
  local pid
  if o.process then pid = ok_or_fail(db:process_get(o.process)).id end
  local rows = with_process_names(db, db:handler_list({ process = pid }))
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "id", "process_name", "channel", "enabled" })
end }

M.add = { help = "subscribe a process to a channel", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " PROCESS CHANNEL [--json]", min = 2, max = 2,
    flags = { json = "bool" } })
  local db = open()
  local proc = ok_or_fail(db:process_get(pos[1]))
  db:begin()
  db:channel_create(pos[2])
  local row = db:handler_add(proc.id, pos[2])
  db:commit()
  if o.json then return out.json(row) end
  print("handler " .. row.id .. ": " .. proc.name .. " <- " .. pos[2])
end }

M.remove = { help = "remove a handler", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " ID", min = 1, max = 1 })
  local db = open()
  ok_or_fail(db:handler_remove(pos[1]))
  print("removed handler " .. pos[1])
end }


return M
