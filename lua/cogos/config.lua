-- cogos.config — where cogtainers and cogents live, and which one a command means.
--
-- $COGOS_HOME (default ~/.cogos)/cogtainers.json holds
--   { "cogtainers": { "<name>": { "type": "local", "data_dir": "...",
--                                 "llm": { "provider", "model", "api_key_env", "base_url" } } } }
-- A local cogent is the folder <data_dir>/<cogent>/ with cogos.db, node.lock,
-- node.sock and logs/. Selection: $COGTAINER/$COGENT, then ./.env (written by
-- `select`), then the only one there is.

local core = require "cogos.core"
local json = core.json

local M = {}

---@return string
function M.home()
  local h = os.getenv("COGOS_HOME")
  if h and h ~= "" then return h end
  local home = os.getenv("HOME")
  if not home or home == "" then error({ cli = "HOME is not set; set COGOS_HOME" }) end
  return home .. "/.cogos"
end

local function config_path() return M.home() .. "/cogtainers.json" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Writes through a temporary file and a rename, so a crash never leaves half a file.
local function write_file(path, content)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(content)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then return nil, rerr end
  return true
end
M.write_file = write_file
M.read_file = read_file

---@return table config
function M.load()
  local s = read_file(config_path())
  if not s then return { cogtainers = {} } end
  local cfg, err = json.decode(s)
  if type(cfg) ~= "table" then
    error({ cli = "cannot read " .. config_path() .. ": " .. tostring(err) })
  end
  cfg.cogtainers = cfg.cogtainers or {}
  return cfg
end

function M.save(cfg)
  assert(core.sys.mkdir_p(M.home()))
  local ok, err = write_file(config_path(), assert(json.encode(cfg, { pretty = true })) .. "\n")
  if not ok then error({ cli = "cannot write " .. config_path() .. ": " .. tostring(err) }) end
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end
M.sorted_keys = sorted_keys

-- ./.env as a table of KEY=VALUE lines.
local function read_env()
  local env = {}
  local s = read_file(".env")
  if s then
    for line in s:gmatch("[^\n]+") do
      local k, v = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
      if k then env[k] = v:gsub('^"(.*)"$', "%1") end
    end
  end
  return env
end

function M.write_env(values)
  local lines, seen = {}, {}
  local s = read_file(".env") or ""
  for line in s:gmatch("[^\n]+") do
    local k = line:match("^%s*([%w_]+)%s*=")
    if k and values[k] ~= nil then
      lines[#lines + 1] = k .. "=" .. values[k]
      seen[k] = true
    else
      lines[#lines + 1] = line
    end
  end
  for _, k in ipairs(sorted_keys(values)) do
    if not seen[k] then lines[#lines + 1] = k .. "=" .. values[k] end
  end
  local ok, err = write_file(".env", table.concat(lines, "\n") .. "\n")
  if not ok then error({ cli = "cannot write .env: " .. tostring(err) }) end
end

-- Resolves a name: explicit, then env var, then .env, then the only candidate.
local function resolve(kind, var, explicit, names)
  if explicit then return explicit end
  local v = os.getenv(var)
  if v and v ~= "" then return v end
  v = read_env()[var]
  if v and v ~= "" then return v end
  if #names == 1 then return names[1] end
  if #names == 0 then
    error({ cli = "no " .. kind .. " exists; create one with `" .. kind .. " create NAME`" })
  end
  error({ cli = "several " .. kind .. "s exist (" .. table.concat(names, ", ") ..
    "); choose one with $" .. var .. " or `" .. kind .. " select NAME`" })
end

---@param name string|nil explicit cogtainer name
---@return string name, table entry
function M.cogtainer(name)
  local cfg = M.load()
  local n = resolve("cogtainer", "COGTAINER", name, sorted_keys(cfg.cogtainers))
  local entry = cfg.cogtainers[n]
  if not entry then error({ cli = "unknown cogtainer '" .. n .. "'" }) end
  return n, entry
end

---@return string[] cogent names of a cogtainer entry
function M.cogents(entry)
  local names = {}
  for _, n in ipairs(core.sys.listdir(entry.data_dir) or {}) do
    if core.sys.stat(entry.data_dir .. "/" .. n .. "/cogos.db") then names[#names + 1] = n end
  end
  table.sort(names)
  return names
end

-- The selected cogent: a table with every path a command needs.
---@return table target {cogtainer, entry, cogent, dir, db_path, lock_path, sock_path, log_path}
function M.target(cogtainer_name, cogent_name)
  local tname, entry = M.cogtainer(cogtainer_name)
  local names = M.cogents(entry)
  local cname = resolve("cogent", "COGENT", cogent_name, names)
  local dir = entry.data_dir .. "/" .. cname
  if not core.sys.stat(dir .. "/cogos.db") then
    error({ cli = "unknown cogent '" .. cname .. "' in cogtainer '" .. tname .. "'" })
  end
  return M.paths(tname, entry, cname)
end

function M.paths(tname, entry, cname)
  local dir = entry.data_dir .. "/" .. cname
  return {
    cogtainer = tname, entry = entry, cogent = cname, dir = dir,
    db_path = dir .. "/cogos.db", lock_path = dir .. "/node.lock",
    sock_path = dir .. "/node.sock", log_path = dir .. "/logs/node.log",
  }
end

-- The pid of the node running this cogent, or nil.
function M.node_pid(t)
  local fd, _, holder = core.sys.lock(t.lock_path)
  if fd then
    core.sys.unlock(fd)
    return nil
  end
  return holder
end

return M
