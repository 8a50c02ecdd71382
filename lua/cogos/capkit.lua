-- cogos.capkit — helpers shared by capability modules (capabilities/*.lua):
-- file operations over the versioned store, key resolution under a prefix,
-- glob patterns, durations. Every function returns nil, err on bad input.

local core = require "cogos.core"

local M = {}

---A key inside a prefix scope: relative keys get the prefix. A key with "."
---or ".." segments, or an absolute key outside the prefix, is a scope
---violation: raised as "permission denied: <grant>.<method>: ..." (as C does).
---@param ctx table the calling fn's ctx (its grant's config is the scope)
---@param what string the method, for the message
---@param key string
---@return string|nil key, string|nil err (a bad argument)
function M.under(ctx, what, key)
  if type(key) ~= "string" or key == "" then return nil, what .. ": key must be a non-empty string" end
  local config = ctx.grant.config
  local prefix = config.prefix
  local ok, why = true, nil
  if prefix and key:sub(1, #prefix) ~= prefix then
    -- an absolute key names a place, it is not relative to the prefix
    if key:sub(1, 1) == "/" then ok, why = false, "'" .. key .. "' is outside prefix '" .. prefix .. "'" end
    key = prefix .. key
  end
  if ok then ok, why = core.sandbox.allows(config, "prefix", key) end
  if not ok then error("permission denied: " .. ctx.grant.name .. "." .. what .. ": " .. why, 0) end
  return key
end

local function split_lines(content)
  local lines = {}
  for line in (content .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  if content:sub(-1) == "\n" then lines[#lines] = nil end
  return lines
end
M.split_lines = split_lines

local function int_or(v, default, what)
  if v == nil then return default end
  local n = math.tointeger(v)
  if not n then return nil, what .. " must be an integer" end
  return n
end

---Reads key; opts.offset (0-based line, negative from the end) and opts.limit
---slice the lines.
---@return table|nil {id, key, version, content, read_only, source, total_lines}, string|nil err
function M.read(db, key, opts)
  opts = opts or {}
  if type(opts) ~= "table" then return nil, "read: options must be a table {offset, limit}" end
  local f, err = db:file_get(key)
  if not f then return nil, err end
  local content = f.content or ""
  local offset, oerr = int_or(opts.offset, nil, "offset")
  if oerr then return nil, oerr end
  local limit, lerr = int_or(opts.limit, nil, "limit")
  if lerr then return nil, lerr end
  local total
  if offset or limit then
    local lines = split_lines(content)
    total = #lines
    local first = offset or 0
    if first < 0 then first = math.max(0, #lines + first) end
    local last = limit and math.min(#lines, first + limit) or #lines
    content = table.concat(lines, "\n", first + 1, last)
  else -- count without splitting: reads of whole files are the common case
    total = select(2, content:gsub("\n", "\n")) + ((content ~= "" and content:sub(-1) ~= "\n") and 1 or 0)
  end
  return { id = f.id, key = f.key, version = f.version, content = content, read_only = f.read_only,
    source = f.source, total_lines = total }
end

---Writes content to key (a new version when it changed).
---@return table|nil {id, key, version, created, changed}, string|nil err
function M.write(ctx, key, content, source)
  if type(content) ~= "string" then return nil, "write: content must be a string" end
  local r, err = ctx.db:file_write(key, content, { source = source or "agent", run_id = ctx.run and ctx.run.id })
  if not r then return nil, err end
  return { id = r.id, key = r.key, version = r.version, created = r.created, changed = r.changed }
end

---Appends text to key (creating it). The store keeps versions immutable, so an
---append is a new version holding the old content followed by text.
function M.append(ctx, key, text, source)
  if type(text) ~= "string" then return nil, "append: text must be a string" end
  local f = ctx.db:file_get(key)
  return M.write(ctx, key, (f and f.content or "") .. text, source)
end

---Replaces old by new in key: old must occur exactly once unless replace_all.
function M.edit(ctx, key, old, new, replace_all, source)
  if type(old) ~= "string" or old == "" then return nil, "edit: old must be a non-empty string" end
  if type(new) ~= "string" then return nil, "edit: new must be a string" end
  local f, err = ctx.db:file_get(key)
  if not f then return nil, err end
  local content, count, at = f.content or "", 0, 1
  while true do
    local s, e = content:find(old, at, true)
    if not s then break end
    count, at = count + 1, e + 1
  end
  if count == 0 then return nil, "edit: text not found in '" .. key .. "'" end
  if count > 1 and not replace_all then
    return nil, "edit: text occurs " .. count .. " times in '" .. key .. "'; pass replace_all = true or more context"
  end
  local out = content:gsub(old:gsub("%W", "%%%0"), (new:gsub("%%", "%%%%")))
  local r, werr = M.write(ctx, key, out, source)
  if not r then return nil, werr end
  r.replacements = count
  return r
end

---The first (head) or last (tail) n lines of key.
function M.lines(db, key, n, from_end)
  n = n == nil and 20 or math.tointeger(n)
  if not n or n < 0 then return nil, "n must be an integer >= 0" end
  local f, err = db:file_get(key)
  if not f then return nil, err end
  local lines = split_lines(f.content or "")
  local first, last = 1, math.min(n, #lines)
  if from_end then first, last = math.max(1, #lines - n + 1), #lines end
  return table.concat(lines, "\n", first, last)
end

local function gmatch(g, gi, k, ki)
  while gi <= #g do
    if g:sub(gi, gi + 1) == "**" then
      local rest = gi + 2
      if g:sub(rest, rest) == "/" then -- zero or more whole segments
        if gmatch(g, rest + 1, k, ki) then return true end
        for j = ki, #k do
          if k:sub(j, j) == "/" and gmatch(g, rest + 1, k, j + 1) then return true end
        end
        return false
      end
      for j = ki, #k + 1 do
        if gmatch(g, rest, k, j) then return true end
      end
      return false
    end
    local c = g:sub(gi, gi)
    if c == "*" then
      for j = ki, #k + 1 do
        if gmatch(g, gi + 1, k, j) then return true end
        if k:sub(j, j) == "/" then return false end
      end
      return false
    elseif c == "?" then
      if ki > #k or k:sub(ki, ki) == "/" then return false end
    elseif k:sub(ki, ki) ~= c then
      return false
    end
    gi, ki = gi + 1, ki + 1
  end
  return ki > #k
end

---Whether key matches a path glob: * one segment, ** any depth (a following
---/ is consumed), ? one character but /, anchored.
---@param glob string
---@param key string
---@return boolean
function M.glob_match(glob, key)
  return gmatch(glob, 1, key, 1)
end

local UNITS = { s = 1, m = 60, h = 3600, d = 86400 }

---An ISO timestamp (store format) for "30s" / "5m" / "1h" / "2d" ago, or an ISO date/time given as is.
---@return string|nil ts, string|nil err
function M.since(v)
  if v == nil then return nil end
  if type(v) ~= "string" then return nil, "since must be a string like '30s', '5m', '1h', '2d' or an ISO time" end
  local n, unit = v:match("^(%d+)([smhd])$")
  if n then
    return os.date("!%Y-%m-%dT%H:%M:%S", os.time() - tonumber(n) * UNITS[unit]) .. ".000Z"
  end
  if v:match("^%d%d%d%d%-%d%d%-%d%d") then return v end
  return nil, "since must be a string like '30s', '5m', '1h', '2d' or an ISO time, got '" .. v .. "'"
end

---Matches s against a glob with * (any run) and ? (one character).
function M.name_match(glob, s)
  local p = "^" .. glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return s:find(p) ~= nil
end

return M
