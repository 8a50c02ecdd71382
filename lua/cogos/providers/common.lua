-- cogos.providers.common — plumbing shared by the HTTP providers (not a provider):
-- POST with retries, error texts from error bodies, an incremental SSE parser.
local core = require("cogos.core")

local json = core.json

local M = {}

-- Statuses worth another attempt: rate limits, overload, gateway trouble.
M.RETRY_STATUS = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true, [529] = true }
M.MAX_RETRIES = 3
M.BASE_MS = 500
M.CAP_MS = 8000
M.MAX_RETRY_AFTER_MS = 60000
M.DEFAULT_TIMEOUT_MS = 300000
M.DEFAULT_MAX_TOKENS = 16384

--- A JSON array (stays [] when empty).
---@param t table|nil
---@return table
function M.array(t)
  return json.array(t or {})
end

--- True for a value that is present: neither nil nor JSON null.
---@param v any
---@return boolean
function M.present(v)
  return v ~= nil and v ~= json.null
end

--- Strips trailing slashes from a base URL.
---@param url string
---@return string
function M.base_url(url)
  return (url:gsub("/+$", ""))
end

--- Milliseconds to wait before retry number `attempt` (1-based): the server's
--- retry-after (seconds) when given, else exponential backoff with jitter.
---@param attempt integer
---@param headers table|nil response headers (lower-case names)
---@return integer
function M.backoff_ms(attempt, headers)
  local after = headers and tonumber(headers["retry-after"])
  if after and after >= 0 then
    return math.min(math.floor(after * 1000), M.MAX_RETRY_AFTER_MS)
  end
  local d = math.min(M.CAP_MS, M.BASE_MS * 2 ^ (attempt - 1))
  -- "Equal jitter": never less than half the step, so retries still back off.
  return math.floor(d / 2 + math.random() * d / 2)
end

local function can_sleep()
  local sched = core.sched
  return sched ~= nil and sched.in_coroutine ~= nil and sched.sleep ~= nil and sched.in_coroutine()
end

--- POSTs with retries on transient statuses. Outside a sched coroutine there is no
--- way to wait without stalling everything, so the first answer is final.
--- make_request() is called for every attempt and returns the core.http.request
--- options (fresh, so a streaming accumulator starts empty) and a state value.
---@param name string provider name used as the error prefix
---@param make_request fun(): table, any
---@return table|nil res, any state_or_err
function M.send(name, make_request)
  local attempt = 0
  while true do
    local opts, state = make_request()
    local res, err = core.http.request(opts)
    if not res then return nil, name .. ": " .. tostring(err) end
    if not (M.RETRY_STATUS[res.status] and attempt < M.MAX_RETRIES and can_sleep()) then
      return res, state
    end
    attempt = attempt + 1
    core.sched.sleep(M.backoff_ms(attempt, res.headers))
  end
end

--- The message in a provider's error body: {"error": {"message": ...}} (Anthropic,
--- OpenAI, OpenRouter), {"error": "..."} (Ollama), {"detail": ...} or {"message": ...}
--- (other OpenAI-compatible servers); else the start of the raw body.
---@param body string|nil
---@return string|nil
function M.error_message(body)
  if body == nil or body == "" then return nil end
  local t = json.decode(body)
  if type(t) == "table" then
    local e = t.error
    if type(e) == "table" and type(e.message) == "string" then return e.message end
    if type(e) == "string" then return e end
    if type(t.message) == "string" then return t.message end
    if type(t.detail) == "string" then return t.detail end
    if type(t.detail) == "table" then return (json.encode(t.detail)) end
  end
  local s = body:gsub("%s+", " ")
  if #s > 300 then s = s:sub(1, 300) .. "..." end
  return s
end

--- "name: HTTP 401: message" for a non-2xx response.
---@param name string
---@param status integer
---@param body string|nil
---@return string
function M.http_error(name, status, body)
  local msg = M.error_message(body)
  if msg then return string.format("%s: HTTP %d: %s", name, status, msg) end
  return string.format("%s: HTTP %d", name, status)
end

--- An incremental server-sent events parser: feed it chunks, it calls
--- on_event(event_name, data) for every complete event (name "message" when absent).
---@param on_event fun(event: string, data: string)
---@return fun(chunk: string)
function M.sse_parser(on_event)
  local buf, event, data = "", nil, {}
  return function(chunk)
    buf = buf .. chunk
    local pos = 1
    while true do
      local nl = buf:find("\n", pos, true)
      if not nl then break end
      local line = buf:sub(pos, nl - 1)
      pos = nl + 1
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end
      if line == "" then
        if #data > 0 then on_event(event or "message", table.concat(data, "\n")) end
        event, data = nil, {}
      elseif line:sub(1, 1) ~= ":" then -- ":" starts a comment
        local field, value = line:match("^([^:]*):? ?(.*)$")
        if field == "event" then
          event = value
        elseif field == "data" then
          data[#data + 1] = value
        end
      end
    end
    buf = buf:sub(pos)
  end
end

--- The on_data function of a streaming request: parses SSE into on_event and keeps
--- the first 64 KB raw, which is the error body when the status is not 2xx.
--- Errors from on_event are kept (first one wins) instead of aborting the transfer.
---@param on_event fun(event: string, data: string)
---@return fun(chunk: string) on_data, table state {raw = fun(): string, err = string|nil}
function M.stream(on_event)
  local raw, size = {}, 0
  local state = {}
  local parse = M.sse_parser(function(ev, data)
    if state.err then return end
    local ok, err = pcall(on_event, ev, data)
    if not ok then state.err = tostring(err) end
  end)
  function state.raw() return table.concat(raw) end
  local function on_data(chunk)
    if size < 65536 then
      raw[#raw + 1] = chunk
      size = size + #chunk
    end
    parse(chunk)
  end
  return on_data, state
end

return M
