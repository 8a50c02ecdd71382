-- cogos.session — conversation continuity across runs (cogos-spec §5.8).
--
-- A process opts in with metadata.session = {resume = bool, scope = "process" |
-- "keyed", key_field = "session_key"} (legacy {mode = "off" | "process" |
-- "keyed"}); without it nothing is written. Under
-- /proc/<pid>/_sessions/<path>/ a session keeps two files:
--   checkpoint.json  the transcript so far, the model and the prompt fingerprint
--                    (sha256 of {model_id, system_prompt, tool_config}); only when
--                    resume is enabled; written once per LLM turn
--   manifest.json    pointers and the latest run; written once per run
-- What the original kept per step and per run (trigger, steps/NNNN, final)
-- lives in run.snapshot and the run's events instead: fewer file versions.
-- A checkpoint is used only when resume is enabled, it is resumable, the model
-- and the fingerprint are unchanged, and it is within MAX_MESSAGES / MAX_BYTES
-- ($COGOS_SESSION_MAX_MESSAGES / _BYTES); otherwise the run starts fresh and
-- snapshot.resume_skipped_reason says why.

local core = require "cogos.core"

local json = core.json

local M = {}

M.MAX_MESSAGES = tonumber(os.getenv("COGOS_SESSION_MAX_MESSAGES")) or 120
M.MAX_BYTES = tonumber(os.getenv("COGOS_SESSION_MAX_BYTES")) or 200000

-- {============ sha256 (FIPS 180-4), for fingerprints and session paths

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function rotr(x, n) return ((x >> n) | (x << (32 - n))) & 0xffffffff end

---The SHA-256 of a string, in hex.
---@param msg string
---@return string
function M.sha256(msg)
  local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
  local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  local len = #msg
  msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. string.pack(">I8", len * 8)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 1, 16 do w[i] = string.unpack(">I4", msg, chunk + (i - 1) * 4) end
    for i = 17, 64 do
      local a, b = w[i - 15], w[i - 2]
      local s0 = rotr(a, 7) ~ rotr(a, 18) ~ (a >> 3)
      local s1 = rotr(b, 17) ~ rotr(b, 19) ~ (b >> 10)
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & 0xffffffff
    end
    local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
    for i = 1, 64 do
      local S1 = rotr(e, 6) ~ rotr(e, 11) ~ rotr(e, 25)
      local ch = (e & f) ~ (~e & g)
      local t1 = (h + S1 + ch + K[i] + w[i]) & 0xffffffff
      local S0 = rotr(a, 2) ~ rotr(a, 13) ~ rotr(a, 22)
      local maj = (a & b) ~ (a & c) ~ (b & c)
      local t2 = (S0 + maj) & 0xffffffff
      h, g, f, e, d, c, b, a = g, f, e, (d + t1) & 0xffffffff, c, b, a, (t1 + t2) & 0xffffffff
    end
    h0, h1, h2, h3 = (h0 + a) & 0xffffffff, (h1 + b) & 0xffffffff, (h2 + c) & 0xffffffff, (h3 + d) & 0xffffffff
    h4, h5, h6, h7 = (h4 + e) & 0xffffffff, (h5 + f) & 0xffffffff, (h6 + g) & 0xffffffff, (h7 + h) & 0xffffffff
  end
  return string.format("%08x%08x%08x%08x%08x%08x%08x%08x", h0, h1, h2, h3, h4, h5, h6, h7)
end

-- }============

---The session settings of a process, or nil when it has none.
---@param process table
---@return table|nil {resume, scope, key_field}
function M.config(process)
  local s = type(process.metadata) == "table" and process.metadata.session
  if type(s) ~= "table" then return nil end
  if s.mode ~= nil then
    if s.mode == "off" then return { resume = false, scope = "process" } end
    return { resume = true, scope = s.mode, key_field = s.key_field or "session_key" }
  end
  return { resume = s.resume == true, scope = s.scope or "process", key_field = s.key_field or "session_key" }
end

---The fingerprint of what the model is told before the conversation.
---@return string hex
function M.fingerprint(model, system, tools)
  return M.sha256(assert(json.encode({ model_id = model, system_prompt = system, tool_config = tools })))
end

local Session = {}
Session.__index = Session

---Opens the session of a run; nil when the process keeps none.
---@param db table
---@param process table
---@param run table
---@param opts table {model, system, tools}
---@return table|nil session
function M.open(db, process, run, opts)
  local cfg = M.config(process)
  if not cfg then return nil end
  local s = setmetatable({ db = db, process = process, run = run, model = opts.model, resumed = false,
    step = 0 }, Session)
  local skip
  local key = "default"
  if cfg.scope == "keyed" then
    local v = type(run.payload) == "table" and run.payload[cfg.key_field]
    key = (type(v) == "string" or math.type(v) == "integer") and tostring(v) or ("missing:" .. cfg.key_field)
  elseif cfg.scope ~= "process" then
    skip = "invalid_session_scope:" .. tostring(cfg.scope)
  end
  local label = cfg.scope == "keyed" and "keyed" or "process"
  if not cfg.resume then label = cfg.scope == "keyed" and "keyed-log-only" or "log-only" end
  s.scope, s.key, s.resume_requested = cfg.scope, key, cfg.resume
  s.path = label .. "-" .. M.sha256(key):sub(1, 16)
  local base = "/proc/" .. process.id .. "/_sessions/" .. s.path .. "/"
  s.manifest_key, s.checkpoint_key = base .. "manifest.json", base .. "checkpoint.json"
  s.resume_enabled = cfg.resume and cfg.scope == "process" and skip == nil
  if cfg.resume and cfg.scope == "keyed" then skip = "unsupported_session_scope:keyed" end
  if not cfg.resume then skip = skip or "resume_disabled_for_scope:" .. tostring(cfg.scope) end
  s.fingerprint = M.fingerprint(opts.model, opts.system, opts.tools)
  if s.resume_enabled then
    s.prior, skip = s:load()
  end
  s.skip = skip
  return s
