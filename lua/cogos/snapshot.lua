-- cogos.snapshot — write a cogent's configuration as a bootable image that
-- round-trips exactly: capabilities, resources, cron, schemas, channels,
-- processes with their grants (names, types, scopes) and handlers, and every
-- file under its own key. Runs, messages and statuses are not configuration.

local core = require "cogos.core"

local json = core.json

local M = {}

-- {============ Lua literals

local function long_string(s)
  -- the first closing bracket must be ours, also when s itself ends in "]"
  local level, eq = 0, ""
  while (s .. "]" .. eq .. "]"):find("]" .. eq .. "]", 1, true) <= #s do
    level = level + 1
    eq = string.rep("=", level)
  end
  -- the newline after the opening bracket is skipped by the reader
  return "[" .. eq .. "[\n" .. s .. "]" .. eq .. "]"
end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") and not ({
    ["and"] = 1, ["break"] = 1, ["do"] = 1, ["else"] = 1, ["elseif"] = 1, ["end"] = 1, ["false"] = 1,
    ["for"] = 1, ["function"] = 1, ["goto"] = 1, ["if"] = 1, ["in"] = 1, ["local"] = 1, ["nil"] = 1,
    ["not"] = 1, ["or"] = 1, ["repeat"] = 1, ["return"] = 1, ["then"] = 1, ["true"] = 1,
    ["until"] = 1, ["while"] = 1 })[k]
end

