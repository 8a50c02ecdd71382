-- cogos.caps — capability types: drop-in Lua modules, one file per type.
--
-- A module in capabilities/ (or a folder of $COGOS_CAPABILITIES_PATH, colon
-- separated, searched first) returns
--   { name =, description =, methods = { m = { op =, target =, doc =, fn = function(ctx, ...) } } }
-- fn runs in the node with ctx = { db, process, run, grant = {name, type, config} }
-- and returns results or nil, err. Scope checks happen in C before fn is called.

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

---Help text for a grant: its description and one line per method.
function M.help(grant_name, mod)
  local lines = { grant_name .. ": " .. (mod.description or mod.name) }
  for _, m in ipairs(sorted_methods(mod)) do
    lines[#lines + 1] = "  " .. grant_name .. "." .. (mod.methods[m].doc or (m .. "(...)"))
  end
  return table.concat(lines, "\n")
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
    local methods = {}
    for name, m in pairs(g.module.methods) do
      methods[name] = { op = m.op, target = m.target, doc = m.doc }
    end
    out[i] = { name = g.name, type = g.type, description = g.description, scope = g.config,
      methods = methods }
  end
  return out
end

return M
