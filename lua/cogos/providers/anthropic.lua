-- cogos.providers.anthropic — the Anthropic Messages API (POST <base>/v1/messages).
--
-- The internal message model is already Anthropic-shaped, so the mapping is
-- mostly a copy that keeps only documented fields and marks arrays (so an empty
-- list is sent as [] and never as {}).
-- Streaming (config.stream, or opts.on_text given to :complete) reads the
-- documented server-sent events and assembles the same response as the
-- non-streaming call.
local core = require("cogos.core")
local common = require("cogos.providers.common")

local json = core.json
local array, present = common.array, common.present

local M = {}

M.NAME = "anthropic"
M.DEFAULT_BASE_URL = "https://api.anthropic.com"
M.API_VERSION = "2023-06-01"

local STOP_REASONS = {
  end_turn = "end_turn",
  stop_sequence = "end_turn",
  tool_use = "tool_use",
  max_tokens = "max_tokens",
  model_context_window_exceeded = "max_tokens",
  pause_turn = "end_turn",
  refusal = "end_turn",
}

local function fail(msg)
  error(M.NAME .. ": " .. msg, 0)
end

local function wire_block(b)
  local t = b.type
  if t == "text" then
    return { type = "text", text = b.text or "" }
  elseif t == "tool_use" then
    return { type = "tool_use", id = b.id, name = b.name, input = b.input or {} }
  elseif t == "tool_result" then
    local content = b.content
    if content == nil then content = "" end
    return { type = "tool_result", tool_use_id = b.tool_use_id, content = content,
             is_error = b.is_error and true or nil }
  elseif t == "image" then
    return { type = "image", source = b.source }
  end
  fail("unsupported content block type " .. tostring(t))
end

