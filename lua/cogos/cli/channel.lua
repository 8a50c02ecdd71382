-- cogos.cli.channel — `cogos channel send|list|read`.

local core = require "cogos.core"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local json = core.json
local open = common.open
local poke = common.poke
local ok_or_fail = common.ok_or_fail
local array = common.array
local parse_json_object = common.parse_json_object

local M = {}

M.send = { help = "append a message (wakes its handlers)", fn = function(argv, i, p)
  local usage = p .. " NAME --payload JSON [--idempotency-key K] [--json]"
  local o, pos = args.parse(argv, i, { usage = usage, min = 1, max = 1,
    flags = { payload = "string", ["idempotency-key"] = "string", json = "bool" } })
  local payload = parse_json_object(o.payload or "{}", "payload")
  local db, t = open()
  local r = ok_or_fail(db:send(pos[1], payload, { idempotency_key = o["idempotency-key"] }))
  if r.deliveries and r.deliveries > 0 then poke(t) end
  if o.json then return out.json(r) end
  print(string.format("message %s on %s (%d deliveries%s)", r.id, pos[1], r.deliveries or 0,
    r.duplicate and ", duplicate" or ""))
end }

M.list = { help = "list channels", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local db = open()
  local rows = db:channel_list()
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "name", "channel_type", "created_at" })
end }

M.read = { help = "show a channel's messages, newest first", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " NAME [--limit N] [--json]", min = 1, max = 1,
    flags = { limit = "integer", json = "bool" } })
  local db = open()
  local rows = ok_or_fail(db:messages(pos[1], { limit = o.limit or 20 }))
  if o.json then return out.json(array(rows)) end
  for _, m in ipairs(rows) do print("[" .. m.created_at .. "] " .. json.encode(m.payload)) end
end }


return M
