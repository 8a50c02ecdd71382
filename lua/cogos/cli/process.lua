-- cogos.cli.process — `cogos process list|get|create|run|disable`.

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

-- "[grant=]type[:{json scope}]"
local function parse_capability(spec)
  local grant, rest = spec:match("^([%w_]+)=(.*)$")
  rest = rest or spec
  local ctype, scope = rest:match("^([%w_]+):(.*)$")
  ctype = ctype or rest
  if not ctype:match("^[%w_]+$") then
    args.usage_error("bad --capability '" .. spec .. "' (want [grant=]type[:{json scope}])")
  end
  local config_t = scope and parse_json_object(scope, "scope of --capability " .. spec) or {}
  return { name = grant or ctype, capability = ctype, config = config_t }
end

M.create = { help = "create or update a process", fn = function(argv, i, p)
  local usage = p .. " NAME [--mode daemon|one_shot] [--content TEXT] [--executor llm|lua] [--model M]"
    .. " [--priority P] [--capability [grant=]type[:{scope}]]... [--handler CHANNEL]..."
    .. " [--required-tag TAG]... [--idle-timeout-ms MS] [--json]"
  local o, pos = args.parse(argv, i, { usage = usage, min = 1, max = 1,
    flags = { mode = "string", content = "string", executor = "string", model = "string",
      priority = "number", capability = "list", handler = "list", json = "bool",
      ["max-duration-ms"] = "integer", ["max-retries"] = "integer", ["required-tag"] = "list",
      ["idle-timeout-ms"] = "integer" },
    aliases = { cap = "capability" },
    choices = { mode = { "daemon", "one_shot" }, executor = { "llm", "lua" } } })
  local grants = {}
  for _, c in ipairs(o.capability or {}) do grants[#grants + 1] = parse_capability(c) end
  local mode = o.mode or "one_shot"
  for _, tag in ipairs(o["required-tag"] or {}) do
    if tag == "" then args.usage_error("--required-tag needs a non-empty tag", usage) end
  end
  local idle = o["idle-timeout-ms"]
  if idle and idle <= 0 then args.usage_error("--idle-timeout-ms must be a positive integer (ms)", usage) end
  if idle and mode ~= "daemon" then args.usage_error("--idle-timeout-ms is for daemons (--mode daemon)", usage) end
  local db, t = open()
  for _, g in ipairs(grants) do ok_or_fail(db:capability_get(g.capability)) end
  db:begin()
  local row = ok_or_fail(db:process_upsert({ name = pos[1], mode = mode, content = o.content or "",
    executor = o.executor or "llm", model = o.model, priority = o.priority or 0,
    max_duration_ms = o["max-duration-ms"], max_retries = o["max-retries"],
    required_tags = o["required-tag"] and array(o["required-tag"]), idle_timeout_ms = idle,
    status = mode == "daemon" and "waiting" or "runnable", grants = grants }))
  for _, ch in ipairs(o.handler or {}) do
    db:channel_create(ch)
    assert(db:handler_add(row.id, ch))
  end
  db:commit()
  poke(t)
  if o.json then return out.json(db:process_get(row.id)) end
  print("process " .. row.name .. " (" .. row.id .. ") " .. row.status)
end }

M.list = { help = "list processes", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--status S] [--json]", max = 0,
    flags = { json = "bool", status = "string" } })
  local db = open()
  local rows = db:process_list({ status = o.status })
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "name", "status", "mode", "executor", "priority", "id" })
end }

M.get = { help = "show one process", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " NAME [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local row = ok_or_fail(db:process_get(pos[1]))
  row.capabilities = array(db:grants(row.id))
  row.handlers = array(db:handler_list({ process = row.id }))
  if o.json then return out.json(row) end
  out.record(row, { "id", "name", "status", "mode", "executor", "model", "priority", "created_at", "updated_at" })
  for _, g in ipairs(row.capabilities) do
    local scope = next(g.config or {}) and (" " .. json.encode(g.config)) or ""
    print("grant " .. g.name .. " (" .. g.capability .. ")" .. scope)
  end
  for _, h in ipairs(row.handlers) do print("handler " .. h.channel) end
  print("content:\n" .. (row.content or ""))
end }

M.run = { help = "make a process runnable now", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " NAME", min = 1, max = 1 })
  local db, t = open()
  local row = ok_or_fail(db:process_get(pos[1]))
  db:process_set_status(row.id, "runnable")
  poke(t)
  print("process " .. row.name .. " runnable")
end }

M.disable = { help = "disable a process and its children", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " NAME", min = 1, max = 1 })
  local db = open()
  local row = ok_or_fail(db:process_get(pos[1]))
  local n = db:process_disable(row.id)
  print("disabled " .. row.name .. (n and n > 1 and (" and " .. (n - 1) .. " descendant(s)") or ""))
end }


return M
