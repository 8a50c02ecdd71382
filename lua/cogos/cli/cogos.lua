-- cogos.cli.cogos — `cogos`: operate the selected cogent.

local core = require "cogos.core"
local config = require "cogos.config"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"

local json = core.json

-- Opens the selected cogent's database.
local function open()
  local t = config.target()
  local db, err = core.store.open(t.db_path)
  if not db then args.fail(err) end
  db:migrate()
  return db, t
end

-- Tells a running node to look for work now; no node is fine (it looks at start).
local function poke(t)
  core.loop.notify(t.sock_path, "wake")
end

local function ok_or_fail(v, err)
  if v == nil then args.fail(err) end
  return v, err
end

local function array(t) return setmetatable(t, json.array_mt) end

-- Adds process_name to rows that carry a process id, for people and scripts.
local function with_process_names(db, rows)
  local names = {}
  for _, r in ipairs(rows) do
    if r.process and names[r.process] == nil then
      local p = db:process_get(r.process)
      names[r.process] = p and p.name or false
    end
    r.process_name = names[r.process] or nil
  end
  return rows
end

local function parse_json_object(text, what)
  local v, err = json.decode(text)
  if v == nil then args.fail("malformed JSON " .. what .. ": " .. err) end
  if type(v) ~= "table" or json.is_array(v) then args.fail(what .. " must be a JSON object") end
  return v
end

local function group(name, commands, help)
  return { help = help, fn = function(argv, i, prefix)
    return args.subcommand(prefix, argv, i, commands)
  end, name = name }
end

-- {============ process

local process = {}

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

process.create = { help = "create or update a process", fn = function(argv, i, p)
  local usage = p .. " NAME [--mode daemon|one_shot] [--content TEXT] [--executor llm|lua] [--model M]"
    .. " [--priority P] [--capability [grant=]type[:{scope}]]... [--handler CHANNEL]... [--json]"
  local o, pos = args.parse(argv, i, { usage = usage, min = 1, max = 1,
    flags = { mode = "string", content = "string", executor = "string", model = "string",
      priority = "number", capability = "list", handler = "list", json = "bool",
      ["max-duration-ms"] = "integer", ["max-retries"] = "integer" },
    aliases = { cap = "capability" },
    choices = { mode = { "daemon", "one_shot" }, executor = { "llm", "lua" } } })
  local grants = {}
  for _, c in ipairs(o.capability or {}) do grants[#grants + 1] = parse_capability(c) end
  local db, t = open()
  for _, g in ipairs(grants) do ok_or_fail(db:capability_get(g.capability)) end
  local mode = o.mode or "one_shot"
  db:begin()
  local row = db:process_upsert({ name = pos[1], mode = mode, content = o.content or "",
    executor = o.executor or "llm", model = o.model, priority = o.priority or 0,
    max_duration_ms = o["max-duration-ms"], max_retries = o["max-retries"],
    status = mode == "daemon" and "waiting" or "runnable" })
  for _, g in ipairs(grants) do assert(db:grant_add(row.id, g)) end
  for _, ch in ipairs(o.handler or {}) do
    db:channel_create(ch)
    assert(db:handler_add(row.id, ch))
  end
  db:commit()
  poke(t)
  if o.json then return out.json(db:process_get(row.id)) end
  print("process " .. row.name .. " (" .. row.id .. ") " .. row.status)
end }

process.list = { help = "list processes", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--status S] [--json]", max = 0,
    flags = { json = "bool", status = "string" } })
  local db = open()
  local rows = db:process_list({ status = o.status })
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "name", "status", "mode", "executor", "priority", "id" })
end }

process.get = { help = "show one process", fn = function(argv, i, p)
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

process.run = { help = "make a process runnable now", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " NAME", min = 1, max = 1 })
  local db, t = open()
  local row = ok_or_fail(db:process_get(pos[1]))
  db:process_set_status(row.id, "runnable")
  poke(t)
  print("process " .. row.name .. " runnable")
end }

process.disable = { help = "disable a process and its children", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " NAME", min = 1, max = 1 })
  local db = open()
  local row = ok_or_fail(db:process_get(pos[1]))
  local n = db:process_disable(row.id)
  print("disabled " .. row.name .. (n and n > 1 and (" and " .. (n - 1) .. " descendant(s)") or ""))
end }

-- }============

-- {============ file

local file = {}

file.list = { help = "list files", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--prefix P] [--limit N] [--json]", max = 0,
    flags = { prefix = "string", limit = "integer", json = "bool" } })
  local db = open()
  local rows = db:file_list({ prefix = o.prefix, limit = o.limit })
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "key", "version", "size", "updated_at" })
end }

file.get = { help = "print a file's content", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " KEY [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local f = ok_or_fail(db:file_get(pos[1]))
  if o.json then return out.json(f) end
  io.stdout:write(f.content)
end }

file.create = { help = "write a file (a new version when it changed)", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " KEY CONTENT [--source S] [--json]  (CONTENT - reads stdin)",
    min = 2, max = 2, flags = { source = "string", json = "bool" } })
  local content = pos[2] == "-" and io.stdin:read("a") or pos[2]
  local db = open()
  local r = ok_or_fail(db:file_write(pos[1], content, { source = o.source or "human" }))
  if o.json then return out.json(r) end
  print(string.format("%s: version %d (%s)", r.key, r.version,
    r.created and "created" or r.changed and "updated" or "unchanged"))
end }

