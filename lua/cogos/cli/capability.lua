-- cogos.cli.capability — `cogos capability list|get`.

local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open, ok_or_fail, array = common.open, common.ok_or_fail, common.array

local M = {}

M.list = { help = "list capability types", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local db = open()
  local rows = db:capability_list()
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "name", "enabled", "handler", "description" })
end }

M.get = { help = "show one capability type", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " NAME [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local c = ok_or_fail(db:capability_get(pos[1]))
  local mod = require("cogos.caps").load(c.handler or c.name)
  if mod then
    c.methods = {}
    for name, m in pairs(mod.methods) do c.methods[name] = { op = m.op, doc = m.doc } end
  end
  if o.json then return out.json(c) end
  out.record(c, { "name", "enabled", "handler", "description" })
  if mod then print(require("cogos.caps").help(c.name, mod)) end
end }


return M
