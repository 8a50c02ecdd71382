-- cogos.executor — one run of a process: `llm` (prompt + converse loop with the
-- run_code and search tools) or `lua` (the content runs in the sandbox). The
-- run is recorded (status, tokens, cost, duration, error, session snapshot),
-- its events are written (cogos.events), stdout/stderr and lifecycle messages
-- are published, failures raise alerts, and the process moves on.
--
-- Final statuses: completed; failed (errors, budget exceeded); timeout (the
-- process's max_duration_ms passed, or its sandbox said "deadline exceeded");
-- throttled (the LLM call was rate-limited, retries and fallbacks spent:
-- llm.is_throttle; the store then holds new dispatches for the cooldown);
-- suspended (a capability asked to wait: ctx.run_state.suspend).
--
-- The ctx a capability fn(ctx, ...) receives (a fresh table per call):
--   ctx.db          the node's store
--   ctx.process     the process row
--   ctx.run         the run row (id, process, message, channel, payload, ...)
--   ctx.grant       {name, type, config} of the grant called through
--   ctx.run_state   one table shared by every call of the run; set
--                   run_state.suspend = <truthy> to end an llm run `suspended` after
--                   the current tool call (waits on children do this)
--   ctx.cogent_dir  the cogent's data folder (secrets), when the node knows it
--   ctx.executor    "llm" or "lua"

local core = require "cogos.core"
local caps = require "cogos.caps"
local prompt = require "cogos.prompt"
local llm = require "cogos.llm"
local log = require "cogos.log"
local events = require "cogos.events"
local cost = require "cogos.cost"
local budget = require "cogos.budget"
local session = require "cogos.session"

local json = core.json
local now_ms = core.sys.monotonic_ms

local M = {}
M.__index = M

M.MAX_TURNS = 20
M.ERROR_LIMIT = 4000
M.LIFECYCLE_ERROR_LIMIT = 1000
M.SPILL_LIMIT = 4000   -- tool outputs longer than this (characters) go to a file
M.SPILL_PREVIEW = 1000 -- and this much of them stays in the transcript
M.EVENT_OUTPUT_LIMIT = 4000
M.LIVE_MS = 200 -- a tool call still running after this is shown in the run's events
M.SANDBOX_DEADLINE_MS = 300000 -- a process without max_duration_ms
M.VALID_TOOLS = { run_code = true, search = true }

local function schema(properties, required)
  return { type = "object", properties = properties, required = json.array(required) }
end

M.TOOLS = {
  {
    name = "run_code",
    description = "Run Lua 5.4 code in your sandbox. Your capabilities are globals (see the "
      .. "system prompt); `event` is the message that woke you. print() what you want to see. "
      .. "Globals persist between calls in this run. Failures return nil, err.",
    input_schema = schema({ code = { type = "string", description = "Lua source code" } }, { "code" }),
  },
  {
    name = "search",
    description = "Search the capabilities you hold by keyword (empty query: all of them).",
    input_schema = schema({ query = { type = "string" }, limit = { type = "integer" } }, { "query" }),
  },
}

---@param opts table {db, llm (cogtainer llm settings), node_id, cogent_dir,
---  throttle_cooldown_ms (the node's: after a throttled run, the dispatcher is woken when it ends)}
function M.new(opts)
  return setmetatable({ db = opts.db, llm = opts.llm or {}, node_id = opts.node_id,
    cogent_dir = opts.cogent_dir, throttle_cooldown_ms = opts.throttle_cooldown_ms, channels = {} }, M)
end

---True when a provider error says the conversation no longer fits the model.
---@param err any
---@return boolean
function M.is_context_overflow(err)
  if llm.is_context_overflow then return llm.is_context_overflow(err) and true or false end
  local s = tostring(err):lower()
  return (s:find("too long", 1, true) or s:find("context", 1, true) or s:find("too many tokens", 1, true)
    or s:find("maximum.-tokens") or s:find("exceeds.-token")) ~= nil
    and (s:find("prompt", 1, true) or s:find("input", 1, true) or s:find("context", 1, true)
      or s:find("token", 1, true)) ~= nil
end

-- Ends a run with a status other than failed (or a failure of a kind worth
-- telling apart): raised as a table, caught by M:run.
local function stop(status, message, kind)
  error({ status = status, message = message, kind = kind }, 0)
end

local function text_of(blocks)
  local parts = {}
  for _, b in ipairs(blocks or {}) do
    if b.type == "text" and b.text ~= "" then parts[#parts + 1] = b.text end
  end
  return table.concat(parts, "\n")
end

-- Length in characters (bytes when not UTF-8) and the first n characters.
local function ulen(s) return utf8.len(s) or #s end
local function uprefix(s, n)
  local cut = utf8.len(s) and utf8.offset(s, n + 1)
  return cut and s:sub(1, cut - 1) or s:sub(1, n)
end

-- The per-run execution state: grants, sandbox (made on first use), tokens.
local Run = {}
Run.__index = Run

-- One step's writes (messages, files, run events) in one transaction: a turn
-- costs one commit, not one per row. First the writes deferred by the step
-- before (Run:defer), then fn. fn must not yield (no LLM or tool call inside),
-- so no other run's writes can land in the transaction.
function Run:atomic(fn)
  local db = self.db
  assert(db:begin())
  local ok, err = pcall(function()
    local later = self.later
    self.later = {}
    for _, f in ipairs(later) do f() end
    if fn then fn() end
    self.events:flush()
  end)
  if not ok then
    db:rollback()
    error(err, 0)
  end
  assert(db:commit())
end

-- Queues writes for the next step's transaction.
function Run:defer(fn)
  self.later[#self.later + 1] = fn
end

-- While a tool runs, what was deferred becomes visible after LIVE_MS (so `run
-- tail` shows a long tool call while it runs). A timer of the node's loop: it
-- fires between the run's slices, when no transaction is open.
function Run:flush_later()
  if #self.later == 0 or not (core.sched.in_coroutine and core.sched.in_coroutine()) then return nil end
  return core.loop.timer(M.LIVE_MS, 0, function()
    local ok, err = pcall(self.atomic, self)
    if not ok then log.info("warning: run %s: %s", log.short(self.run.id), tostring(err)) end
  end)
end

function Run:remaining_ms()
  if not self.deadline then return nil end
  return self.deadline - now_ms()
end

function Run:sandbox()
  if self.sb then return self.sb end
  local db, process, run, state, dir = self.db, self.process, self.run, self.state, self.exec.cogent_dir
  local kind = self.kind
  local left = self:remaining_ms()
  self.sb = core.sandbox.new({
    memory = 16 * 1024 * 1024,
    instructions = 50000000,
    deadline_ms = left and math.max(1, math.floor(left)) or M.SANDBOX_DEADLINE_MS,
    output = 64 * 1024,
    grants = caps.sandbox_grants(self.grants),
    -- grants made during the run (grant:scope, sub-grants) reach it as descriptors: cogos.caps
    dispatch = caps.dispatcher(self.grants, { db = db, process = process, run = run, run_state = state,
      cogent_dir = dir, executor = kind }),
  })
  return self.sb
end

function Run:event()
  local r = self.run
  return { run = r.id, process = self.process.name, channel = r.channel, message = r.message,
    payload = r.payload, wait_results = self.wait_results }
end

-- Channels are made on first use (owned by the process), once per node.
function Run:ensure_channel(name, channel_type)
  local known = self.exec.channels
  if known[name] then return end
  if not self.db:channel_get(name) then
    local ok, err = self.db:channel_create(name, { owner = self.process.id, channel_type = channel_type })
    if not ok and not self.db:channel_get(name) then
      error("cannot create channel " .. name .. ": " .. tostring(err), 0)
    end
  end
  known[name] = true
end

function Run:send(channel, payload, channel_type)
  self:ensure_channel(channel, channel_type)
  local opts = { sender_process = self.process.id, sender_run_id = self.run.id }
  local ok, err = self.db:send(channel, payload, opts)
  if not ok and tostring(err):find("unknown channel", 1, true) then
    self.exec.channels[channel] = nil -- deleted since (a wipe or reload): make it again
    self:ensure_channel(channel, channel_type)
    ok, err = self.db:send(channel, payload, opts)
  end
  if not ok then log.info("warning: run %s: cannot send to %s: %s", log.short(self.run.id), channel, tostring(err)) end
end

-- stdout/stderr of the process (cogos-spec §2.11): process:<name>:<stream> and
-- io:<stream>:<name>; with tty also the global io:<stream>.
function Run:publish(stream, text)
  if text == nil or text == "" then return end
  local name = self.process.name
  local payload = { text = text, process = name }
  self:send("process:" .. name .. ":" .. stream, payload, "implicit")
  self:send("io:" .. stream .. ":" .. name, payload, "implicit")
  if self.process.tty then self:send("io:" .. stream, payload, "named") end
end

function Run:check_deadline()
  local left = self:remaining_ms()
  if left and left <= 0 then
    stop("timeout", string.format("max_duration_ms (%d) exceeded", self.process.max_duration_ms))
  end
end

function Run:run_code(code)
  if type(code) ~= "string" then return "Error: run_code needs a `code` string.", true end
  self:check_deadline()
  local output, err = self:sandbox():run(code, { chunkname = "=run_code", event = self:event() })
  if err == "deadline exceeded" then
    self:publish("stdout", output)
    stop("timeout", "deadline exceeded")
  end
  output = (output or ""):gsub("%s+$", "")
  if output == "" then output = err and "" or "(no output)" end
  if err and not output:find(err, 1, true) then output = output .. (output == "" and "" or "\n") .. err end
  return output, err ~= nil
end

function Run:search(query, limit)
  query = type(query) == "string" and query:lower() or ""
  limit = math.max(1, math.min(math.tointeger(tonumber(limit)) or 5, 20))
  local found = {}
  for _, g in ipairs(self.grants) do
    local text = (g.name .. " " .. g.type .. " " .. (g.description or "")):lower()
    if query == "" or text:find(query, 1, true) then
      found[#found + 1] = { name = g.name, type = g.type, description = g.description,
        help = caps.help(g.name, g.module) }
      if #found >= limit then break end
    end
  end
  if #found == 0 then return "No capabilities found matching query." end
  return json.encode(found, { pretty = true })
end

function Run:call_tool(block)
  local input = type(block.input) == "table" and block.input or {}
  if block.invalid then
    return "Error: invalid tool name '" .. block.invalid .. "'. Valid tools: run_code, search.", true
  end
  if block.name == "run_code" then return self:run_code(input.code) end
  return self:search(input.query, input.limit)
end

-- A long output is kept whole in run_output/<run>/<turn>-<idx>; the transcript
-- gets its start and a pointer (cogos-spec §5.4).
function Run:spill(output, turn, idx)
  local n = ulen(output)
  if n <= M.SPILL_LIMIT then return output end
  local key = string.format("run_output/%s/%d-%d", self.run.id, turn, idx)
  local ok, err = self.db:file_write(key, output, { source = "executor", run_id = self.run.id })
  if not ok then
    return uprefix(output, M.SPILL_PREVIEW) .. string.format("\n... [%d chars total; could not save the rest: %s]",
      n, tostring(err))
  end
  return uprefix(output, M.SPILL_PREVIEW) .. string.format(
    "\n... [%d chars total — full output saved to @{%s}] ...\nRead it with files.read(%q) (use its offset"
    .. " and limit, or a search, for large outputs).", n, key, key)
end

-- Tool calls whose name is not one of ours become a placeholder `search` call in
-- the transcript (so the next request stays valid) and get an error answer.
local function sanitize(content, turn)
  local out = json.array({})
  for i, b in ipairs(content or {}) do
    if b.type == "tool_use" and not (M.VALID_TOOLS[b.name] and b.name:match("^[%w_%-]+$")) then
      local name = tostring(b.name)
      b = { type = "tool_use", id = b.id or string.format("invalid-tool-%d-%d", turn, i - 1), name = "search",
        input = { query = "invalid tool placeholder for " .. name }, invalid = name }
    end
    out[i] = b
  end
  return out
end

-- The transcript keeps only wire fields (`invalid` is ours).
local function wire_copy(content)
  local out = json.array({})
  for i, b in ipairs(content) do
    if b.invalid then b = { type = b.type, id = b.id, name = b.name, input = b.input } end
    out[i] = b
  end
  return out
end

local function message_text(payload)
  if type(payload) ~= "table" then return tostring(payload) end
  if type(payload.text) == "string" then return payload.text end
  return json.encode(payload) or "?"
end

-- The user turn (cogos-spec §5.3): web request, payload, cog messages, and the
-- results of the children a resumed run waited for.
function Run:user_message()
  local run, parts = self.run, {}
  local web = run.web_request or (type(run.metadata) == "table" and run.metadata.web_request)
  if web then parts[#parts + 1] = "Incoming web request:\n" .. json.encode(web, { pretty = true }) end
  local payload = run.payload
  if type(payload) == "table" and next(payload) ~= nil then
    parts[#parts + 1] = "Message payload: " .. json.encode(payload, { pretty = true })
  elseif not web then
    parts[#parts + 1] = "Execute your task."
  end
  if self.wait_results then
    parts[#parts + 1] = "--- Results of the children you waited for ---\n"
      .. json.encode(self.wait_results, { pretty = true })
  end
  local cog = "cog:from:" .. self.process.name
  if self.db:channel_get(cog) then
    local msgs = self.db:messages(cog, { limit = 20 }) or {}
    if #msgs > 0 then
      local lines = { "--- Messages from your cog ---" }
      for i = #msgs, 1, -1 do lines[#lines + 1] = message_text(msgs[i].payload) end -- oldest first
      parts[#parts + 1] = table.concat(lines, "\n")
    end
  end
  return table.concat(parts, "\n\n")
end

-- The children's results when this run was woken by a child:exited message
-- (db:wait_results comes with the scheduler's waits; absent, nothing is added).
function Run:load_wait_results()
  local p = self.run.payload
  if type(p) ~= "table" or p.type ~= "child:exited" or not self.db.wait_results then return end
  local ok, res = pcall(self.db.wait_results, self.db, self.process.id)
  if ok and type(res) == "table" and next(res) ~= nil then self.wait_results = res end
end

function Run:charge(tokens_in, tokens_out)
  local usd = cost.estimate(self.model, tokens_in, tokens_out)
  self.cost_usd = self.cost_usd + usd
  if self.budgeted then
    self.db:budget_charge(self.process.id, { tokens = tokens_in + tokens_out, cost_usd = usd })
  end
  return usd
end

function Run:check_budget()
  if not self.budgeted then return end
  local err, b = budget.check(self.db, self.process.id)
  if err then stop("failed", err, { budget = b }) end
end

-- The LLM call ends with the run: each entry of the client gets the time left
-- (opts.timeout_ms for providers that read it, config.timeout_ms for the rest).
M.DEADLINE_SLACK_MS = 50

local function bound_timeout(client, ms)
  for _, e in ipairs(client.entries or { { provider = client } }) do
    if type(e.provider) == "table" and type(e.provider.config) == "table" then e.provider.config.timeout_ms = ms end
  end
end

function Run:complete(client, request)
  self:check_deadline()
  self:check_budget()
  self.events:flush() -- what happened so far is visible while the model thinks
  local left = self:remaining_ms()
  left = left and math.max(1, math.floor(left))
  if left then bound_timeout(client, left) end
  local ev = self.events
  local response, err = client:complete(request, { on_text = function(t) ev:token(t) end, timeout_ms = left })
  if not response then
    -- the call's timeout was the run's remaining time: a failure at (about) the
    -- deadline is the deadline, though the transport may notice it a little early
    if left and self:remaining_ms() <= M.DEADLINE_SLACK_MS then stop("timeout", "LLM call: " .. tostring(err)) end
    if M.is_context_overflow(err) then stop("failed", tostring(err), "context_overflow") end
    if llm.is_throttle(err) then stop("throttled", tostring(err)) end
    error(err, 0)
  end
  self.model = response.model_version or client.model or self.model -- a fallback may have answered
  return response
end

-- Tokens, cost and budgets of one answer (inside the turn's step).
function Run:account(response, turn)
  local usage = response.usage or {}
  local tin, tout = usage.input_tokens or 0, usage.output_tokens or 0
  self.tokens_in, self.tokens_out = self.tokens_in + tin, self.tokens_out + tout
  local usd = self:charge(tin, tout)
  self.events:emit("usage", { turn = turn, input_tokens = tin, output_tokens = tout, cost_usd = usd,
    model = self.model })
end

function Run:converse(llm_settings)
  self.kind = "llm"
  local client, cerr = llm.client(self.db, self.process, llm_settings)
  if not client then error(cerr, 0) end
  local model = client.model
  self.model = model
  local system = prompt.system(self.db, self.process, self.grants)
  self.session = session.open(self.db, self.process, self.run, { model = model, system = system, tools = M.TOOLS })
  self:load_wait_results()
  local user = self:user_message()
  local messages = self.session and self.session:messages(user)
    or json.array({ { role = "user", content = json.array({ { type = "text", text = user } }) } })
  local request = { model = model, system = system, max_tokens = 16384, tools = M.TOOLS, messages = messages }
  local max_turns = (self.process.metadata and tonumber(self.process.metadata.max_turns)) or M.MAX_TURNS
  local ev, name = self.events, self.process.name
  for turn = 1, max_turns do
    local response = self:complete(client, request)
    local content = sanitize(response.content, turn)
    messages[#messages + 1] = { role = "assistant", content = wire_copy(content) }
    local text = text_of(content)
    local calls = {}
    for _, b in ipairs(content) do
      if b.type == "tool_use" then calls[#calls + 1] = b end
    end
    if response.stop_reason ~= "tool_use" or #calls == 0 then
      if text ~= "" then log.info("run %s %s says: %s", log.short(self.run.id), name, log.excerpt(text)) end
      self.final = text
      self.final_stop_reason = response.stop_reason or "end_turn"
      self:atomic(function()
        self:account(response, turn)
        self:publish("stderr", text)
        if self.session then self.session:checkpoint(messages) end
      end)
      return
    end
    local function call_event(call)
      ev:emit("tool_call", { id = call.id, name = call.invalid or call.name, input = call.input })
    end
    self:defer(function()
      self:account(response, turn)
      self:publish("stdout", text)
      call_event(calls[1])
    end)
    local results = json.array({})
    for i, call in ipairs(calls) do
      local timer = self:flush_later()
      local output, is_error = self:call_tool(call)
      if timer then timer:stop() end
      local suspend = self.state.suspend
      self:atomic(function()
        output = self:spill(output, turn, i - 1)
        log.info("run %s %s: turn %d %s%s -> %s", log.short(self.run.id), name, turn,
          tostring(call.invalid or call.name), is_error and " (error)" or "", log.excerpt(output))
        if call.name == "run_code" and not call.invalid and output ~= "(no output)" then
          self:publish("stdout", output)
        end
        ev:emit("tool_result", { id = call.id, name = call.invalid or call.name, is_error = is_error or nil,
          output = #output > M.EVENT_OUTPUT_LIMIT and uprefix(output, M.EVENT_OUTPUT_LIMIT) or output })
        results[i] = { type = "tool_result", tool_use_id = call.id, content = output, is_error = is_error or nil }
        if suspend then
          -- The calls after a wait are answered so the transcript stays whole.
          for j = i + 1, #calls do
            results[j] = { type = "tool_result", tool_use_id = calls[j].id, is_error = true,
              content = "Error: not run: the process suspended to wait." }
          end
        end
        if suspend or i == #calls then
          messages[#messages + 1] = { role = "user", content = results }
          if self.session then self.session:checkpoint(messages) end
        else
          call_event(calls[i + 1])
        end
      end)
      if suspend then stop("suspended", nil) end
    end
  end
  self.final_stop_reason = "max_turns"
end

function Run:lua()
  self.kind = "lua"
  self.model = "lua"
  self:load_wait_results()
  local output, err = self:sandbox():run(self.process.content or "", {
    chunkname = "=" .. self.process.name, event = self:event() })
  output = (output or ""):gsub("%s+$", "")
  self:publish("stdout", output)
  self.result = { output = output }
  if err == "deadline exceeded" then stop("timeout", err) end
  if err then error(err, 0) end
  if self.state.suspend then stop("suspended", nil) end
end

-- Failure alerts (cogos-spec §5.2.7): context overflow and budgets are critical.
function Run:alert(status, err_text, kind)
  local meta = { run_id = self.run.id, process_id = self.process.id, process_name = self.process.name,
    status = status, model = self.model, tokens_in = self.tokens_in, tokens_out = self.tokens_out }
  local severity, alert_type = "warning", "process:run:failed"
  if kind == "context_overflow" then
    severity, alert_type = "critical", "process:context_overflow"
  elseif type(kind) == "table" and kind.budget then
    severity, alert_type = "critical", "budget:exceeded"
    meta.budget = { scope = kind.budget.scope, period = kind.budget.period, max_tokens = kind.budget.max_tokens,
      max_cost_usd = kind.budget.max_cost_usd, tokens = kind.budget.tokens, cost_usd = kind.budget.cost_usd }
  end
  local ok, err = self.db:alert_add({ severity = severity, alert_type = alert_type, source = "executor",
    message = string.format("%s: %s", self.process.name, err_text:sub(1, M.LIFECYCLE_ERROR_LIMIT)), metadata = meta })
  if not ok then log.info("warning: run %s: cannot record alert: %s", log.short(self.run.id), tostring(err)) end
end

local function outcome(ok, err)
  if ok then return "completed" end
  if type(err) == "table" then return err.status, err.message, err.kind end
  return "failed", tostring(err)
end

---Executes a dispatched run to its end. Never raises: failures are recorded.
---@param run table the run row from db:dispatch
function M:run(run)
  local db = self.db
  local started = now_ms()
  local process = assert(db:process_get(run.process))
  local r = setmetatable({ db = db, exec = self, process = process, run = run, tokens_in = 0, tokens_out = 0,
    cost_usd = 0, state = {}, later = {}, kind = process.executor == "lua" and "lua" or "llm" }, Run)
  if process.max_duration_ms and process.max_duration_ms > 0 then r.deadline = started + process.max_duration_ms end
  r.events = events.writer(db, run.id)
  r.events:emit("status", { status = "started", process = process.name, executor = r.kind })
  log.info("run %s %s started%s", log.short(run.id), process.name,
    run.channel and (" by a message on " .. run.channel) or "")
  local ok, err = xpcall(function()
    r.grants = caps.grants(db, process)
    r.budgeted = #assert(db:budget_status(process.id)) > 0
    if r.kind == "lua" then r:lua() else r:converse(self.llm) end
  end, function(e)
    if type(e) == "table" then return e end
    return tostring(e)
  end)
  if r.sb then r.sb:close() end
  local status, err_text, kind = outcome(ok, err)
  local duration = math.floor(now_ms() - started + 0.5)
  if err_text then err_text = err_text:sub(1, M.ERROR_LIMIT) end
  local ev = r.events
  local proc_after, ferr
  local function finish()
    if status == "timeout" or status == "suspended" then
      ev:emit("interrupt", { reason = status, message = err_text })
    end
    if err_text and status ~= "suspended" then
      ev:emit("error", { message = err_text, status = status })
      r:publish("stderr", "[" .. process.name .. "] error: " .. err_text)
    end
    local snapshot
    if r.session then
      local sok, snap = pcall(r.session.finish, r.session, status)
      if sok then snapshot = snap else log.info("warning: run %s: session: %s", log.short(run.id), tostring(snap)) end
    end
    proc_after, ferr = db:run_finish(run.id, {
      status = status, tokens_in = r.tokens_in, tokens_out = r.tokens_out, cost_usd = r.cost_usd,
      duration_ms = duration, error = status ~= "suspended" and err_text or nil, model_version = r.model,
      result = r.result or (r.final and { text = r.final, stop_reason = r.final_stop_reason }) or nil,
      snapshot = snapshot,
    })
    if not proc_after then error("cannot record the end: " .. tostring(ferr), 0) end
    if status ~= "suspended" then
      local life = { type = status == "completed" and "process:run:success" or "process:run:failed",
        run_id = run.id, process_id = process.id, process_name = process.name, duration_ms = duration,
        status = status, error = err_text and err_text:sub(1, M.LIFECYCLE_ERROR_LIMIT) or nil }
      r:send("process:" .. process.name, life, "implicit")
      if status ~= "completed" then r:alert(status, err_text or status, kind) end
    end
    ev:emit(events.TERMINAL, { status = status, tokens_in = r.tokens_in, tokens_out = r.tokens_out,
      cost_usd = r.cost_usd, duration_ms = duration, error = err_text })
  end
  -- The end of a run is one transaction; if it fails, the run is still recorded.
  local fok, fin_err = pcall(r.atomic, r, finish)
  if not fok then
    log.info("warning: run %s: %s", log.short(run.id), tostring(fin_err))
    ev.buf, ev.text, ev.ntext = {}, {}, 0
    proc_after, ferr = db:run_finish(run.id, { status = status == "completed" and "failed" or status,
      duration_ms = duration, tokens_in = r.tokens_in, tokens_out = r.tokens_out, cost_usd = r.cost_usd,
      error = ("recording the run's end failed: " .. tostring(fin_err)):sub(1, M.ERROR_LIMIT),
      model_version = r.model })
    if proc_after then
      pcall(db.event_add, db, run.id, events.TERMINAL, { status = status == "completed" and "failed" or status })
    end
  end
  log.info("run %s %s %s in %d ms (tokens %d in, %d out)%s -> %s", log.short(run.id), process.name,
    status, duration, r.tokens_in, r.tokens_out,
    err_text and (": " .. err_text:gsub("\n.*", "")) or "", proc_after and proc_after.status or "?")
  local cooldown = self.throttle_cooldown_ms
  if status == "throttled" and cooldown and cooldown > 0 then
    -- nothing new starts until the cooldown ends (db:runnable); then look again at once
    log.info("throttled: no new runs for %d ms", cooldown)
    core.loop.timer(cooldown + 1, 0, core.sched.wake)
  end
  -- Each finished run pays down its own garbage: when thousands of answers arrive
  -- together, their leftovers would otherwise pile up until the next full cycle.
  collectgarbage("step", 32)
end

return M
