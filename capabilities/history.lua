-- history — the runs of processes: their status, tokens, cost, errors.
-- Scope: ops (process, query), process_ids (the processes whose runs you may see).

local core = require "cogos.core"
local kit = require "cogos.capkit"

local WINDOW = 5000 -- newest runs searched by query() and failed()

local function visible(ctx, process_id)
  return core.sandbox.allows(ctx.grant.config, "process_ids", process_id)
end

local function summary(run, name)
  return { id = run.id, process_id = run.process, process_name = name, status = run.status,
    duration_ms = run.duration_ms, tokens_in = run.tokens_in, tokens_out = run.tokens_out, cost_usd = run.cost_usd,
    error = run.error, result = run.result, model_version = run.model_version, created_at = run.created_at,
    completed_at = run.completed_at }
end

local function limit_of(v, default)
  if v == nil then return default end
  local n = math.tointeger(v)
  if not n or n < 1 then return nil, "limit must be an integer >= 1" end
  return math.min(n, 1000)
end

-- Runs newest first matching filter(run, name), up to limit.
local function search(ctx, opts, filter)
  local limit, lerr = limit_of(opts.limit, 50)
  if not limit then return nil, lerr end
  local since, serr = kit.since(opts.since)
  if serr then return nil, serr end
  local names, out = {}, {}
  for _, r in ipairs(ctx.db:run_list({ limit = WINDOW })) do
    if #out >= limit then break end
    if since and (r.created_at or "") < since then break end
    if visible(ctx, r.process) then
      if names[r.process] == nil then
        local p = ctx.db:process_get(r.process)
        names[r.process] = p and p.name or false
      end
      local name = names[r.process] or nil
      if filter(r, name) then out[#out + 1] = summary(r, name) end
    end
  end
  return out
end

local function opts_table(what, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then return nil, what .. ": options must be a table" end
  return opts
end

return {
  name = "history",
  description = "Past runs of processes: status, duration, tokens, cost, errors.",
  methods = {
    process = {
      op = "process", doc = "process(name_or_id [, limit=10]) -> {run summary, ...} newest first",
      fn = function(ctx, name, limit)
        if type(name) ~= "string" then return nil, "process: name must be a string" end
        local p, err = ctx.db:process_get(name)
        if not p then return nil, err end
        if not visible(ctx, p.id) then
          error("permission denied: " .. ctx.grant.name .. ".process: '" .. name .. "' is outside process_ids", 0)
        end
        local n, lerr = limit_of(limit, 10)
        if not n then return nil, lerr end
        local out = {}
        for i, r in ipairs(ctx.db:run_list({ process = p.id, limit = n })) do out[i] = summary(r, p.name) end
        return out
      end,
    },
    query = {
      op = "query",
      doc = "query{status=, process_name= (glob * ?), since= ('30s','5m','1h','2d' or ISO), limit=50}"
        .. " -> {{id, process_id, process_name, status, duration_ms, tokens_in, tokens_out, cost_usd, error,"
        .. " result, model_version, created_at, completed_at}, ...}",
      fn = function(ctx, opts)
        local o, err = opts_table("query", opts)
        if not o then return nil, err end
        if o.status ~= nil and type(o.status) ~= "string" then return nil, "query: status must be a string" end
        if o.process_name ~= nil and type(o.process_name) ~= "string" then
          return nil, "query: process_name must be a string"
        end
        return search(ctx, o, function(r, name)
          if o.status and r.status ~= o.status then return false end
          if o.process_name and not (name and kit.name_match(o.process_name, name)) then return false end
          return true
        end)
      end,
    },
    failed = {
      op = "query", doc = "failed{since=, limit=20} -> the failed and timed-out runs, newest first",
      fn = function(ctx, opts)
        local o, err = opts_table("failed", opts)
        if not o then return nil, err end
        o = { since = o.since, limit = o.limit or 20 }
        return search(ctx, o, function(r) return r.status == "failed" or r.status == "timeout" end)
      end,
    },
  },
}
