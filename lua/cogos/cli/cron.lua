-- cogos.cli.cron — `cogos cron list|add|enable|disable|delete`: rules that send
-- a message once per matching minute (5-field expressions, UTC).

local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open, ok_or_fail, array = common.open, common.ok_or_fail, common.array

local M = {}

M.list = { help = "list cron rules", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local rows = open():cron_list()
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "id", "expression", "channel_name", "enabled", "last_fired_minute" })
end }

M.add = { help = "add a rule: EXPR CHANNEL [--payload JSON]", fn = function(argv, i, p)
  local usage = p .. " 'M H DOM MON DOW' CHANNEL [--payload JSON] [--json]"
  local o, pos = args.parse(argv, i, { usage = usage, min = 2, max = 2,
    flags = { payload = "string", json = "bool" } })
  local payload = o.payload and common.parse_json_object(o.payload, "--payload") or {}
  local db, t = open()
  local row = ok_or_fail(db:cron_add({ expression = pos[1], channel = pos[2], payload = payload }))
  common.poke(t)
  if o.json then return out.json(row) end
  print("cron " .. row.id .. ": '" .. row.expression .. "' -> " .. row.channel_name)
end }

local function set_enabled(enabled)
  return function(argv, i, p)
    local o, pos = args.parse(argv, i, { usage = p .. " ID [--json]", min = 1, max = 1, flags = { json = "bool" } })
    local row = ok_or_fail(open():cron_set_enabled(pos[1], enabled))
    if o.json then return out.json(row) end
    print((enabled and "enabled" or "disabled") .. " cron " .. pos[1])
  end
end

M.enable = { help = "enable a rule", fn = set_enabled(true) }
M.disable = { help = "disable a rule", fn = set_enabled(false) }

M.delete = { help = "delete a rule", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " ID", min = 1, max = 1 })
  ok_or_fail(open():cron_delete(pos[1]))
  print("deleted cron " .. pos[1])
end }

return M
