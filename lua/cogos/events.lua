-- cogos.events — a run's canonical event stream, durable in the run_event table.
--
-- Types: status {status}, token {text}, tool_call {id, name, input},
-- tool_result {id, name, output, is_error}, usage {turn, input_tokens,
-- output_tokens, cost_usd}, error {message, status}, interrupt {reason},
-- done {status, tokens_in, tokens_out, cost_usd, duration_ms, error}.
-- `done` is always the last event of a run. Token deltas are batched (about
-- FLUSH_CHARS characters or FLUSH_MS milliseconds per row) so a streamed
-- answer is a handful of rows, not thousands. Readers poll db:events (every
-- POLL_MS in follow()); a run's events become visible at its step boundaries.

local core = require "cogos.core"

local json = core.json
local now = core.sys.monotonic_ms

local M = {}

M.FLUSH_CHARS = 200
M.FLUSH_MS = 50
M.POLL_MS = 50
M.TERMINAL = "done"

local Writer = {}
Writer.__index = Writer

---A writer for one run's events. Events are buffered and written by flush(),
---all in one transaction (the executor flushes at each step boundary, inside
---the transaction of that step's other writes, so a turn costs one commit).
---@param db table
---@param run_id string
---@return table writer
function M.writer(db, run_id)
  return setmetatable({ db = db, run_id = run_id, buf = {}, text = {}, ntext = 0, since = 0 }, Writer)
end

-- The gathered text becomes one token event in the buffer.
function Writer:close_text()
  if self.ntext == 0 then return end
  self.buf[#self.buf + 1] = { "token", { text = table.concat(self.text) } }
  self.text, self.ntext = {}, 0
end

---Queues one event (after the text gathered so far, so the order holds).
---@param type string
---@param data table|nil
function Writer:emit(type, data)
  self:close_text()
  self.buf[#self.buf + 1] = { type, data }
end

---Adds a streamed text delta; written once enough has gathered (FLUSH_CHARS or
---FLUSH_MS), so a streamed answer is a few rows and `run tail` sees it live.
---@param text string
function Writer:token(text)
  if text == nil or text == "" then return end
  local parts = self.text
  parts[#parts + 1] = text
  self.ntext = self.ntext + #text
  local t = now()
  if #parts == 1 then self.since = t end
  if self.ntext >= M.FLUSH_CHARS or t - self.since >= M.FLUSH_MS then self:flush() end
end

---Writes every queued event, in one transaction.
function Writer:flush()
  self:close_text()
  local buf = self.buf
  if #buf == 0 then return end
  self.buf = {}
  local db, id = self.db, self.run_id
  assert(db:begin())
  for _, e in ipairs(buf) do
    local ok, err = db:event_add(id, e[1], e[2])
    if not ok then
      db:rollback()
      error("events: " .. tostring(err), 0)
    end
  end
  assert(db:commit())
end

local function short(v, max)
  local s = type(v) == "string" and v or (json.encode(v) or tostring(v))
  s = s:gsub("\n", "\\n")
  if #s > max then s = s:sub(1, max) .. "..." end
  return s
end

---One line for an event row: "seq  time  type  summary".
---@param ev table {seq, type, data, created_at}
---@return string
function M.format(ev)
  local d = type(ev.data) == "table" and ev.data or {}
  local what
  if ev.type == "token" then what = short(d.text or "", 200)
  elseif ev.type == "status" then what = tostring(d.status)
  elseif ev.type == "tool_call" then what = tostring(d.name) .. " " .. short(d.input or {}, 200)
  elseif ev.type == "tool_result" then
    what = tostring(d.name) .. (d.is_error and " (error) " or " ") .. short(d.output or "", 200)
  elseif ev.type == "usage" then
    what = string.format("turn %s: %s in, %s out, $%.6f", tostring(d.turn), tostring(d.input_tokens),
      tostring(d.output_tokens), tonumber(d.cost_usd) or 0)
  elseif ev.type == "error" then what = short(d.message or "", 300)
  elseif ev.type == "interrupt" then what = tostring(d.reason)
  elseif ev.type == "done" then
    what = string.format("%s in %s ms (%s in, %s out, $%.6f)%s", tostring(d.status), tostring(d.duration_ms),
      tostring(d.tokens_in), tostring(d.tokens_out), tonumber(d.cost_usd) or 0,
      d.error and (": " .. short(d.error, 200)) or "")
  else what = short(d, 200) end
  return string.format("%4d  %s  %-11s %s", ev.seq, ev.created_at or "", ev.type, what)
end

---Follows a run's events until its `done` event (or, for a run that ended
---without one, its final status). Calls on_event(row) for each event in order.
---@param db table
---@param run_id string
---@param on_event fun(ev: table)
---@param opts table|nil {poll_ms = 50, timeout_ms = nil}
---@return string|nil status the run's final status, or nil, err
function M.follow(db, run_id, on_event, opts)
  opts = opts or {}
  local run, err = db:run_get(run_id)
  if not run then return nil, err end
  local after, deadline = 0, opts.timeout_ms and (now() + opts.timeout_ms)
  while true do
    local rows, rerr = db:events(run_id, { after = after, limit = 1000 })
    if not rows then return nil, rerr end
    for _, ev in ipairs(rows) do
      after = ev.seq
      on_event(ev)
      if ev.type == M.TERMINAL then return type(ev.data) == "table" and ev.data.status or "completed" end
    end
    if #rows == 0 then
      -- No done event coming: the run ended some other way (recovered, or older than events).
      run = db:run_get(run_id)
      if run and run.status ~= "running" then
        local more = db:events(run_id, { after = after })
        if not more or #more == 0 then return run.status end
      elseif deadline and now() > deadline then
        return nil, "timed out following run " .. run_id
      else
        core.sys.sleep_ms(opts.poll_ms or M.POLL_MS)
      end
    end
  end
end

return M
