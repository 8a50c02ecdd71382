-- cogos.caps — capability types: drop-in Lua modules, one file per type.
--
-- A module in capabilities/ (or a folder of $COGOS_CAPABILITIES_PATH, colon
-- separated, searched first) returns
--   { name =, description =, methods = { m = { op =, target =, field =, doc =, fn = function(ctx, ...) } } }
-- fn runs in the node with ctx = { db, process, run, cogent_dir, grant = {name, type, config},
-- grants, ... } (config: the grant's effective scope; grants: every grant the run holds, its
-- authority, fixed when it started) and returns results or nil, err. The
-- scope algebra of core/cap.h checks op and target (argument `target`, or its
-- field `field`) in C before fn is called; other keys are the module's to apply
-- (core.sandbox.allows checks one value the same way).
-- A fn may return M.grant(ctx, type, scope) — a sub-grant: the sandbox receives
-- a new grant of that type (fs_dir.get returns a file handle). Grants passed
-- as arguments arrive as descriptors (M.is_grant) carrying their real type and scope.

local core = require "cogos.core"

local M = {}

local function dirs()
  local list = {}
  local extra = os.getenv("COGOS_CAPABILITIES_PATH")
  if extra then
    for d in extra:gmatch("[^:]+") do list[#list + 1] = d end
  end
  list[#list + 1] = core.root .. "/capabilities"
  return list
end

local cache = {}

local function validate(mod, path)
  if type(mod) ~= "table" or type(mod.methods) ~= "table" then
    return nil, path .. ": a capability module returns a table with `methods`"
  end
  for name, m in pairs(mod.methods) do
    if type(m) ~= "table" or type(m.fn) ~= "function" or type(m.op) ~= "string" then
      return nil, path .. ": method '" .. tostring(name) .. "' needs op (string) and fn (function)"
    end
    if name == "scope" then return nil, path .. ": 'scope' is reserved (every grant has it)" end
    if m.field ~= nil and type(m.field) ~= "string" then
      return nil, path .. ": method '" .. name .. "': field must be a string"
    end
  end
  return mod
end

---Loads the module named `name` (a capability's handler).
---@return table|nil module, string|nil err
function M.load(name)
  if cache[name] then return cache[name] end
  if not name:match("^[%w_]+$") then return nil, "invalid capability handler '" .. name .. "'" end
  local tried = {}
  for _, d in ipairs(dirs()) do
    local path = d .. "/" .. name .. ".lua"
    if core.sys.stat(path) then
      local chunk, err = loadfile(path, "t")
      if not chunk then return nil, err end
      local ok, mod = pcall(chunk)
      if not ok then return nil, tostring(mod) end
      local v, verr = validate(mod, path)
      if not v then return nil, verr end
      mod.name = mod.name or name
      cache[name] = mod
      return mod
    end
    tried[#tried + 1] = d
  end
  return nil, "no capability module '" .. name .. "' in " .. table.concat(tried, ", ")
end

local function sorted_methods(mod)
  local names = {}
  for k in pairs(mod.methods) do names[#names + 1] = k end
  table.sort(names)
  return names
end

---Help text for a grant: its description and one line per method (its doc).
---@param grant_name string
---@param mod table a capability module
---@return string
function M.help(grant_name, mod)
  local lines = { grant_name .. ": " .. (mod.description or mod.name) }
  for _, m in ipairs(sorted_methods(mod)) do
    lines[#lines + 1] = "  " .. grant_name .. "." .. (mod.methods[m].doc or (m .. "(...)"))
  end
  lines[#lines + 1] = "  " .. grant_name .. ":scope{...} -> a copy of this grant with a narrower scope"
    .. " (never wider), to pass on"
  return table.concat(lines, "\n")
end

local function method_specs(mod)
  local methods = {}
  for name, m in pairs(mod.methods) do
    methods[name] = { op = m.op, target = m.target, field = m.field, doc = m.doc }
  end
  return methods
end

local specs = setmetatable({}, { __mode = "k" }) -- module -> its method specs, made once

---A sub-grant to return from a capability fn: the sandbox gets a new grant of
---capability type `type_name` limited to `scope`.
---@param _ctx table the calling fn's ctx (for symmetry with other helpers)
---@param type_name string a capability module name (say "file")
---@param scope table the new grant's scope
---@param name string|nil its name in messages (default: the type)
---@return table|nil descriptor, string|nil err
function M.grant(_ctx, type_name, scope, name)
  local mod, err = M.load(type_name)
  if not mod then return nil, err end
  specs[mod] = specs[mod] or method_specs(mod)
  return setmetatable({ name = name or type_name, type = type_name, scope = scope or {},
    description = mod.description, methods = specs[mod] }, core.sandbox.GRANT)
end

---True when v is a grant descriptor (a grant passed in from a sandbox, or made by M.grant).
function M.is_grant(v)
  return type(v) == "table" and getmetatable(v) == core.sandbox.GRANT
end

---The dispatch function of core.sandbox.new for these grants: calls the
---module's fn with ctx = a fresh table with grant = {name, type, config} and
---grants (the list given here) that reads every other field from base.
---@param grants table[] from M.grants
---@param base table {db, process, run, ...} (see cogos.executor for the fields)
---@return function dispatch(grant, method, ...)
function M.dispatcher(grants, base)
  local by_name = {}
  for _, g in ipairs(grants) do
    by_name[g.name] = { module = g.module, info = { name = g.name, type = g.type, config = g.config } }
  end
  local inherit = { __index = base } -- ctx reads base's fields; made once, cheap per call
  local handlers = {}
  return function(grant, method, ...)
    local mod, info
    if type(grant) == "string" then
      local g = by_name[grant]
      if not g then error("no grant '" .. grant .. "'", 0) end
      mod, info = g.module, g.info
    else
      -- a capability type's module is its handler (add_capability may name another);
      -- looked up once per type for the life of this dispatcher (one run)
      local handler = handlers[grant.type]
      if not handler then
        local row = base.db and base.db:capability_get(grant.type)
        handler = row and row.handler or grant.type
        handlers[grant.type] = handler
      end
      local err
      mod, err = M.load(handler)
      if not mod then error(err, 0) end
      info = { name = grant.name, type = grant.type, config = grant.scope or {} }
    end
    local m = mod.methods[method]
    if not m then error(info.name .. " has no method '" .. method .. "'", 0) end
    return m.fn(setmetatable({ grant = info, grants = grants }, inherit), ...)
  end
end

---The process's enabled grants with their modules.
---@return table[] grants {name, type, config, module, description}
function M.grants(db, process)
  local list = {}
  for _, g in ipairs(db:grants(process.id)) do
    local cap = db:capability_get(g.capability)
    if cap and cap.enabled ~= false then
      local mod, err = M.load(cap.handler or cap.name)
      if not mod then error("grant '" .. g.name .. "': " .. err, 0) end
      list[#list + 1] = { name = g.name, type = cap.name, config = g.config or {}, module = mod,
        description = cap.description or mod.description }
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

---The `grants` argument of core.sandbox.new for these grants.
function M.sandbox_grants(grants)
  local out = {}
  for i, g in ipairs(grants) do
    out[i] = { name = g.name, type = g.type, description = g.description, scope = g.config,
      methods = method_specs(g.module) }
  end
  return out
end

return M