---A Lua literal for v: sorted keys, arrays kept as arrays (array() when empty).
function M.literal(v, indent)
  indent = indent or ""
  local t = type(v)
  if v == json.null or v == nil then return "null" end
  if t == "string" then
    if v:find("\n") and not v:find("\r") and #v > 60 then return long_string(v) end
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  end
  if t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v == v and v ~= math.huge and v ~= -math.huge then
      return string.format("%.1f", v)
    end
    return string.format("%.17g", v)
  end
  if t == "boolean" then return tostring(v) end
  assert(t == "table", "cannot write a " .. t)
  local inner = indent .. "  "
  if json.is_array(v) or (#v > 0 and next(v, #v) == nil) then
    if #v == 0 then return "array()" end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = inner .. M.literal(x, inner) end
    local body = "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
    return json.is_array(v) and ("array(" .. body .. ")") or body
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  if #keys == 0 then return "{}" end
  local parts = {}
  for _, k in ipairs(keys) do
    local key = is_identifier(k) and k or ("[" .. M.literal(k) .. "]")
    parts[#parts + 1] = inner .. key .. " = " .. M.literal(v[k], inner)
  end
  return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
end

-- }============

local PROCESS_FIELDS = { "mode", "content", "executor", "model", "priority", "metadata", "tty",
  "max_duration_ms", "max_retries", "retry_backoff_ms", "resources", "required_tags", "idle_timeout_ms" }

local function empty(v)
  return v == nil or v == json.null or (type(v) == "table" and next(v) == nil and not json.is_array(v))
end

local function list_or_empty(db, method, ...)
  if type(db[method]) ~= "function" then return {} end
  return db[method](db, ...) or {}
end

-- The builder calls for the cogent behind db, one list of lines per init file.
local function scripts(db)
  local out = {}
  local caps = {}
  for _, c in ipairs(db:capability_list()) do
    caps[#caps + 1] = "add_capability(" .. M.literal(c.name) .. ", " .. M.literal({
      handler = c.handler, description = c.description, instructions = c.instructions }) .. ")"
  end
  out["10_capabilities.lua"] = caps
  local res = {}
  for _, r in ipairs(list_or_empty(db, "resource_list")) do
    res[#res + 1] = "add_resource(" .. M.literal(r.name) .. ", " .. M.literal({
      type = r.resource_type, capacity = r.capacity, period_ms = r.period_ms }) .. ")"
  end
  out["20_resources.lua"] = res
  local cron = {}
  for _, c in ipairs(list_or_empty(db, "cron_list")) do
    cron[#cron + 1] = "add_cron(" .. M.literal(c.expression) .. ", " .. M.literal({
      channel = c.channel, payload = c.payload, enabled = c.enabled }) .. ")"
  end
  out["30_cron.lua"] = cron
  local schemas = {}
  for _, s in ipairs(list_or_empty(db, "schema_list")) do
    schemas[#schemas + 1] = "add_schema(" .. M.literal(s.name) .. ", " .. M.literal(s.definition) .. ")"
  end
  out["40_schemas.lua"] = schemas
  local channels = {}
  for _, c in ipairs(db:channel_list()) do
    -- per-process and spawn channels are made by the system as processes run
    if c.channel_type ~= "implicit" and c.channel_type ~= "spawn" then
      local opts = { channel_type = c.channel_type }
      if not empty(c.schema) then opts.schema = c.schema end
      channels[#channels + 1] = "add_channel(" .. M.literal(c.name) .. ", " .. M.literal(opts) .. ")"
    end
  end
  out["50_channels.lua"] = channels
  local procs = {}
  local plist = db:process_list({})
  local by_id, depth = {}, {}
  for _, p in ipairs(plist) do by_id[p.id] = p end
  local function depth_of(p, seen)
    if depth[p.id] then return depth[p.id] end
    local parent = p.parent_process and by_id[p.parent_process]
    if not parent or seen[p.id] then return 0 end
    seen[p.id] = true
    depth[p.id] = depth_of(parent, seen) + 1
    return depth[p.id]
  end
  -- parents before their children, so a boot can link them by name
  table.sort(plist, function(a, b)
    local da, db_ = depth_of(a, {}), depth_of(b, {})
    if da ~= db_ then return da < db_ end
    return a.name < b.name
  end)
  for _, p in ipairs(plist) do
    local opts = {}
    local parent = p.parent_process and by_id[p.parent_process]
    if parent then opts.parent = parent.name end
    for _, f in ipairs(PROCESS_FIELDS) do
      if not empty(p[f]) then opts[f] = p[f] end
    end
    local grants = {}
    for _, g in ipairs(db:grants(p.id)) do
      grants[#grants + 1] = { name = g.name, type = g.capability, config = g.config }
    end
    table.sort(grants, function(a, b) return a.name < b.name end)
    if #grants > 0 then opts.capabilities = grants end
    local handlers = {}
    for _, h in ipairs(db:handler_list({ process = p.id })) do
      -- the store gives every process its stdin handler; spawn channels are
      -- named by process ids and made again when the parent spawns
      if h.channel ~= "io:stdin:" .. p.name and not h.channel:match("^spawn:") then
        handlers[#handlers + 1] = (h.predicate and h.predicate ~= json.null)
          and { channel = h.channel, predicate = h.predicate } or h.channel
      end
    end
    table.sort(handlers, function(a, b)
      return (type(a) == "table" and a.channel or a) < (type(b) == "table" and b.channel or b)
    end)
    if #handlers > 0 then opts.handlers = handlers end
    procs[#procs + 1] = "add_process(" .. M.literal(p.name) .. ", " .. M.literal(opts) .. ")"
  end
  out["60_processes.lua"] = procs
  local files = {}
  for _, f in ipairs(db:file_list({ limit = 1 << 40 })) do
    local row = assert(db:file_get(f.key))
    files[#files + 1] = "add_file(" .. M.literal(f.key) .. ", " .. M.literal(row.content) .. ")"
  end
  out["70_files.lua"] = files
  return out
end

---Writes the snapshot image into folder dir, which must not exist.
---@return table|nil counts, string|nil err
function M.write(db, dir)
  if core.sys.stat(dir) then return nil, "refusing to overwrite " .. dir end
  local ok, err = core.sys.mkdir_p(dir .. "/init")
  if not ok then return nil, err end
  local counts = {}
  for name, lines in pairs(scripts(db)) do
    local f, ferr = io.open(dir .. "/init/" .. name, "wb")
    if not f then return nil, ferr end
    f:write("-- written by `cogos snapshot`\n", table.concat(lines, "\n"), #lines > 0 and "\n" or "")
    f:close()
    counts[name:match("^%d+_(.-)%.lua$")] = #lines
  end
  return counts
end

return M
