-- cogos.providers.openai — OpenAI chat completions (POST <base>/chat/completions).
--
-- The same wire format serves OpenAI, OpenRouter, Ollama, vLLM and llama.cpp:
-- only the base URL (and the key) differ, e.g. "https://openrouter.ai/api/v1",
-- "http://localhost:11434/v1", "http://localhost:8000/v1".
-- Mapping from the internal (Anthropic-shaped) model: the system prompt becomes
-- the first message, assistant tool_use blocks become tool_calls, each
-- tool_result its own "tool" message. Streaming (config.stream, or opts.on_text
-- given to :complete) assembles chat.completion.chunk deltas into the same response.
local core = require("cogos.core")
local common = require("cogos.providers.common")

local json = core.json
local array, present = common.array, common.present

local M = {}

M.NAME = "openai"
M.DEFAULT_BASE_URL = "https://api.openai.com/v1"

local FINISH_REASONS = {
  stop = "end_turn",
  tool_calls = "tool_use",
  function_call = "tool_use",
  length = "max_tokens",
  content_filter = "end_turn",
}

local function fail(name, msg)
  error(name .. ": " .. msg, 0)
end

local function text_of(content)
  if type(content) == "string" then return content end
  local parts = {}
  for _, b in ipairs(content or {}) do
    if b.type == "text" then parts[#parts + 1] = b.text or "" end
  end
  return table.concat(parts, "\n")
end

-- The user blocks of one internal message: tool results first (they must follow
-- the assistant message that made the calls), then the user's own content.
local function add_user(out, m, name)
  local content = m.content
  if type(content) == "string" then
    out[#out + 1] = { role = "user", content = content }
    return
  end
  local texts, parts, has_image, results = {}, array(), false, 0
  for _, b in ipairs(content or {}) do
    if b.type == "tool_result" then
      -- The wire format has no error flag; the result text has to say it.
      results = results + 1
      out[#out + 1] = { role = "tool", tool_call_id = b.tool_use_id, content = text_of(b.content) }
    elseif b.type == "text" then
      texts[#texts + 1] = b.text or ""
      parts[#parts + 1] = { type = "text", text = b.text or "" }
    elseif b.type == "image" then
      local src = b.source or {}
      has_image = true
      parts[#parts + 1] = { type = "image_url",
        image_url = { url = "data:" .. tostring(src.media_type) .. ";base64," .. tostring(src.data) } }
    else
      fail(name, "unsupported content block type " .. tostring(b.type) .. " in a user message")
    end
  end
  if has_image then
    out[#out + 1] = { role = "user", content = parts }
  elseif #texts > 0 or results == 0 then
    out[#out + 1] = { role = "user", content = table.concat(texts, "\n") }
  end
end

local function add_assistant(out, m, name)
  local content = m.content
  if type(content) == "string" then
    out[#out + 1] = { role = "assistant", content = content }
    return
  end
  local texts, calls = {}, array()
  for _, b in ipairs(content or {}) do
    if b.type == "text" then
      if (b.text or "") ~= "" then texts[#texts + 1] = b.text end
    elseif b.type == "tool_use" then
      local args, err = json.encode(b.input or {})
      if not args then fail(name, "cannot encode tool input of " .. tostring(b.name) .. ": " .. tostring(err)) end
      calls[#calls + 1] = { id = b.id, type = "function", ["function"] = { name = b.name, arguments = args } }
    else
      fail(name, "unsupported content block type " .. tostring(b.type) .. " in an assistant message")
    end
  end
  local msg = { role = "assistant", content = #texts > 0 and table.concat(texts, "\n") or json.null }
  if #calls > 0 then msg.tool_calls = calls end
  out[#out + 1] = msg
end

local function max_tokens_param(config)
  if config.max_tokens_param then return config.max_tokens_param end
  -- OpenAI's own API deprecated max_tokens (reasoning models reject it);
  -- OpenRouter, Ollama, vLLM and llama.cpp all take max_tokens.
  local base = config.base_url or M.DEFAULT_BASE_URL
  if base:find("^https://api%.openai%.com") then return "max_completion_tokens" end
  return "max_tokens"
end

--- Maps an internal request to a chat completions request body.
---@param request table internal request {model, system, max_tokens, messages, tools}
---@param config table|nil provider config {model, max_tokens, base_url, max_tokens_param, name}
---@return table|nil body, string|nil err
function M.to_wire(request, config)
  config = config or {}
  local name = config.name or M.NAME
  local ok, res = pcall(function()
    local wire = { model = request.model or config.model, messages = array() }
    if wire.model == nil then fail(name, "no model configured") end
    wire[max_tokens_param(config)] = request.max_tokens or config.max_tokens or common.DEFAULT_MAX_TOKENS
    local out = wire.messages
    if type(request.system) == "string" and request.system ~= "" then
      out[1] = { role = "system", content = request.system }
    end
    for _, m in ipairs(request.messages or {}) do
      if m.role == "user" then
        add_user(out, m, name)
      elseif m.role == "assistant" then
        add_assistant(out, m, name)
      else
        fail(name, "bad message role " .. tostring(m.role))
      end
    end
    if request.tools and #request.tools > 0 then
      wire.tools = array()
      for _, t in ipairs(request.tools) do
        wire.tools[#wire.tools + 1] = { type = "function", ["function"] = {
          name = t.name,
          description = t.description,
          parameters = t.input_schema or { type = "object", properties = {} },
        } }
      end
    end
    if request.temperature then wire.temperature = request.temperature end
    return wire
  end)
  if not ok then return nil, tostring(res) end
  return res
end

--- Maps a chat completions response body (decoded) to an internal response.
---@param body table decoded response
---@param config table|nil provider config (for the error prefix)
---@return table|nil response, string|nil err
function M.from_wire(body, config)
  local name = (config and config.name) or M.NAME
  local choice = type(body) == "table" and type(body.choices) == "table" and body.choices[1]
  if type(choice) ~= "table" then return nil, name .. ": bad response: no choices" end
  local msg = type(choice.message) == "table" and choice.message or {}
  local content = array()
  local text = present(msg.content) and text_of(msg.content) or ""
  if text ~= "" then content[1] = { type = "text", text = text } end
  local calls = present(msg.tool_calls) and msg.tool_calls or {}
  for i, tc in ipairs(calls) do
    local fn = type(tc["function"]) == "table" and tc["function"] or {}
    local args, input = fn.arguments
    if type(args) == "table" then -- some local servers send the object itself
      input = args
    elseif not present(args) or args == "" then
      input = {}
    else
      local err
      input, err = json.decode(args)
      if type(input) ~= "table" then
        return nil, string.format("%s: bad tool arguments for %s: %s", name, tostring(fn.name),
                                  tostring(err or "not a JSON object"))
      end
    end
    local id = present(tc.id) and tc.id ~= "" and tc.id or ("call_" .. i)
    content[#content + 1] = { type = "tool_use", id = id, name = fn.name, input = input }
  end
  local stop = present(choice.finish_reason) and FINISH_REASONS[choice.finish_reason] or "end_turn"
  -- Some servers (older Ollama) say "stop" while returning tool calls; the
  -- calls must still be answered, so they decide.
  if #calls > 0 then stop = "tool_use" end
  local u = type(body.usage) == "table" and body.usage or {}
  return {
    content = content,
    stop_reason = stop,
    usage = {
      input_tokens = math.tointeger(u.prompt_tokens) or 0,
      output_tokens = math.tointeger(u.completion_tokens) or 0,
    },
    model = present(body.model) and body.model or nil,
  }
end

--- Parses an error response body into its message ({"error": {"message": ...}}).
---@param status integer
---@param body string|nil
---@param config table|nil
---@return string
function M.error_text(status, body, config)
  return common.http_error((config and config.name) or M.NAME, status, body)
end

-- Assembles chat.completion.chunk deltas into the non-streaming body shape.
local function accumulator(name, on_text)
  local body = { choices = { { message = {} } } }
  local texts, calls = {}, {}
  local function on_event(_, data)
    if data == "[DONE]" then
      body.done = true
      return
    end
    local ev, err = json.decode(data)
    if type(ev) ~= "table" then fail(name, "bad stream chunk: " .. tostring(err)) end
    if present(ev.error) then
      fail(name, "stream error: " .. tostring(type(ev.error) == "table" and ev.error.message or ev.error))
    end
    if present(ev.model) then body.model = ev.model end
    if type(ev.usage) == "table" then body.usage = ev.usage end
    local choice = type(ev.choices) == "table" and ev.choices[1]
    if type(choice) ~= "table" then return end
    if present(choice.finish_reason) then body.choices[1].finish_reason = choice.finish_reason end
    local d = type(choice.delta) == "table" and choice.delta or {}
    if type(d.content) == "string" and d.content ~= "" then
      texts[#texts + 1] = d.content
      if on_text then on_text(d.content) end
    end
    for _, tc in ipairs(present(d.tool_calls) and d.tool_calls or {}) do
      local i = (math.tointeger(tc.index) or #calls) + 1
      local c = calls[i]
      if not c then
        c = { id = nil, type = "function", ["function"] = { name = nil, arguments = {} } }
        calls[i] = c
      end
      if present(tc.id) then c.id = tc.id end
      local fn = type(tc["function"]) == "table" and tc["function"] or {}
      if present(fn.name) and not c["function"].name then c["function"].name = fn.name end
      if type(fn.arguments) == "string" then
        local a = c["function"].arguments
        a[#a + 1] = fn.arguments
      end
    end
  end
  local function finish()
    local msg = body.choices[1].message
    msg.content = #texts > 0 and table.concat(texts) or json.null
    if #calls > 0 then
      msg.tool_calls = {}
      for i = 1, #calls do
        local c = calls[i]
        msg.tool_calls[i] = { id = c.id, type = "function",
          ["function"] = { name = c["function"].name, arguments = table.concat(c["function"].arguments) } }
      end
    end
    return body
  end
  return on_event, finish, body
end

local Provider = {}
Provider.__index = Provider

--- Creates a provider.
---@param config table {model, api_key, base_url, max_tokens, timeout_ms, stream, name, max_tokens_param}
---@return table provider
function M.new(config)
  config = config or {}
  return setmetatable({ config = config }, Provider)
end

--- Sends one turn of the conversation.
---@param request table internal request
---@param opts table|nil {on_text = fun(text)} streams and calls on_text per text delta;
---  {timeout_ms} bounds each HTTP attempt (else config.timeout_ms)
---@return table|nil response, string|nil err
function Provider:complete(request, opts)
  local config = self.config
  local name = config.name or M.NAME
  local on_text = opts and opts.on_text
  local stream = config.stream or on_text ~= nil
  local wire, err = M.to_wire(request, config)
  if not wire then return nil, err end
  if stream then
    wire.stream = true
    wire.stream_options = { include_usage = true }
  end
  local body, jerr = json.encode(wire)
  wire = nil -- luacheck: ignore 311 (only the encoded body waits with the request)
  if not body then return nil, name .. ": cannot encode the request: " .. tostring(jerr) end
  local headers = { ["content-type"] = "application/json" }
  if config.api_key and config.api_key ~= "" then headers.authorization = "Bearer " .. config.api_key end
  local url = common.base_url(config.base_url or M.DEFAULT_BASE_URL) .. "/chat/completions"
  local res, state = common.send(name, function()
    local req = { method = "POST", url = url, headers = headers, body = body,
                  timeout_ms = (opts and opts.timeout_ms) or config.timeout_ms or common.DEFAULT_TIMEOUT_MS }
    if not stream then return req end
    local on_event, finish, acc = accumulator(name, on_text)
    local on_data, st = common.stream(on_event)
    req.on_data = on_data
    st.finish, st.acc = finish, acc
    return req, st
  end)
  if not res then return nil, state end
  if stream then
    if res.status < 200 or res.status > 299 then return nil, M.error_text(res.status, state.raw(), config) end
    if state.err then return nil, state.err end
    if not (state.acc.done or state.acc.choices[1].finish_reason) then
      return nil, name .. ": stream ended early"
    end
    return M.from_wire(state.finish(), config)
  end
  if res.status < 200 or res.status > 299 then return nil, M.error_text(res.status, res.body, config) end
  local decoded, derr = json.decode(res.body)
  if type(decoded) ~= "table" then return nil, name .. ": bad response JSON: " .. tostring(derr) end
  return M.from_wire(decoded, config)
end

return M
