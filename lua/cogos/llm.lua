-- cogos.llm — which provider, model, credentials and endpoint a process's run uses,
-- and the client the executor talks to (with the cogtainer's fallback chain).
--
-- The executor's interface (keep it stable):
--
--   local client, err = llm.client(db, process, llm_settings)
--     llm_settings: the cogtainer's llm table {provider, model, api_key_env, base_url,
--       region, script, fallback = { {provider, model, api_key_env, base_url, region}, ... }}
--     -> nil, "one clear error" when an entry is misconfigured (unknown provider,
--        missing key or script); nothing is sent then.
--   client.model            the model of the primary; after a call, of the entry that answered
--   client.entries          the chain, in order: {provider = <provider object>, model, name}
--   local response, err = client:complete(request, opts)
--     request   internal request {system, max_tokens, messages, tools}; its model, if any,
--               is replaced by each entry's own model
--     opts.on_text(text)    optional: stream, called once per text delta as it arrives
--     opts.timeout_ms       optional: bound on each HTTP attempt (e.g. the run's time left)
--     opts.on_fallback(info) optional: called when the chain moves on, info =
--               {from = "provider/model", to = "provider/model", error = err}; text
--               already passed to on_text came from the entry that failed
--     response  {content, stop_reason, usage = {input_tokens, output_tokens}, model,
--                provider = name, model_version = the configured model that answered}
--     err       one line "provider: HTTP 429: message" (never a key); when every entry
--               failed, the last error followed by the earlier ones
--   llm.is_context_overflow(err), llm.is_throttle(err)   classify an error string
--
-- The primary is tried first (with its own retries on 429/5xx); the next entry is
-- tried only after a retryable or provider-side failure (429, 408, 5xx, transport,
-- a broken stream), never after a request error (other 4xx), so a bad request
-- fails once. Keys come from the environment variables the settings name (AWS
-- credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN)
-- and are scrubbed from every error text.

local core = require("cogos.core")
local log = require("cogos.log")

local json = core.json

local M = {}

local BASE_URL_ENV = { anthropic = "ANTHROPIC_BASE_URL", openai = "OPENAI_BASE_URL", bedrock = "BEDROCK_BASE_URL" }
M.DEFAULT_MODEL = {
  anthropic = "claude-sonnet-4-5",
  openai = "gpt-4o-mini",
  bedrock = "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
  scripted = "scripted",
}

local function env(name)
  local v = name and os.getenv(name)
  if v == "" then return nil end
  return v
end

local function script_for(db, process, llm)
  local key = (process.metadata and process.metadata.script) or llm.script
    or ("mnt/boot/scripts/" .. process.name .. ".json")
  local f = db:file_get(key)
  if not f then
    return nil, "scripted provider: no script file '" .. key .. "' (set the process's metadata.script)"
  end
  local script, err = json.decode(f.content)
  if type(script) ~= "table" then return nil, "scripted provider: bad script '" .. key .. "': " .. tostring(err) end
  return script
end

-- Builds the provider of one entry; returns provider, model, secrets (list) or nil, err.
local function make(db, process, entry, model)
  local name = entry.provider or "scripted"
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    return nil, "unknown LLM provider '" .. tostring(name) .. "'"
  end
  local ok, mod = pcall(require, "cogos.providers." .. name)
  if not ok or type(mod) ~= "table" or name == "common" then
    return nil, "unknown LLM provider '" .. name .. "'"
  end
  local cfg = { model = model or entry.model or M.DEFAULT_MODEL[name] }
  local secrets = {}
  if name == "scripted" then
    local script, err = script_for(db, process, entry)
    if not script then return nil, err end
    cfg.script = script
  elseif name == "bedrock" then
    cfg.region = entry.region or env("AWS_REGION") or env("AWS_DEFAULT_REGION")
    cfg.access_key = env("AWS_ACCESS_KEY_ID")
    cfg.secret_key = env("AWS_SECRET_ACCESS_KEY")
    cfg.session_token = env("AWS_SESSION_TOKEN")
    cfg.base_url = entry.base_url or env(BASE_URL_ENV.bedrock)
    secrets = { cfg.secret_key, cfg.session_token }
  else
    local var = entry.api_key_env
    cfg.api_key = env(var)
    if not cfg.api_key then
      return nil, name .. " provider: no API key (set $" .. tostring(var) .. ")"
    end
    cfg.base_url = entry.base_url or env(BASE_URL_ENV[name])
    secrets = { cfg.api_key }
  end
  local provider, err = mod.new(cfg)
  if not provider then return nil, err end
  return provider, cfg.model, secrets
end


--- Replaces every occurrence of the secrets in s.
---@param s string
---@param secrets table list of strings
---@return string
function M.redact(s, secrets)
  s = tostring(s)
  for _, k in ipairs(secrets) do
    if type(k) == "string" and #k >= 4 then
      local i = s:find(k, 1, true)
      while i do
        s = s:sub(1, i - 1) .. "[redacted]" .. s:sub(i + #k)
        i = s:find(k, i + 10, true)
      end
    end
  end
  return s
end

local function status_of(err)
  return tonumber(tostring(err):match("HTTP (%d%d%d)"))
end

--- True when an error says the request was throttled or the provider overloaded:
--- HTTP 429 (Anthropic rate_limit_error, OpenAI rate_limit_exceeded, Bedrock
--- ThrottlingException) or 529 (Anthropic overloaded_error), or a streamed error
--- saying so (Bedrock's "Too many tokens, please wait" included). A run that ends
--- with one is `throttled`. Only the final failure of a fallback chain counts (what
--- follows "(after" are earlier entries), and a context overflow is never one.
---@param err any
---@return boolean
function M.is_throttle(err)
  if err == nil or M.is_context_overflow(err) then return false end
  local s = tostring(err):gsub(" %(after .*$", "")
  local status = status_of(s)
  if status == 429 or status == 529 then return true end
  local l = s:lower()
  for _, p in ipairs({ "throttl", "rate limit", "rate_limit", "overloaded", "too many requests",
                       "too many tokens" }) do
    if l:find(p, 1, true) then return true end
  end
  return false
end

local OVERFLOW = { "too long", "context length", "context_length", "context window", "maximum context",
  "too many tokens", "tokens exceed", "token limit", "exceeds the maximum", "input is too long" }

--- True when an error says the conversation no longer fits the model's context
--- (HTTP 400/413 or a validation error, with a message about length or tokens).
---@param err any
---@return boolean
function M.is_context_overflow(err)
  if err == nil then return false end
  local s = tostring(err)
  local l = s:lower()
  local status = status_of(s)
  if not (status == 400 or status == 413 or l:find("validationexception", 1, true)
          or l:find("context_length_exceeded", 1, true)) then
    return false
  end
  for _, p in ipairs(OVERFLOW) do
    if l:find(p, 1, true) then return true end
  end
  return false
end

--- True when the next entry of a fallback chain may be tried after err: rate limits,
--- timeouts and provider-side failures, never a request error (other 4xx).
---@param err any
---@return boolean
function M.can_fall_back(err)
  if err == nil then return false end
  local s = tostring(err)
  local status = status_of(s)
  if status then return status == 408 or status == 429 or status >= 500 end
  for _, p in ipairs({ "^[%w_]+: http: ", ": stream error: ", ": stream ended early", ": bad response",
                       ": bad stream", "event%-stream", ": bad tool input JSON" }) do
    if s:find(p) then return true end
  end
  return false
end

local Client = {}
Client.__index = Client

--- The client the executor calls: the primary and the fallback chain of the
--- cogtainer's llm settings (see the top of this file).
---@param db table the cogent's store
---@param process table the process row (process.model overrides the primary's model)
---@param llm table the cogtainer's llm settings
---@return table|nil client, string|nil err
function M.client(db, process, llm)
  llm = llm or {}
  local entries, secrets = {}, {}
  local list = { llm }
  if llm.fallback ~= nil then
    if type(llm.fallback) ~= "table" then return nil, "llm.fallback must be a list of {provider, model, ...}" end
    for i, e in ipairs(llm.fallback) do
      if type(e) ~= "table" or type(e.provider) ~= "string" then
        return nil, "llm.fallback[" .. i .. "] needs a provider"
      end
      list[#list + 1] = e
    end
  end
  for i, e in ipairs(list) do
    local model = i == 1 and (process.model or e.model) or e.model
    local p, m, s = make(db, process, e, model)
    if not p then
      return nil, i == 1 and m or ("fallback " .. (i - 1) .. ": " .. m)
    end
    entries[i] = { provider = p, model = m, name = e.provider or "scripted" }
    for _, k in ipairs(s) do secrets[#secrets + 1] = k end
  end
  return setmetatable({ entries = entries, secrets = secrets, model = entries[1].model,
                        provider_name = entries[1].name }, Client)
end

--- The older entry point: the client (same :complete interface as a provider, the
--- fallback chain included) and the primary's model.
---@param db table the cogent's store
---@param process table the process row
---@param llm table the cogtainer's llm settings
---@return table|nil client, string model_or_err
function M.provider(db, process, llm)
  local c, err = M.client(db, process, llm)
  if not c then return nil, err end
  return c, c.model
end

local function with_model(request, model)
  local req = {}
  for k, v in pairs(request) do req[k] = v end
  req.model = model
  return req
end

--- One turn through the chain.
---@param request table internal request
---@param opts table|nil {on_text = fun(text), on_fallback = fun(info)}
---@return table|nil response, string|nil err
function Client:complete(request, opts)
  opts = opts or {}
  local failures = {}
  for i, e in ipairs(self.entries) do
    -- Not under pcall: an error raised by a callback (on_text) belongs to the caller.
    local res, err = e.provider:complete(with_model(request, e.model),
                                         { on_text = opts.on_text, timeout_ms = opts.timeout_ms })
    if res then
      res.provider = e.name
      res.model_version = e.model
      self.model, self.provider_name = e.model, e.name
      return res
    end
    err = M.redact(err or (e.name .. ": no response"), self.secrets)
    local last = i == #self.entries
    if last or not M.can_fall_back(err) then
      if #failures > 0 then err = err .. " (after " .. table.concat(failures, "; ") .. ")" end
      return nil, err
    end
    failures[#failures + 1] = err
    local nxt = self.entries[i + 1]
    local info = { from = e.name .. "/" .. e.model, to = nxt.name .. "/" .. nxt.model, error = err }
    log.info("llm: %s failed, falling back to %s: %s", info.from, info.to, log.excerpt(err))
    if opts.on_fallback then opts.on_fallback(info) end
  end
end

return M
