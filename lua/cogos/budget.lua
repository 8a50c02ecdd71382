-- cogos.budget — the hard stop on spending: before each LLM turn the executor
-- checks the budgets that apply to the process (its own, scope
-- "process:<id>", and the cogent's, scope "cogent"); one at or over its token
-- or cost limit fails the run with "budget exceeded: ...". Limits and
-- spending live in the store (db:budget_set, db:budget_status,
-- db:budget_charge; see core/store_obs.c); spending is charged after every turn.
-- Whether any budget applies is read when a run starts: a budget set while a
-- run is in flight applies from that process's next run.

local M = {}

local function describe(b)
  local who = b.scope == "cogent" and "cogent" or "process"
  return who .. " budget (" .. b.period .. ")"
end

---The first budget a spend breaks, as an error text; nil when within all.
---@param budgets table[] rows of db:budget_status
---@return string|nil err, table|nil budget
function M.exceeded(budgets)
  for _, b in ipairs(budgets or {}) do
    if b.max_tokens and b.tokens >= b.max_tokens then
      return string.format("budget exceeded: %s spent %d of %d tokens", describe(b), b.tokens, b.max_tokens), b
    end
    if b.max_cost_usd and b.cost_usd >= b.max_cost_usd then
      return string.format("budget exceeded: %s spent $%.4f of $%.4f", describe(b), b.cost_usd, b.max_cost_usd), b
    end
  end
  return nil
end

---Checks a process's budgets now.
---@param db table
---@param process_id string
---@return string|nil err, table|nil budget, table budgets
function M.check(db, process_id)
  local budgets = assert(db:budget_status(process_id))
  local err, b = M.exceeded(budgets)
  return err, b, budgets
end

return M
