-- cogos.providers.bedrock — Amazon Bedrock Converse (POST <endpoint>/model/<id>/converse).
--
-- Requests are signed with AWS Signature V4 by libcurl (core.http.request's
-- aws_sigv4 option); the key pair goes to curl and nowhere else, a session
-- token travels in x-amz-security-token. Mapping from the internal
-- (Anthropic-shaped) model to Converse shapes: system [{text}], content blocks
-- {text} | {toolUse} | {toolResult} | {image}, toolConfig.tools[{toolSpec}].
-- Streaming (config.stream, or opts.on_text given to :complete) uses
-- ConverseStream, whose body is the AWS event-stream binary framing: each
-- message is a prelude (total and header lengths, CRC32), headers, a JSON
-- payload and a CRC32 of the whole message.
local core = require("cogos.core")
local common = require("cogos.providers.common")

local json = core.json
local array, present = common.array, common.present

local M = {}

M.NAME = "bedrock"
M.SERVICE = "bedrock"

local STOP_REASONS = {
  end_turn = "end_turn",
  stop_sequence = "end_turn",
  tool_use = "tool_use",
  max_tokens = "max_tokens",
  model_context_window_exceeded = "max_tokens",
  guardrail_intervened = "end_turn",
  content_filtered = "end_turn",
}

local function fail(msg)
  error(M.NAME .. ": " .. msg, 0)
end

--- The regional endpoint.
---@param region string
---@return string
function M.default_base_url(region)
  return "https://bedrock-runtime." .. region .. ".amazonaws.com"
end

