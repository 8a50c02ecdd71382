-- procs — the process tree: spawn children with delegated grants, list, get,
-- detach, and process handles (send, recv, kill, status, runs, stdin, stdout,
-- stderr, wait, wait_any, wait_all). Reference §2.8–§2.10.
--
-- A handle is plain data, {id =, name =}; every method takes it (or a name or
-- id) first. Scope: ops (list, get, spawn, detach, kill, send, recv, status,
-- runs, stdin, stdout, stderr, wait). What changes another process (kill, send,
-- stdin, detach, wait) is limited to the caller's own descendants.
--
-- Waits. In a `lua` run, wait/wait_any/wait_all record a run-linked wait
-- condition and park the run's coroutine (core.sched.park): the code continues
-- where it waited when the children exit, with {children = {id = child:exited
-- payload}}. In an `llm` run they record the condition, end the run
-- `suspended` (ctx.run_state.suspend) and return nil, "waiting: ..."; the next run gets
-- the results. A node that stops while a lua run is parked: the run is
-- recovered at the next start (db:recover) and the process runs again as a new
-- run with event.wait_results, not from where it waited.

local core = require "cogos.core"

local json = core.json

local RECV_LIMIT, LIST_LIMIT, RUNS_LIMIT = 10, 200, 10
local ARROW = "\u{2192}"

local NONE = {} -- an empty list, never written to

local function spawn_channel(from, to) return "spawn:" .. from .. ARROW .. to end

local function handle(p) return { id = p.id, name = p.name } end

-- The process a handle, name or id means.
local function resolve(ctx, h, what)
  local key = type(h) == "table" and (h.id or h.name) or h
  if type(key) ~= "string" or key == "" then
    return nil, what .. ": expected a process handle, name or id"
  end
  local p, err = ctx.db:process_get(key)
  if not p then return nil, what .. ": " .. err end
  return p
end

-- True when p descends from the caller.
local function is_descendant(ctx, p)
  local seen, cur = {}, p
  while cur and cur.parent_process and not seen[cur.id] do
    if cur.parent_process == ctx.process.id then return true end
    seen[cur.id] = true
    cur = ctx.db:process_get(cur.parent_process)
  end
  return false
end

local function descendant(ctx, h, what)
  local p, err = resolve(ctx, h, what)
  if not p then return nil, err end
  if not is_descendant(ctx, p) then
    return nil, what .. ": '" .. p.name .. "' is not a descendant of this process"
  end
  return p
end

local function child(ctx, h, what)
  local p, err = resolve(ctx, h, what)
  if not p then return nil, err end
  if p.parent_process ~= ctx.process.id then
    return nil, what .. ": '" .. p.name .. "' is not a child of this process"
  end
  return p
end

local function nonempty(t) return type(t) == "table" and next(t) ~= nil end