file.load = { help = "write every file of a folder", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " DIR [--prefix P] [--source S] [--json]", min = 1, max = 1,
    flags = { prefix = "string", source = "string", json = "bool" } })
  local st = core.sys.stat(pos[1])
  if not st or st.type ~= "dir" then args.fail("not a folder: " .. pos[1]) end
  local files = {}
  local function walk(dir, rel)
    local names = core.sys.listdir(dir) or {}
    table.sort(names)
    for _, n in ipairs(names) do
      if n:sub(1, 1) ~= "." then
        local path, r = dir .. "/" .. n, rel .. n
        local s = core.sys.stat(path)
        if s and s.type == "dir" then walk(path, r .. "/")
        elseif s and s.type == "file" then
          local f = assert(io.open(path, "rb"))
          files[#files + 1] = { key = (o.prefix or "") .. r, content = f:read("a") }
          f:close()
        end
      end
    end
  end
  walk(pos[1], "")
  local db = open()
  local counts = { created = 0, updated = 0, unchanged = 0 }
  db:begin()
  for _, f in ipairs(files) do
    local r = ok_or_fail(db:file_write(f.key, f.content, { source = o.source or "human" }))
    local k = r.created and "created" or r.changed and "updated" or "unchanged"
    counts[k] = counts[k] + 1
  end
  db:commit()
  if o.json then return out.json(counts) end
  print(string.format("%d created, %d updated, %d unchanged", counts.created, counts.updated, counts.unchanged))
end }

file.history = { help = "list a file's versions", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " KEY [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local rows = ok_or_fail(db:file_history(pos[1]))
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "version", "is_active", "source", "run_id", "created_at" })
end }

-- }============

-- {============ channel, handler

local channel = {}

channel.send = { help = "append a message (wakes its handlers)", fn = function(argv, i, p)
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

channel.list = { help = "list channels", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local db = open()
  local rows = db:channel_list()
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "name", "channel_type", "created_at" })
end }

channel.read = { help = "show a channel's messages, newest first", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " NAME [--limit N] [--json]", min = 1, max = 1,
    flags = { limit = "integer", json = "bool" } })
  local db = open()
  ok_or_fail(db:channel_get(pos[1]))
  local rows = db:messages(pos[1], { limit = o.limit or 20 })
  if o.json then return out.json(array(rows)) end
  for _, m in ipairs(rows) do print("[" .. m.created_at .. "] " .. json.encode(m.payload)) end
end }

local handler = {}

handler.list = { help = "list handlers", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--process NAME] [--json]", max = 0,
    flags = { process = "string", json = "bool" } })
  local db = open()
  local pid
  if o.process then pid = ok_or_fail(db:process_get(o.process)).id end
  local rows = with_process_names(db, db:handler_list({ process = pid }))
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "id", "process_name", "channel", "enabled" })
end }

handler.add = { help = "subscribe a process to a channel", fn = function(argv, i, p)
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

handler.remove = { help = "remove a handler", fn = function(argv, i, p)
  local _, pos = args.parse(argv, i, { usage = p .. " ID", min = 1, max = 1 })
  local db = open()
  ok_or_fail(db:handler_remove(pos[1]))
  print("removed handler " .. pos[1])
end }

-- }============

-- {============ run, capability

local run = {}

local RUN_COLS = { "id", "process_name", "status", "tokens_in", "tokens_out", "duration_ms", "created_at" }

run.list = { help = "list runs, newest first", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--process NAME] [--limit N] [--json]", max = 0,
    flags = { process = "string", limit = "integer", json = "bool" } })
  local db = open()
  if o.process then ok_or_fail(db:process_get(o.process)) end
  local rows = with_process_names(db, db:run_list({ process = o.process, limit = o.limit or 20 }))
  if o.json then return out.json(array(rows)) end
  out.table(rows, RUN_COLS)
end }

run.show = { help = "show one run", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " ID [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local r = with_process_names(db, { ok_or_fail(db:run_get(pos[1])) })[1]
  if o.json then return out.json(r) end
  out.record(r, { "id", "process_name", "status", "tokens_in", "tokens_out", "cost_usd", "duration_ms",
    "model_version", "error", "message", "created_at", "completed_at" })
end }

local capability = {}

capability.list = { help = "list capability types", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local db = open()
  local rows = db:capability_list()
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "name", "enabled", "handler", "description" })
end }

capability.get = { help = "show one capability type", fn = function(argv, i, p)
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

-- }============

-- {============ node

local commands = {
  process = group("process", process, "processes: list|get|create|run|disable"),
  file = group("file", file, "files: list|get|create|load|history"),
  channel = group("channel", channel, "channels: send|list|read"),
  handler = group("handler", handler, "handlers: list|add|remove"),
  run = group("run", run, "runs: list|show"),
  capability = group("capability", capability, "capability types: list|get"),
}

commands.start = { help = "boot an image and run the node", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " [IMAGE] [--clean] [--foreground] [--llm-base-url URL]",
    max = 1, flags = { clean = "bool", foreground = "bool", ["llm-base-url"] = "string" } })
  local t = config.target()
  local llm = {}
  for k, v in pairs(t.entry.llm or {}) do llm[k] = v end
  llm.base_url = o["llm-base-url"] or llm.base_url
  require("cogos.node").start(t, { image = pos[1], clean = o.clean, foreground = o.foreground, llm = llm })
end }

commands.stop = { help = "stop the node", fn = function(argv, i, p)
  args.parse(argv, i, { usage = p, max = 0 })
  local t = config.target()
  local pid = require("cogos.node").stop(t)
  print("stopped cogent " .. t.cogent .. " (pid " .. pid .. ")")
end }

commands.status = { help = "show the cogent: node, processes, counts", fn = function(argv, i, p)
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

-- }============

return function(argv, first, prog)
  return args.subcommand(prog, argv, first, commands)
end
