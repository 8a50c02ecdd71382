-- cogos.prompt — the system prompt: process content with @{key} references
-- expanded where a read grant covers them, then the help of every grant.

local core = require "cogos.core"
local caps = require "cogos.caps"

local M = {}

local REF = "@{([^{}\r\n]+)}"

local function listed(list, v)
  if list == nil then return true end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function under_prefix(config, key)
  return (core.sandbox.allows(config, "prefix", key))
end

---True when one of the process's grants may read key: a files grant whose
---prefix covers it (ops including read), an fs_dir grant whose prefix covers
---it (ops including get), or a file grant on exactly that key (ops including
---read). Prefixes are checked by the scope algebra, so "a/../b" never matches "a/".
---@param grants table[] {type, config}
---@param key string
---@return boolean
function M.readable(grants, key)
  for _, g in ipairs(grants) do
    local c = g.config or {}
    if g.type == "files" then
      if listed(c.ops, "read") and under_prefix(c, key) then return true end
    elseif g.type == "fs_dir" then
      if listed(c.ops, "get") and under_prefix(c, key) then return true end
    elseif g.type == "file" then
      if listed(c.ops, "read") and c.key == key then return true end
    end
  end
  return false
end

---Expands references in text. Readable keys become "--- key ---\n<content>"
---(recursively); a key already being expanded is marked circular, a missing
---one not found; a reference no grant covers stays as written.
function M.expand(db, grants, text, path)
  path = path or {}
  return (text:gsub(REF, function(raw)
    local key = raw:match("^%s*(.-)%s*$")
    if not M.readable(grants, key) then return nil end
    if path[key] then return "[circular include: " .. key .. "]" end
    local f = db:file_get(key)
    if not f then return "[include not found: " .. key .. "]" end
    path[key] = true
    local body = M.expand(db, grants, f.content, path)
    path[key] = nil
    return "--- " .. key .. " ---\n" .. body
  end))
end

local DEFAULT = "You are a cogos process. Follow your instructions and use your capabilities."

---@return string system prompt
function M.system(db, process, grants)
  local body = M.expand(db, grants, process.content or "")
  if body:match("^%s*$") then body = DEFAULT end
  if #grants == 0 then return body end
  local help = {}
  for i, g in ipairs(grants) do help[i] = caps.help(g.name, g.module) end
  return body .. "\n\n--- Capabilities ---\n\n" .. table.concat(help, "\n\n")
end

return M