local function wire_content(content)
  if type(content) == "string" then
    return array({ { type = "text", text = content } })
  end
  local out = array()
  for _, b in ipairs(content or {}) do
    -- The API rejects empty text blocks; they carry nothing anyway.
    if not (b.type == "text" and (b.text or "") == "" and #content > 1) then
      out[#out + 1] = wire_block(b)
    end
  end
  return out
end

--- Maps an internal request to the Messages API request body.
---@param request table internal request {model, system, max_tokens, messages, tools}
---@param config table|nil provider config {model, max_tokens}
---@return table|nil body, string|nil err
function M.to_wire(request, config)
  config = config or {}
  local ok, res = pcall(function()
    local wire = {
      model = request.model or config.model,
      max_tokens = request.max_tokens or config.max_tokens or common.DEFAULT_MAX_TOKENS,
      messages = array(),
    }
    if wire.model == nil then fail("no model configured") end
    if type(request.system) == "string" and request.system ~= "" then wire.system = request.system end
    for _, m in ipairs(request.messages or {}) do
      if m.role ~= "user" and m.role ~= "assistant" then fail("bad message role " .. tostring(m.role)) end
      wire.messages[#wire.messages + 1] = { role = m.role, content = wire_content(m.content) }
    end
    if request.tools and #request.tools > 0 then
      wire.tools = array()
      for _, t in ipairs(request.tools) do
        wire.tools[#wire.tools + 1] = {
          name = t.name,
          description = t.description,
          input_schema = t.input_schema or { type = "object", properties = {} },
        }
      end
    end
    if request.temperature then wire.temperature = request.temperature end
    return wire
  end)
  if not ok then return nil, tostring(res) end
  return res
end

--- Maps a Messages API response body (decoded) to an internal response.
---@param body table decoded response
---@return table|nil response, string|nil err
function M.from_wire(body)
  if type(body) ~= "table" or type(body.content) ~= "table" then
    return nil, M.NAME .. ": bad response: no content"
  end
  local content = array()
  local has_tool = false
  for _, b in ipairs(body.content) do
    if b.type == "text" then
      content[#content + 1] = { type = "text", text = b.text or "" }
    elseif b.type == "tool_use" then
      has_tool = true
      content[#content + 1] = {
        type = "tool_use", id = b.id, name = b.name,
        input = type(b.input) == "table" and b.input or {},
      }
    end -- thinking and server-tool blocks are not part of the internal model
  end
  local stop = present(body.stop_reason) and STOP_REASONS[body.stop_reason]
  if not stop then stop = has_tool and "tool_use" or "end_turn" end
  local u = type(body.usage) == "table" and body.usage or {}
  local usage = {
    input_tokens = math.tointeger(u.input_tokens) or 0,
    output_tokens = math.tointeger(u.output_tokens) or 0,
  }
  for _, k in ipairs({ "cache_creation_input_tokens", "cache_read_input_tokens" }) do
    if math.tointeger(u[k]) then usage[k] = math.tointeger(u[k]) end
  end
  return {
    content = content,
    stop_reason = stop,
    usage = usage,
    model = present(body.model) and body.model or nil,
  }
end

--- Parses an error response body into its message ({"type":"error","error":{...}}).
---@param status integer
---@param body string|nil
---@return string
function M.error_text(status, body)
  return common.http_error(M.NAME, status, body)
end

-- Assembles streamed events into the non-streaming body shape, so from_wire
-- serves both.
local function accumulator(on_text)
  local msg = { content = {}, usage = {} }
  local blocks, parts = msg.content, {}
  local function on_event(_, data)
    local ev, err = json.decode(data)
    if type(ev) ~= "table" then fail("bad stream event: " .. tostring(err)) end
    local t = ev.type
    if t == "message_start" then
      local m = ev.message or {}
      msg.model = m.model
      for k, v in pairs(type(m.usage) == "table" and m.usage or {}) do msg.usage[k] = v end
    elseif t == "content_block_start" then
      local i = ev.index + 1
      local b = ev.content_block
      blocks[i] = { type = b.type, text = b.text, id = b.id, name = b.name }
      parts[i] = {}
    elseif t == "content_block_delta" then
      local i, d = ev.index + 1, ev.delta
      local b = blocks[i]
      if not b then fail("delta for unknown block " .. tostring(ev.index)) end
      if d.type == "text_delta" then
        b.text = (b.text or "") .. d.text
        if on_text then on_text(d.text) end
      elseif d.type == "input_json_delta" then
        parts[i][#parts[i] + 1] = d.partial_json
      end
    elseif t == "content_block_stop" then
      local i = ev.index + 1
      local b = blocks[i]
      if b and b.type == "tool_use" then
        local s = table.concat(parts[i])
        if s == "" then
          b.input = {}
        else
          local input, jerr = json.decode(s)
          if type(input) ~= "table" then
            fail("bad tool input JSON for " .. tostring(b.name) .. ": " .. tostring(jerr))
          end
          b.input = input
        end
      end
    elseif t == "message_delta" then
      if type(ev.delta) == "table" then msg.stop_reason = ev.delta.stop_reason end
      for k, v in pairs(type(ev.usage) == "table" and ev.usage or {}) do msg.usage[k] = v end
    elseif t == "message_stop" then
      msg.done = true
    elseif t == "error" then
      local e = type(ev.error) == "table" and ev.error or {}
      fail("stream error: " .. tostring(e.message or e.type or data))
    end -- ping and unknown events are ignored, as the API asks
  end
  return msg, on_event
end

local Provider = {}
Provider.__index = Provider

--- Creates a provider.
---@param config table {model, api_key, base_url, max_tokens, timeout_ms, stream}
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
  local on_text = opts and opts.on_text
  local stream = config.stream or on_text ~= nil
  local wire, err = M.to_wire(request, config)
  if not wire then return nil, err end
  if stream then wire.stream = true end
  local body, jerr = json.encode(wire)
  wire = nil -- luacheck: ignore 311 (only the encoded body waits with the request)
  if not body then return nil, M.NAME .. ": cannot encode the request: " .. tostring(jerr) end
  local headers = {
    ["content-type"] = "application/json",
    ["anthropic-version"] = M.API_VERSION,
  }
  if config.api_key and config.api_key ~= "" then headers["x-api-key"] = config.api_key end
  local url = common.base_url(config.base_url or M.DEFAULT_BASE_URL) .. "/v1/messages"
  local res, state = common.send(M.NAME, function()
    local req = { method = "POST", url = url, headers = headers, body = body,
                  timeout_ms = (opts and opts.timeout_ms) or config.timeout_ms or common.DEFAULT_TIMEOUT_MS }
    if not stream then return req end
    local msg, on_event = accumulator(on_text)
    local on_data, st = common.stream(on_event)
    req.on_data = on_data
    st.msg = msg
    return req, st
  end)
  if not res then return nil, state end
  if stream then
    if res.status < 200 or res.status > 299 then return nil, M.error_text(res.status, state.raw()) end
    if state.err then return nil, state.err end
    if not state.msg.done then return nil, M.NAME .. ": stream ended early" end
    return M.from_wire(state.msg)
  end
  if res.status < 200 or res.status > 299 then return nil, M.error_text(res.status, res.body) end
  local decoded, derr = json.decode(res.body)
  if type(decoded) ~= "table" then return nil, M.NAME .. ": bad response JSON: " .. tostring(derr) end
  return M.from_wire(decoded)
end

return M