end

-- The checkpoint's messages when it may be used; else nil, the reason.
function Session:load()
  local f = self.db:file_get(self.checkpoint_key)
  if not f then return nil, "missing_checkpoint" end
  local cp = json.decode(f.content)
  if type(cp) ~= "table" then return nil, "invalid_checkpoint_messages" end
  if cp.resumable == false then return nil, "checkpoint_not_resumable" end
  if cp.model_id ~= self.model then return nil, "model_changed" end
  if cp.prompt_fingerprint ~= self.fingerprint then return nil, "prompt_fingerprint_changed" end
  local msgs = cp.messages
  if type(msgs) ~= "table" or not json.is_array(msgs) then return nil, "invalid_checkpoint_messages" end
  if #msgs > M.MAX_MESSAGES then
    return nil, "checkpoint_message_limit_exceeded:" .. #msgs .. ">" .. M.MAX_MESSAGES
  end
  if #f.content > M.MAX_BYTES then
    return nil, "checkpoint_byte_limit_exceeded:" .. #f.content .. ">" .. M.MAX_BYTES
  end
  -- A transcript cut after a tool request has no answers to pair with it.
  local last = msgs[#msgs]
  if last and last.role == "assistant" then
    for _, b in ipairs(last.content or {}) do
      if b.type == "tool_use" then msgs[#msgs] = nil break end
    end
  end
  self.resumed, self.resumed_from = true, cp.source_run_id
  return msgs
end

---The first messages of the run: the resumed transcript, then the user turn.
---@param user_text string
---@return table messages
function Session:messages(user_text)
  local msgs = json.array({})
  for i, m in ipairs(self.prior or {}) do msgs[i] = m end
  local last = msgs[#msgs]
  if last and last.role == "user" then
    -- after tool results: the new text joins that user turn (roles alternate)
    local content = json.array({})
    for i, b in ipairs(last.content or {}) do content[i] = b end
    content[#content + 1] = { type = "text", text = user_text }
    msgs[#msgs] = { role = "user", content = content }
  else
    msgs[#msgs + 1] = { role = "user", content = json.array({ { type = "text", text = user_text } }) }
  end
  return msgs
end

local function write(db, key, value, run_id)
  local text = assert(json.encode(value, { pretty = true }))
  local ok, err = db:file_write(key, text, { source = "executor", run_id = run_id })
  if not ok then error("session: cannot write " .. key .. ": " .. tostring(err), 0) end
  return #text
end

---Saves the transcript after a turn (one file write; only when resume is enabled).
---@param messages table
function Session:checkpoint(messages)
  if not self.resume_enabled then return end
  self.step = self.step + 1
  local cp = { model_id = self.model, prompt_fingerprint = self.fingerprint, messages = messages,
    last_completed_step = self.step, source_run_id = self.run.id, message_count = #messages,
    resumable = true }
  local text = assert(json.encode(cp, { pretty = true }))
  if #messages > M.MAX_MESSAGES or #text > M.MAX_BYTES then
    cp.messages, cp.resumable = json.array({}), false
    cp.resume_disabled_reason = #messages > M.MAX_MESSAGES and "message_limit" or "byte_limit"
  end
  cp.message_bytes = #text
  write(self.db, self.checkpoint_key, cp, self.run.id)
end

---Writes the manifest; returns the run's snapshot (session pointers).
---@param status string the run's final status
---@return table snapshot
function Session:finish(status)
  local snapshot = {
    session_scope = self.scope, session_key = self.key, session_path = self.path,
    manifest_key = self.manifest_key, checkpoint_key = self.resume_enabled and self.checkpoint_key or nil,
    resumed = self.resumed, resumed_from_run_id = self.resumed_from, resume_skipped_reason = self.skip,
    status = status,
  }
  local prev = self.db:file_get(self.manifest_key)
  local created = prev and (json.decode(prev.content) or {}).created_at or core.sys.iso_now()
  write(self.db, self.manifest_key, {
    process_id = self.process.id, session_scope = self.scope, session_key = self.key,
    session_path = self.path, resume_requested = self.resume_requested, resume_enabled = self.resume_enabled,
    checkpoint_key = snapshot.checkpoint_key, latest_run_id = self.run.id, latest_status = status,
    created_at = created, updated_at = core.sys.iso_now(),
  }, self.run.id)
  return snapshot
end

return M