--- A model id as one URL path segment (":" and "/" of ids and ARNs encoded).
---@param id string
---@return string
function M.path_segment(id)
  return (id:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- ---- CRC32 (IEEE 802.3, as the event-stream framing uses) ----

local CRC = {}
for n = 0, 255 do
  local c = n
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC[n] = c
end

--- CRC32 of s[i..j].
---@param s string
---@param i integer|nil
---@param j integer|nil
---@return integer
function M.crc32(s, i, j)
  local c = 0xFFFFFFFF
  for k = i or 1, j or #s do
    c = CRC[(c ~ s:byte(k)) & 0xFF] ~ (c >> 8)
  end
  return c ~ 0xFFFFFFFF
end

-- ---- the event-stream framing ----

-- Header value types: 0 true, 1 false, 2 byte, 3 short, 4 int, 5 long,
-- 6 bytes, 7 string, 8 timestamp, 9 uuid.
local FIXED = { [0] = 0, [1] = 0, [2] = 1, [3] = 2, [4] = 4, [5] = 8, [8] = 8, [9] = 16 }

local function parse_headers(s, i, j)
  local h = {}
  while i <= j do
    local nlen = s:byte(i)
    local name = s:sub(i + 1, i + nlen)
    local t = s:byte(i + 1 + nlen)
    i = i + 2 + nlen
    if t == 6 or t == 7 then
      local vlen = string.unpack(">I2", s, i)
      h[name] = s:sub(i + 2, i + 1 + vlen)
      i = i + 2 + vlen
    elseif FIXED[t] then
      if t == 0 or t == 1 then h[name] = (t == 0) end
      i = i + FIXED[t]
    else
      fail("bad event-stream header type " .. tostring(t))
    end
  end
  if i ~= j + 1 then fail("bad event-stream headers") end
  return h
end

--- An incremental event-stream decoder: feed it chunks, it calls
--- on_message(headers, payload) per complete message and raises on a bad CRC.
---@param on_message fun(headers: table, payload: string)
---@return fun(chunk: string)
function M.event_stream_parser(on_message)
  local buf = ""
  return function(chunk)
    buf = buf .. chunk
    local pos = 1
    while #buf - pos + 1 >= 12 do
      local total, hlen, pcrc = string.unpack(">I4I4I4", buf, pos)
      if M.crc32(buf, pos, pos + 7) ~= pcrc then fail("event-stream prelude CRC mismatch") end
      if total < 16 or hlen > total - 16 then fail("bad event-stream message length") end
      if #buf - pos + 1 < total then break end
      local last = pos + total - 1
      if M.crc32(buf, pos, last - 4) ~= string.unpack(">I4", buf, last - 3) then
        fail("event-stream message CRC mismatch")
      end
      local headers = parse_headers(buf, pos + 12, pos + 11 + hlen)
      on_message(headers, buf:sub(pos + 12 + hlen, last - 4))
      pos = last + 1
    end
    buf = buf:sub(pos)
  end
end

--- Encodes one event-stream message with string headers (for tests and fakes).
---@param headers table name -> string value
---@param payload string
---@return string
function M.event_stream_message(headers, payload)
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  local hs = {}
  for _, k in ipairs(names) do
    hs[#hs + 1] = string.pack(">s1Bs2", k, 7, headers[k])
  end
  local h = table.concat(hs)
  local total = 12 + #h + #payload + 4
  local prelude = string.pack(">I4I4", total, #h)
  local head = prelude .. string.pack(">I4", M.crc32(prelude)) .. h .. payload
  return head .. string.pack(">I4", M.crc32(head))
end

-- ---- mapping ----

local function result_content(content)
  if type(content) == "string" then return array({ { text = content } }) end
  local out = array()
  for _, b in ipairs(content or {}) do
    if b.type == "text" then
      out[#out + 1] = { text = b.text or "" }
    elseif b.type == "json" then
      out[#out + 1] = { json = b.json }
    else
      fail("unsupported tool_result content type " .. tostring(b.type))
    end
  end
  if #out == 0 then out[1] = { text = "" } end
  return out
end

local function wire_block(b)
  local t = b.type
  if t == "text" then
    return { text = b.text or "" }
  elseif t == "tool_use" then
    return { toolUse = { toolUseId = b.id, name = b.name, input = b.input or {} } }
  elseif t == "tool_result" then
    return { toolResult = { toolUseId = b.tool_use_id, content = result_content(b.content),
                            status = b.is_error and "error" or nil } }
  elseif t == "image" then
    local src = b.source or {}
    local format = type(src.media_type) == "string" and src.media_type:match("^image/(%w+)$")
    if not format or type(src.data) ~= "string" then fail("image blocks need a base64 source with media_type") end
    return { image = { format = format == "jpg" and "jpeg" or format, source = { bytes = src.data } } }
  end
  fail("unsupported content block type " .. tostring(t))
end

local function wire_content(content)
  if type(content) == "string" then return array({ { text = content } }) end
  local out = array()
  for _, b in ipairs(content or {}) do
    -- Converse rejects blank text blocks ("The text field in the ContentBlock object is blank").
    if not (b.type == "text" and (b.text or "") == "") then out[#out + 1] = wire_block(b) end
  end
  return out
end

--- Maps an internal request to a Converse request body (the model goes in the URL).
---@param request table internal request {model, system, max_tokens, messages, tools, temperature}
---@param config table|nil provider config {model, max_tokens}
---@return table|nil body, string model_or_err
function M.to_wire(request, config)
  config = config or {}
  local ok, res, model_id = pcall(function()
    local model = request.model or config.model
    if model == nil then fail("no model configured") end
    local wire = { messages = array(), inferenceConfig = {
      maxTokens = request.max_tokens or config.max_tokens or common.DEFAULT_MAX_TOKENS } }
    if request.temperature then wire.inferenceConfig.temperature = request.temperature end
    if type(request.system) == "string" and request.system ~= "" then
      wire.system = array({ { text = request.system } })
    end
    for _, m in ipairs(request.messages or {}) do
      if m.role ~= "user" and m.role ~= "assistant" then fail("bad message role " .. tostring(m.role)) end
      wire.messages[#wire.messages + 1] = { role = m.role, content = wire_content(m.content) }
    end
    if request.tools and #request.tools > 0 then
      local tools = array()
      for _, t in ipairs(request.tools) do
        tools[#tools + 1] = { toolSpec = { name = t.name, description = t.description,
          inputSchema = { json = t.input_schema or { type = "object", properties = {} } } } }
      end
      wire.toolConfig = { tools = tools }
    end
    return wire, model
  end)
  if not ok then return nil, tostring(res) end
  return res, model_id
end

--- Maps a Converse response body (decoded) to an internal response.
---@param body table decoded response
---@return table|nil response, string|nil err
function M.from_wire(body)
  local msg = type(body) == "table" and type(body.output) == "table" and body.output.message
  if type(msg) ~= "table" or type(msg.content) ~= "table" then
    return nil, M.NAME .. ": bad response: no output message"
  end
  local content = array()
  local has_tool = false
  for _, b in ipairs(msg.content) do
    if type(b.text) == "string" then
      content[#content + 1] = { type = "text", text = b.text }
    elseif type(b.toolUse) == "table" then
      local tu = b.toolUse
      has_tool = true
      content[#content + 1] = { type = "tool_use", id = tu.toolUseId, name = tu.name,
                                input = type(tu.input) == "table" and tu.input or {} }
    end -- reasoningContent and other blocks are not part of the internal model
  end
  local stop = present(body.stopReason) and STOP_REASONS[body.stopReason]
  if not stop then stop = has_tool and "tool_use" or "end_turn" end
  local u = type(body.usage) == "table" and body.usage or {}
  local usage = {
    input_tokens = math.tointeger(u.inputTokens) or 0,
    output_tokens = math.tointeger(u.outputTokens) or 0,
  }
  local cache_read, cache_write = math.tointeger(u.cacheReadInputTokens), math.tointeger(u.cacheWriteInputTokens)
  if cache_read then usage.cache_read_input_tokens = cache_read end
  if cache_write then usage.cache_creation_input_tokens = cache_write end
  return { content = content, stop_reason = stop, usage = usage, model = body.model }
end

--- "bedrock: HTTP 400: ValidationException: message" for a non-2xx response; the
--- error type comes from x-amzn-errortype (or the body's __type).
---@param status integer
---@param body string|nil
---@param headers table|nil
---@return string
function M.error_text(status, body, headers)
  local etype = headers and headers["x-amzn-errortype"]
  local decoded = body and body ~= "" and json.decode(body)
  if not etype and type(decoded) == "table" and type(decoded.__type) == "string" then etype = decoded.__type end
  if etype then etype = etype:match("^[^:]*"):match("[%w]+$") end
  local msg = type(decoded) == "table" and type(decoded.Message) == "string" and decoded.Message
    or common.error_message(body)
  local parts = { string.format("%s: HTTP %d", M.NAME, status) }
  if etype and etype ~= "" then parts[#parts + 1] = etype end
  if msg then parts[#parts + 1] = msg end
  return table.concat(parts, ": ")
end

-- Assembles ConverseStream events into the Converse response shape, so
-- from_wire serves both.
local function accumulator(on_text)
  local msg = { output = { message = { role = "assistant", content = {} } } }
  local blocks, parts = msg.output.message.content, {}
  local function block(i)
    local b = blocks[i]
    if not b then
      b = {}
      blocks[i] = b
    end
    return b
  end
  local function on_message(h, payload)
    local mtype = h[":message-type"]
    if mtype == "exception" or mtype == "error" then
      local e = json.decode(payload)
      local text = type(e) == "table" and (e.message or e.Message) or h[":error-message"] or payload
      fail("stream error: " .. tostring(h[":exception-type"] or h[":error-code"] or "error") .. ": " .. tostring(text))
    end
    local ev, err = json.decode(payload)
    if type(ev) ~= "table" then fail("bad stream event: " .. tostring(err)) end
    local t = h[":event-type"]
    local i = (math.tointeger(ev.contentBlockIndex) or 0) + 1
    if t == "contentBlockStart" then
      local tu = type(ev.start) == "table" and ev.start.toolUse
      if type(tu) == "table" then
        block(i).toolUse = { toolUseId = tu.toolUseId, name = tu.name }
        parts[i] = {}
      end
    elseif t == "contentBlockDelta" then
      local d = type(ev.delta) == "table" and ev.delta or {}
      if type(d.text) == "string" then
        local b = block(i)
        b.text = (b.text or "") .. d.text
        if on_text and d.text ~= "" then on_text(d.text) end
      elseif type(d.toolUse) == "table" then
        if not parts[i] then fail("tool input for unknown block " .. tostring(i - 1)) end
        parts[i][#parts[i] + 1] = d.toolUse.input or ""
      end
    elseif t == "contentBlockStop" then
      local b = blocks[i]
      if b and b.toolUse then
        local s = table.concat(parts[i] or {})
        if s == "" then
          b.toolUse.input = {}
        else
          local input, jerr = json.decode(s)
          if type(input) ~= "table" then
            fail("bad tool input JSON for " .. tostring(b.toolUse.name) .. ": " .. tostring(jerr))
          end
          b.toolUse.input = input
        end
      end
    elseif t == "messageStop" then
      msg.stopReason = ev.stopReason
      msg.stopped = true
    elseif t == "metadata" then
      msg.usage = ev.usage
      msg.done = true
    end -- messageStart and unknown events carry nothing we keep
  end
  local function finish()
    -- Blocks are indexed by contentBlockIndex; keep their order, drop holes.
    local max = 0
    for k in pairs(blocks) do if k > max then max = k end end
    local list = {}
    for k = 1, max do if blocks[k] then list[#list + 1] = blocks[k] end end
    msg.output.message.content = list
    return msg
  end
  return on_message, finish, msg
end

local Provider = {}
Provider.__index = Provider

--- Creates a provider.
---@param config table {model, region, base_url, access_key, secret_key, session_token,
---  max_tokens, timeout_ms, stream}
---@return table|nil provider, string|nil err
function M.new(config)
  config = config or {}
  if type(config.region) ~= "string" or not config.region:match("^[%w%-]+$") then
    return nil, M.NAME .. ": no AWS region (set $AWS_REGION or the cogtainer's llm.region)"
  end
  if type(config.access_key) ~= "string" or config.access_key == ""
    or type(config.secret_key) ~= "string" or config.secret_key == "" then
    return nil, M.NAME .. ": no AWS credentials (set $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY)"
  end
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
  local wire, model = M.to_wire(request, config)
  if not wire then return nil, model end
  local body, jerr = json.encode(wire)
  wire = nil -- luacheck: ignore 311 (only the encoded body waits with the request)
  if not body then return nil, M.NAME .. ": cannot encode the request: " .. tostring(jerr) end
  local headers = { ["content-type"] = "application/json" }
  if stream then headers.accept = "application/vnd.amazon.eventstream" end
  if config.session_token and config.session_token ~= "" then
    headers["x-amz-security-token"] = config.session_token
  end
  local url = common.base_url(config.base_url or M.default_base_url(config.region))
    .. "/model/" .. M.path_segment(model) .. (stream and "/converse-stream" or "/converse")
  local res, state = common.send(M.NAME, function()
    local req = { method = "POST", url = url, headers = headers, body = body,
                  timeout_ms = (opts and opts.timeout_ms) or config.timeout_ms or common.DEFAULT_TIMEOUT_MS,
                  aws_sigv4 = "aws:amz:" .. config.region .. ":" .. M.SERVICE,
                  user = config.access_key, password = config.secret_key }
    if not stream then return req end
    local on_message, finish, acc = accumulator(on_text)
    local raw, size = {}, 0
    local st = { finish = finish, acc = acc }
    local parse = M.event_stream_parser(function(h, payload)
      if st.err then return end
      local ok, err = pcall(on_message, h, payload)
      if not ok then st.err = tostring(err) end
    end)
    -- The first 64 KB raw is the error body when the status is not 2xx.
    req.on_data = function(chunk)
      if size < 65536 then
        raw[#raw + 1] = chunk
        size = size + #chunk
      end
      if st.err then return end
      local ok, err = pcall(parse, chunk)
      if not ok then st.err = tostring(err) end
    end
    function st.raw() return table.concat(raw) end
    return req, st
  end)
  if not res then return nil, state end
  if stream then
    if res.status < 200 or res.status > 299 then return nil, M.error_text(res.status, state.raw(), res.headers) end
    if state.err then return nil, state.err end
    if not state.acc.stopped then return nil, M.NAME .. ": stream ended early" end
    local r, err = M.from_wire(state.finish())
    if r then r.model = model end
    return r, err
  end
  if res.status < 200 or res.status > 299 then return nil, M.error_text(res.status, res.body, res.headers) end
  local decoded, derr = json.decode(res.body)
  if type(decoded) ~= "table" then return nil, M.NAME .. ": bad response JSON: " .. tostring(derr) end
  local r, err = M.from_wire(decoded)
  if r then r.model = model end
  return r, err
end

return M
