-- cogos.executor — one run of a process: `llm` (prompt + converse loop with the
-- run_code and search tools) or `lua` (the content runs in the sandbox). The
-- run is recorded (status, tokens, duration, error) and the process moves on.

local core = require "cogos.core"
local caps = require "cogos.caps"
local prompt = require "cogos.prompt"
local llm = require "cogos.llm"
local log = require "cogos.log"

local json = core.json

local M = {}
M.__index = M

M.MAX_TURNS = 20
M.ERROR_LIMIT = 4000

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

---@param opts table {db, llm (cogtainer llm settings), node_id}
function M.new(opts)
  return setmetatable({ db = opts.db, llm = opts.llm or {}, node_id = opts.node_id }, M)
end

local function text_of(blocks)
  local parts = {}
  for _, b in ipairs(blocks or {}) do
    if b.type == "text" and b.text ~= "" then parts[#parts + 1] = b.text end
  end
  return table.concat(parts, "\n")
end

-- The per-run execution state: grants, sandbox (made on first use), tokens.
local Run = {}
Run.__index = Run

function Run:sandbox()
  if self.sb then return self.sb end
  local by_name = {}
  for _, g in ipairs(self.grants) do by_name[g.name] = g end
  local db, process, run = self.db, self.process, self.run
  self.sb = core.sandbox.new({
    memory = 16 * 1024 * 1024,
    instructions = 50000000,
    deadline_ms = (process.max_duration_ms and process.max_duration_ms > 0) and process.max_duration_ms or 300000,
    output = 64 * 1024,
    grants = caps.sandbox_grants(self.grants),
    dispatch = function(grant_name, method, ...)
      local g = by_name[grant_name]
      local ctx = { db = db, process = process, run = run,
        grant = { name = g.name, type = g.type, config = g.config } }
      return g.module.methods[method].fn(ctx, ...)
    end,
  })
  return self.sb
end

function Run:event()
  local r = self.run
  return { run = r.id, process = self.process.name, channel = r.channel, message = r.message,
    payload = r.payload }
end

function Run:publish(stream, text)
  if text == nil or text == "" then return end
  self.db:send("io:" .. stream .. ":" .. self.process.name, { text = text, process = self.process.name },
    { sender_process = self.process.id, sender_run_id = self.run.id })
end

function Run:run_code(code)
  if type(code) ~= "string" then return "Error: run_code needs a `code` string.", true end
  local output, err = self:sandbox():run(code, { chunkname = "=run_code", event = self:event() })
  if output == nil or output == "" then output = err and "" or "(no output)" end
  if err and not output:find(err, 1, true) then output = output .. (output == "" and "" or "\n") .. err end
  self:publish("stdout", output)
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
  if block.name == "run_code" then return self:run_code(input.code) end
  if block.name == "search" then return self:search(input.query, input.limit) end
  return "Error: invalid tool name '" .. tostring(block.name) .. "'. Valid tools: run_code, search.", true
end

function Run:user_message()
  local payload = self.run.payload
  if type(payload) == "table" and next(payload) ~= nil then
    return "Message payload: " .. json.encode(payload, { pretty = true })
  end
  return "Execute your task."
end

function Run:converse(llm_settings)
  local provider, model = llm.provider(self.db, self.process, llm_settings)
  if not provider then error(model, 0) end
  self.model = model
  local request = {
    model = model,
    system = prompt.system(self.db, self.process, self.grants),
    max_tokens = 16384,
    tools = M.TOOLS,
    messages = { { role = "user", content = { { type = "text", text = self:user_message() } } } },
  }
  local max_turns = (self.process.metadata and tonumber(self.process.metadata.max_turns)) or M.MAX_TURNS
  for turn = 1, max_turns do
    local response, err = provider:complete(request)
    if not response then error(err, 0) end
    local usage = response.usage or {}
    self.tokens_in = self.tokens_in + (usage.input_tokens or 0)
    self.tokens_out = self.tokens_out + (usage.output_tokens or 0)
    request.messages[#request.messages + 1] = { role = "assistant", content = response.content }
    local text = text_of(response.content)
    local calls = {}
    for _, b in ipairs(response.content or {}) do
      if b.type == "tool_use" then calls[#calls + 1] = b end
    end
    if response.stop_reason ~= "tool_use" or #calls == 0 then
      if text ~= "" then
        log.info("run %s %s says: %s", log.short(self.run.id), self.process.name, log.excerpt(text))
      end
      self:publish("stdout", text)
      self.final = text
      return
    end
    self:publish("stdout", text)
    local results = {}
    for i, call in ipairs(calls) do
      local output, is_error = self:call_tool(call)
      log.info("run %s %s: turn %d %s%s -> %s", log.short(self.run.id), self.process.name, turn,
        tostring(call.name), is_error and " (error)" or "", log.excerpt(output))
      results[i] = { type = "tool_result", tool_use_id = call.id, content = output, is_error = is_error or nil }
    end
    request.messages[#request.messages + 1] = { role = "user", content = results }
  end
  self.final_stop_reason = "max_turns"
end

function Run:lua()
  self.model = "lua"
  local output, err = self:sandbox():run(self.process.content or "", {
    chunkname = "=" .. self.process.name, event = self:event() })
  self:publish("stdout", output)
  self.result = { output = output }
  if err then error(err, 0) end
end

---Executes a dispatched run to its end. Never raises: failures are recorded.
---@param run table the run row from db:dispatch
function M:run(run)
  local db = self.db
  local started = core.sys.monotonic_ms()
  local process = assert(db:process_get(run.process))
  local r = setmetatable({ db = db, process = process, run = run, tokens_in = 0, tokens_out = 0 }, Run)
  log.info("run %s %s started%s", log.short(run.id), process.name,
    run.channel and (" by a message on " .. run.channel) or "")
  local ok, err = xpcall(function()
    r.grants = caps.grants(db, process)
    if process.executor == "lua" then r:lua() else r:converse(self.llm) end
  end, function(e)
    if type(e) ~= "string" then e = tostring(e) end
    return e
  end)
  if r.sb then r.sb:close() end
  local duration = math.floor(core.sys.monotonic_ms() - started + 0.5)
  local err_text = not ok and tostring(err):sub(1, M.ERROR_LIMIT) or nil
  if err_text then r:publish("stderr", err_text) end
  local proc_after = db:run_finish(run.id, {
    status = ok and "completed" or "failed",
    tokens_in = r.tokens_in, tokens_out = r.tokens_out, duration_ms = duration,
    error = err_text, model_version = r.model,
    result = r.result or (r.final and { text = r.final }) or nil,
  })
  log.info("run %s %s %s in %d ms (tokens %d in, %d out)%s -> %s", log.short(run.id), process.name,
    ok and "completed" or "failed", duration, r.tokens_in, r.tokens_out,
    err_text and (": " .. err_text:gsub("\n.*", "")) or "", proc_after and proc_after.status or "?")
end

return M