-- {============ delegation (§2.8 step 4)

-- The type and scope a `capabilities` entry asks for: a grant passed from the
-- sandbox (a core.sandbox.GRANT descriptor: its real type and scope), a table
-- {type =, scope =}, or true (the type named like the grant, unscoped).
local function requested(grant_name, v)
  if v == true then return grant_name, {} end
  if type(v) ~= "table" then
    return nil, "capability '" .. grant_name .. "' must be a grant, {type=, scope=} or true"
  end
  if getmetatable(v) == core.sandbox.GRANT then return v.type or grant_name, v.scope or {} end
  local ctype = v.type or grant_name
  if type(ctype) ~= "string" then return nil, "capability '" .. grant_name .. "': type must be a string" end
  if v.scope ~= nil and type(v.scope) ~= "table" then
    return nil, "capability '" .. grant_name .. "': scope must be a table"
  end
  return ctype, v.scope or {}
end

-- What a run holds by capability type: its authority, fixed when it started,
-- like its sandbox's grants. Made once per run (per grants list).
local held_by_run = setmetatable({}, { __mode = "k" })

local function held_of(grants)
  local held = held_by_run[grants]
  if held then return held end
  held = {}
  for _, g in ipairs(grants) do
    held[g.type] = held[g.type] or {}
    table.insert(held[g.type], g.config)
  end
  held_by_run[grants] = held
  return held
end

-- The grants to create for the child, or nil, err; writes nothing.
local function delegation(ctx, caps)
  if caps == nil then return NONE end
  if type(caps) ~= "table" or json.is_array(caps) and next(caps) ~= nil then
    return nil, "capabilities must map grant names to grants"
  end
  local held = held_of(ctx.grants)
  local out, names = {}, {}
  for name in pairs(caps) do
    if type(name) ~= "string" or name == "" then return nil, "capabilities: grant names must be strings" end
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local ctype, scope = requested(name, caps[name])
    if not ctype then return nil, "Cannot delegate '" .. name .. "': " .. scope end
    if not held[ctype] then
      local cap = ctx.db:capability_get(ctype)
      if not cap or cap.enabled == false then
        return nil, "Cannot delegate '" .. name .. "': unknown or disabled capability '" .. ctype .. "'"
      end
      return nil, "Cannot delegate '" .. name .. "': this process holds no '" .. ctype .. "' grant"
    end
    local ok, why = false, nil
    for _, pscope in ipairs(held[ctype]) do
      if not nonempty(pscope) then
        ok = true
      else
        local cok, c, cwhy = pcall(core.sandbox.covers, pscope, scope)
        if not cok then return nil, "Cannot delegate '" .. name .. "': " .. tostring(c) end
        if c then ok = true else why = why or cwhy end
      end
      if ok then break end
    end
    if not ok then
      if not nonempty(scope) then why = "a scoped grant cannot be handed out unscoped" end
      return nil, "Cannot delegate '" .. name .. "': " .. (why or "the scope is wider than this process's")
    end
    out[#out + 1] = { capability = ctype, name = name, config = scope }
  end
  return out
end

-- }============

local MODES = { daemon = true, one_shot = true }
local INT_OPTS = { "max_duration_ms", "max_retries" }
local EXECUTORS = { llm = true, lua = true }

-- A list (a sequence and nothing else) of non-empty strings.
local function is_tag_list(v)
  if type(v) ~= "table" or getmetatable(v) == core.sandbox.GRANT then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n ~= #v then return false end
  for _, tag in ipairs(v) do
    if type(tag) ~= "string" or tag == "" then return false end
  end
  return true
end

local function check_opts(o)
  if type(o) ~= "table" then return "spawn: expected a table {name=, ...}" end
  if type(o.name) ~= "string" or o.name == "" then return "spawn: name must be a non-empty string" end
  if o.content ~= nil and type(o.content) ~= "string" then return "spawn: content must be a string" end
  if o.mode ~= nil and not MODES[o.mode] then return "spawn: mode must be daemon or one_shot" end
  if o.executor ~= nil and not EXECUTORS[o.executor] then return "spawn: executor must be llm or lua" end
  if o.model ~= nil and type(o.model) ~= "string" then return "spawn: model must be a string" end
  if o.priority ~= nil and type(o.priority) ~= "number" then return "spawn: priority must be a number" end
  for _, k in ipairs(INT_OPTS) do
    if o[k] ~= nil and not math.tointeger(o[k]) then return "spawn: " .. k .. " must be an integer" end
  end
  if o.tty ~= nil and type(o.tty) ~= "boolean" then return "spawn: tty must be a boolean" end
  if o.required_tags ~= nil and not is_tag_list(o.required_tags) then
    return "spawn: required_tags must be a list of non-empty strings"
  end
  if o.idle_timeout_ms ~= nil then
    local ms = type(o.idle_timeout_ms) == "number" and math.tointeger(o.idle_timeout_ms)
    if not ms or ms <= 0 then return "spawn: idle_timeout_ms must be a positive integer (ms)" end
    if (o.mode or "one_shot") ~= "daemon" then return "spawn: idle_timeout_ms is for daemons (mode='daemon')" end
  end
  if o.schema ~= nil and type(o.schema) ~= "table" then return "spawn: schema must be a table of fields" end
  return nil
end

local function list_of(v, what)
  if v == nil then return NONE end
  if type(v) == "string" or (type(v) == "table" and (v.id or v.name)) then return { v } end
  if type(v) ~= "table" then return nil, what .. " must be a list" end
  return v
end

-- spawn's writes after the process itself: the schema's channel pair, the
-- subscriptions and the wait for wait_for's targets. Raises on failure.
local function wire(ctx, o, p, parent, subs, wait_ids)
  local db = ctx.db
  -- The private pair spawn:parent→child (the child handles it: handle.send wakes
  -- it) and spawn:child→parent, and the guidance pair cog:from/cog:to:<name>, are
  -- implicit channels, made on first use; a schema (checked on messages both ways)
  -- makes the private pair now.
  if o.schema then
    local schema = { fields = o.schema }
    assert(db:channel_create(spawn_channel(parent.id, p.id), { owner = parent.id, channel_type = "spawn",
      schema = schema }))
    assert(db:channel_create(spawn_channel(p.id, parent.id), { owner = p.id, channel_type = "spawn",
      schema = schema }))
  end
  for _, ch in ipairs(subs) do assert(db:handler_add(p.id, ch)) end
  if #wait_ids == 0 then return p end
  -- The targets report to the caller: the child listens on those exit channels.
  local pending = {}
  for _, tid in ipairs(wait_ids) do
    local chan = spawn_channel(tid, ctx.process.id)
    db:channel_create(chan, { owner = tid, channel_type = "spawn" })
    local exited = false
    for _, m in ipairs(db:messages(chan, { limit = 100 })) do
      if type(m.payload) == "table" and m.payload.type == "child:exited" then exited = true end
    end
    if not exited then
      assert(db:handler_add(p.id, chan))
      pending[#pending + 1] = tid
    end
  end
  if #pending > 0 then
    assert(db:wait_add({ process = p.id, type = "wait_all", pending = json.array(pending) }))
    return p
  end
  return assert(db:process_set_status(p.id, "runnable"))
end

local function spawn(ctx, o)
  local bad = check_opts(o)
  if bad then return nil, bad end
  local db = ctx.db
  local grants, gerr = delegation(ctx, o.capabilities)
  if not grants then return nil, "spawn: " .. gerr end
  local subs, serr = list_of(o.subscribe, "spawn: subscribe")
  if not subs then return nil, serr end
  for _, ch in ipairs(subs) do
    if type(ch) ~= "string" then return nil, "spawn: subscribe must name channels" end
    if not db:channel_get(ch) then return nil, "spawn: subscribe: unknown channel '" .. ch .. "'" end
  end
  local targets, terr = list_of(o.wait_for, "spawn: wait_for")
  if not targets then return nil, terr end
  local wait_ids = {}
  for i, t in ipairs(targets) do
    local p, err = child(ctx, t, "spawn: wait_for")
    if not p then return nil, err end
    wait_ids[i] = p.id
  end
  local parent = ctx.process
  if o.detached then parent = db:process_get("init") or ctx.process end
  -- Re-spawning keeps the process's identity, so it is only for one's own tree.
  local existing = db:process_get(o.name)
  if existing and not is_descendant(ctx, existing) then
    return nil, "spawn: a process named '" .. o.name .. "' exists and is not a descendant of this process"
  end
  local mode = o.mode or "one_shot"
  local fields = {
    name = o.name, mode = mode, content = o.content or "", executor = o.executor or "llm",
    model = o.model, priority = o.priority or 0, parent_process = parent.id,
    status = (mode == "daemon" or #wait_ids > 0) and "waiting" or "runnable",
    max_duration_ms = o.max_duration_ms, max_retries = o.max_retries, tty = o.tty,
    required_tags = o.required_tags and json.array(o.required_tags), idle_timeout_ms = o.idle_timeout_ms,
    grants = grants,
  }
  if not o.schema and #subs == 0 and #wait_ids == 0 then -- one operation: atomic by itself
    local ok, p, err = pcall(db.process_upsert, db, fields)
    if not (ok and p) then return nil, "spawn: " .. tostring(ok and err or p) end
    return handle(p)
  end
  db:begin()
  local ok, row = pcall(function() return wire(ctx, o, assert(db:process_upsert(fields)), parent, subs, wait_ids) end)
  if not ok then
    db:rollback()
    return nil, "spawn: " .. tostring(row)
  end
  db:commit()
  return handle(row)
end

-- {============ waits

local function wait_on(ctx, kind, hs)
  local what = kind
  if not ctx.run then return nil, what .. ": needs a run" end
  local ids = {}
  for i, h in ipairs(hs) do
    local p, err = child(ctx, h, what)
    if not p then return nil, err end
    ids[i] = p.id
  end
  if #ids == 0 then return nil, what .. ": nothing to wait for" end
  local lua_run = ctx.process.executor == "lua"
  if lua_run and not core.sched.in_coroutine() then
    return nil, what .. ": cannot wait here (inside a callback that cannot yield)"
  end
  local db, pid = ctx.db, ctx.process.id
  local w, err = db:wait_add({ run = ctx.run.id, process = pid, type = kind, pending = json.array(ids) })
  if not w then return nil, what .. ": " .. err end
  if w.status == "resolved" then return db:wait_results(pid) end -- they had already exited
  if lua_run then return core.sched.park(pid) end
  ctx.run_state.suspend = { wait = w.id } -- the executor ends the run suspended
  return nil, "waiting: this run ends suspended and resumes when the children exit"
end

-- }============

local function messages_text(ctx, chan, limit, what)
  if limit ~= nil and not math.tointeger(limit) then return nil, what .. ": limit must be an integer" end
  local rows = ctx.db:messages(chan, { limit = math.max(1, math.min(limit or 1, 100)) })
  local out = {}
  for i, m in ipairs(rows) do out[i] = type(m.payload) == "table" and m.payload.text or nil end
  return json.array(out)
end

local function stream(name)
  return function(ctx, h, limit)
    local p, err = resolve(ctx, h, name)
    if not p then return nil, err end
    return messages_text(ctx, "io:" .. name .. ":" .. p.name, limit, name)
  end
end

local RUN_FIELDS = { "id", "status", "error", "duration_ms", "tokens_in", "tokens_out", "cost_usd", "result",
  "created_at", "completed_at" }

return {
  name = "procs",
  description = "The process tree: spawn children with delegated grants; handles to talk to, wait for and kill them.",
  methods = {
    spawn = { op = "spawn",
      doc = "spawn{name=, content=, mode='one_shot'|'daemon', executor='llm'|'lua', model=, priority=, "
        .. "capabilities={grant = grant | {type=, scope=} | true}, subscribe=, wait_for=, detached=, tty=, "
        .. "schema={field = type}, required_tags={tag, ...}, idle_timeout_ms=} "
        .. "-> handle {id, name} | nil, err   (grants only equal or narrower than yours; required_tags: "
        .. "only a node carrying them all runs it; idle_timeout_ms: a daemon idle that long completes)",
      fn = spawn },
    list = { op = "list",
      doc = "list{status=, limit=200} -> {{id, name, mode, status, priority, required_tags, parent_process}, ...}",
      fn = function(ctx, o)
        if o ~= nil and type(o) ~= "table" then return nil, "list: expected a table {status=, limit=}" end
        o = o or {}
        local limit = math.tointeger(o.limit or LIST_LIMIT)
        if not limit or limit < 1 then return nil, "list: limit must be a positive integer" end
        local out = {}
        for _, p in ipairs(ctx.db:process_list({ status = o.status })) do
          if #out >= limit then break end
          out[#out + 1] = { id = p.id, name = p.name, mode = p.mode, status = p.status, priority = p.priority,
            required_tags = p.required_tags, parent_process = p.parent_process }
        end
        return json.array(out)
      end },
    get = { op = "get", doc = "get(name_or_id) -> handle {id, name} | nil, err",
      fn = function(ctx, h)
        local p, err = resolve(ctx, h, "get")
        if not p then return nil, err end
        return handle(p)
      end },
    detach = { op = "detach", doc = "detach(handle) -> handle   (re-parents a descendant to init)",
      fn = function(ctx, h)
        local p, err = descendant(ctx, h, "detach")
        if not p then return nil, err end
        local init = ctx.db:process_get("init")
        if not init then return nil, "detach: there is no init process to adopt '" .. p.name .. "'" end
        local row, uerr = ctx.db:process_upsert({ name = p.name, parent_process = init.id })
        if not row then return nil, "detach: " .. uerr end
        return handle(row)
      end },
    send = { op = "send", doc = "send(handle, payload) -> {id, channel}   (to the child's spawn channel; wakes it)",
      fn = function(ctx, h, payload)
        local p, err = child(ctx, h, "send")
        if not p then return nil, err end
        local chan = spawn_channel(ctx.process.id, p.id)
        local r, serr = ctx.db:send(chan, payload,
          { sender_process = ctx.process.id, sender_run_id = ctx.run and ctx.run.id })
        if not r then return nil, "send: " .. serr end
        return { id = r.id, channel = chan }
      end },
    recv = { op = "recv", doc = "recv(handle [, limit=10]) -> {{id, payload, created_at}, ...} newest first",
      fn = function(ctx, h, limit)
        local p, err = child(ctx, h, "recv")
        if not p then return nil, err end
        if limit ~= nil and not math.tointeger(limit) then return nil, "recv: limit must be an integer" end
        local rows = ctx.db:messages(spawn_channel(p.id, ctx.process.id),
          { limit = math.max(1, math.min(limit or RECV_LIMIT, 100)) })
        local out = {}
        for i, m in ipairs(rows) do out[i] = { id = m.id, payload = m.payload, created_at = m.created_at } end
        return json.array(out)
      end },
    kill = { op = "kill", doc = "kill(handle) -> {process_id, previous_status, new_status, disabled}   (cascades)",
      fn = function(ctx, h)
        local p, err = descendant(ctx, h, "kill")
        if not p then return nil, err end
        local n = ctx.db:process_disable(p.id)
        -- lua runs parked in a wait inside the killed tree end now
        for _, pid in ipairs(core.sched.parked()) do
          local q = ctx.db:process_get(pid)
          if q and q.status == "disabled" then core.sched.unpark(pid, nil, "killed: the process was disabled") end
        end
        return { process_id = p.id, previous_status = p.status, new_status = "disabled", disabled = n }
      end },
    status = { op = "status", doc = "status(handle) -> status | 'unknown'",
      fn = function(ctx, h)
        local p = resolve(ctx, h, "status")
        return p and p.status or "unknown"
      end },
    runs = { op = "runs",
      doc = "runs(handle [, limit=10]) -> {{id, status, error, duration_ms, tokens_in, tokens_out, cost_usd, "
        .. "result, created_at, completed_at}, ...} newest first",
      fn = function(ctx, h, limit)
        local p, err = resolve(ctx, h, "runs")
        if not p then return nil, err end
        if limit ~= nil and not math.tointeger(limit) then return nil, "runs: limit must be an integer" end
        local out = {}
        local rows = ctx.db:run_list({ process = p.id, limit = math.max(1, math.min(limit or RUNS_LIMIT, 100)) })
        for i, r in ipairs(rows) do
          local info = {}
          for _, k in ipairs(RUN_FIELDS) do info[k] = r[k] end
          out[i] = info
        end
        return json.array(out)
      end },
    cog_send = { op = "send", doc = "cog_send(handle, payload) -> {id, channel}   (guidance: cog:from:<name>, "
        .. "read into the child's next prompt)",
      fn = function(ctx, h, payload)
        if type(payload) ~= "table" then return nil, "cog_send: payload must be a table" end
        local p, err = descendant(ctx, h, "cog_send")
        if not p then return nil, err end
        local chan = "cog:from:" .. p.name
        local r, serr = ctx.db:send(chan, payload,
          { sender_process = ctx.process.id, sender_run_id = ctx.run and ctx.run.id })
        if not r then return nil, "cog_send: " .. serr end
        return { id = r.id, channel = chan }
      end },
    cog_recv = { op = "recv", doc = "cog_recv(handle, limit=10) -> {{payload, created_at}, ...}   (cog:to:<name>, "
        .. "newest first)",
      fn = function(ctx, h, limit)
        local p, err = descendant(ctx, h, "cog_recv")
        if not p then return nil, err end
        local out = {}
        for i, m in ipairs(ctx.db:messages("cog:to:" .. p.name, { limit = math.tointeger(limit) or 10 })) do
          out[i] = { payload = m.payload, created_at = m.created_at }
        end
        return out
      end },
    stdin = { op = "stdin", doc = "stdin(handle, text) -> {id, channel}   (wakes a descendant through io:stdin:<name>)",
      fn = function(ctx, h, text)
        if type(text) ~= "string" then return nil, "stdin: text must be a string" end
        local p, err = descendant(ctx, h, "stdin")
        if not p then return nil, err end
        local chan = "io:stdin:" .. p.name
        local r, serr = ctx.db:send(chan, { text = text },
          { sender_process = ctx.process.id, sender_run_id = ctx.run and ctx.run.id })
        if not r then return nil, "stdin: " .. serr end
        return { id = r.id, channel = chan }
      end },
    stdout = { op = "stdout", doc = "stdout(handle [, limit=1]) -> {text, ...} newest first", fn = stream("stdout") },
    stderr = { op = "stderr", doc = "stderr(handle [, limit=1]) -> {text, ...} newest first", fn = stream("stderr") },
    wait = { op = "wait", doc = "wait(handle) -> {children = {id = child:exited payload}}   (see help: waits)",
      fn = function(ctx, h) return wait_on(ctx, "wait", { h }) end },
    wait_any = { op = "wait", doc = "wait_any({handle, ...}) -> {children = {...}}   once one has exited",
      fn = function(ctx, hs)
        if type(hs) ~= "table" then return nil, "wait_any: expected a list of handles" end
        return wait_on(ctx, "wait_any", hs)
      end },
    wait_all = { op = "wait", doc = "wait_all({handle, ...}) -> {children = {...}}   once all have exited",
      fn = function(ctx, hs)
        if type(hs) ~= "table" then return nil, "wait_all: expected a list of handles" end
        return wait_on(ctx, "wait_all", hs)
      end },
  },
}
