-- cogos.cost — what an LLM turn costs: a per-model price table in US dollars
-- per million tokens. A model id matches the longest pattern it contains
-- (provider prefixes and date suffixes don't matter); an unknown model costs
-- 0 and says so through M.price's second result. Local and offline runs
-- (`scripted`, `lua`) cost 0.

local M = {}

---Prices per million tokens: { pattern (plain substring), input, output }.
M.PRICES = {
  { "scripted", 0, 0 },
  { "lua", 0, 0 },
  { "claude-opus-4-5", 5, 25 },
  { "claude-opus-4-1", 15, 75 },
  { "claude-opus-4", 15, 75 },
  { "claude-sonnet-4", 3, 15 },
  { "claude-3-7-sonnet", 3, 15 },
  { "claude-3-5-sonnet", 3, 15 },
  { "claude-haiku-4-5", 1, 5 },
  { "claude-3-5-haiku", 0.8, 4 },
  { "claude-3-haiku", 0.25, 1.25 },
  { "gpt-4o-mini", 0.15, 0.6 },
  { "gpt-4o", 2.5, 10 },
  { "gpt-4.1-nano", 0.1, 0.4 },
  { "gpt-4.1-mini", 0.4, 1.6 },
  { "gpt-4.1", 2, 8 },
  { "gpt-5-nano", 0.05, 0.4 },
  { "gpt-5-mini", 0.25, 2 },
  { "gpt-5", 1.25, 10 },
  { "o4-mini", 1.1, 4.4 },
  { "o3", 2, 8 },
}

local cache = {}

---The prices of a model per million tokens.
---@param model string|nil
---@return number input, number output, boolean known
function M.price(model)
  if type(model) ~= "string" then return 0, 0, false end
  local hit = cache[model]
  if hit then return hit[1], hit[2], hit[3] end
  local best
  for _, p in ipairs(M.PRICES) do
    if model:find(p[1], 1, true) and (best == nil or #p[1] > #best[1]) then best = p end
  end
  hit = best and { best[2], best[3], true } or { 0, 0, false }
  cache[model] = hit
  return hit[1], hit[2], hit[3]
end

---The cost in US dollars of tokens_in + tokens_out on model.
---@param model string|nil
---@param tokens_in integer
---@param tokens_out integer
---@return number usd
function M.estimate(model, tokens_in, tokens_out)
  local pin, pout = M.price(model)
  return ((tokens_in or 0) * pin + (tokens_out or 0) * pout) / 1e6
end

return M
