-- cogos.providers.scripted — offline replay of a script; no network.
--
-- config.script = { turns = { turn, ... } }, turn = { content = {blocks},
-- stop_reason = optional, usage = optional }. The turn replayed is chosen by the
-- conversation's position (assistant messages so far + 1), not by a counter, so
-- any number of runs can share one provider and each follows its own sequence.
-- A turn's "error" field is meant for the fake HTTP server (tests/e2e/fake_llm.js)
-- and is ignored here: there is no transport to fail.
local core = require("cogos.core")
local common = require("cogos.providers.common")

local json = core.json
local array = common.array

local M = {}

M.NAME = "scripted"
M.END_TEXT = "(script ended)"

--- The 1-based position of the next assistant turn in a request.
---@param request table internal request
---@return integer
function M.position(request)
  local n = 0
  for _, m in ipairs(request.messages or {}) do
    if m.role == "assistant" then n = n + 1 end
  end
  return n + 1
end

--- Rough token count of a text: one token per four characters.
---@param s string
---@return integer
function M.estimate_tokens(s)
  return math.ceil(#s / 4)
end

local function encoded_len(v)
  local s = json.encode(v)
  return type(s) == "string" and #s or 0
end

-- Copies a JSON-like value so callers may mutate the response; keeps the array mark.
local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return setmetatable(t, getmetatable(v))
end

--- The response for a position of a script (pure).
---@param script table {turns = {...}} or a list of turns
---@param request table internal request (for the usage estimate)
---@param position integer
---@return table response
function M.reply(script, request, position)
  local turns = script.turns or script
  local turn = turns[position]
  local content, stop, usage = array(), "end_turn", nil
  if turn == nil then
    content[1] = { type = "text", text = M.END_TEXT }
  else
    local has_tool = false
    for i, b in ipairs(turn.content or {}) do
      local c = copy(b)
      if c.type == "tool_use" then
        has_tool = true
        if c.id == nil then c.id = string.format("toolu_scripted_%d_%d", position, i) end
        if c.input == nil then c.input = {} end
      end
      content[#content + 1] = c
    end
    stop = turn.stop_reason or (has_tool and "tool_use" or "end_turn")
    usage = turn.usage and copy(turn.usage)
  end
  if usage == nil then
    local chars = #(type(request.system) == "string" and request.system or "")
      + encoded_len(request.messages or array())
    usage = {
      input_tokens = math.ceil(chars / 4),
      output_tokens = math.ceil(encoded_len(content) / 4),
    }
  end
  return { content = content, stop_reason = stop, usage = usage, model = request.model or "scripted" }
end

local Provider = {}
Provider.__index = Provider

--- Creates a provider that replays config.script.
---@param config table {script = decoded script table, model}
---@return table|nil provider, string|nil err
function M.new(config)
  config = config or {}
  if type(config.script) ~= "table" then return nil, M.NAME .. ": config.script is required" end
  local turns = config.script.turns or config.script
  if type(turns) ~= "table" then return nil, M.NAME .. ": script.turns must be a list" end
  return setmetatable({ config = config }, Provider)
end

--- Replays the turn for the request's position.
---@param request table internal request
---@param opts table|nil {on_text = fun(text)} called once per text block
---@return table response
function Provider:complete(request, opts)
  local req = request
  if req.model == nil and self.config.model then
    req = setmetatable({ model = self.config.model }, { __index = request })
  end
  local res = M.reply(self.config.script, req, M.position(request))
  local on_text = opts and opts.on_text
  if on_text then
    for _, b in ipairs(res.content) do
      if b.type == "text" then on_text(b.text) end
    end
  end
  return res
end

return M
