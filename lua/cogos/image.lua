-- cogos.image — boot an image folder into a cogent, as one idempotent upsert.
--
--   images/<name>/init/*.lua   builder scripts, run in name order ("_" prefix skipped)
--   everything else            files under mnt/boot/<relative path> ("apps/" stripped)
--
-- Builders: add_capability(name [, {handler, description, instructions}]),
-- add_process(name, {mode, content, executor, model, priority, metadata,
-- max_duration_ms, max_retries, capabilities = {"type" | {name, type, config}},
-- handlers = {"channel", ...}}), add_channel(name [, {schema}]), add_file(key, content).

local core = require "cogos.core"
local caps = require "cogos.caps"

local M = {}

---Resolves an image name ("cogos") or a path to its folder.
function M.resolve(name)
  local dir = name:find("/") and name or (core.root .. "/images/" .. name)
  local st = core.sys.stat(dir)
  if not st or st.type ~= "dir" then return nil, "unknown image '" .. name .. "' (no folder " .. dir .. ")" end
  if not core.sys.stat(dir .. "/init") then return nil, "image '" .. name .. "' has no init/ folder" end
  return dir
end

local function walk(dir, rel, out)
  local names = core.sys.listdir(dir) or {}
  table.sort(names)
  for _, n in ipairs(names) do
    if n:sub(1, 1) ~= "." then
      local path, r = dir .. "/" .. n, rel == "" and n or (rel .. "/" .. n)
      local st = core.sys.stat(path)
      if st and st.type == "dir" then
        if r ~= "init" then walk(path, r, out) end
      elseif st and st.type == "file" then
        out[#out + 1] = { path = path, rel = r }
      end
    end
  end
  return out
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Runs the init scripts and returns the declared spec.
local function declare(dir)
  local spec = { capabilities = {}, processes = {}, channels = {}, files = {} }
  local env = setmetatable({}, { __index = _G })
  local function need(cond, what, msg)
    if not cond then error(what .. ": " .. msg, 3) end
  end
  function env.add_capability(name, opts)
    need(type(name) == "string", "add_capability", "name must be a string")
    spec.capabilities[#spec.capabilities + 1] = { name = name, opts = opts or {} }
  end
  function env.add_process(name, opts)
    need(type(name) == "string", "add_process", "name must be a string")
    need(opts == nil or type(opts) == "table", "add_process", "options must be a table")
    spec.processes[#spec.processes + 1] = { name = name, opts = opts or {} }
  end
  function env.add_channel(name, opts)
    need(type(name) == "string", "add_channel", "name must be a string")
    spec.channels[#spec.channels + 1] = { name = name, opts = opts or {} }
  end
  function env.add_file(key, content)
    need(type(key) == "string" and type(content) == "string", "add_file", "key and content must be strings")
    spec.files[#spec.files + 1] = { key = key, content = content }
  end
  local scripts = {}
  for _, n in ipairs(core.sys.listdir(dir .. "/init") or {}) do
    if n:match("%.lua$") and n:sub(1, 1) ~= "_" then scripts[#scripts + 1] = n end
  end
  table.sort(scripts)
  for _, n in ipairs(scripts) do
    local chunk, err = loadfile(dir .. "/init/" .. n, "t", env)
    if not chunk then error(err, 0) end
    local ok, rerr = pcall(chunk)
    if not ok then error(tostring(rerr), 0) end
  end
  for _, f in ipairs(walk(dir, "", {})) do
    local key = "mnt/boot/" .. f.rel:gsub("^apps/", "")
    spec.files[#spec.files + 1] = { key = key, content = read(f.path) }
  end
  return spec
end

local function apply_process(db, p)
  local o = p.opts
  local mode = o.mode or "one_shot"
  local existing = db:process_get(p.name)
  local row = assert(db:process_upsert({
    name = p.name, mode = mode, content = o.content or "", executor = o.executor or "llm",
    model = o.model, priority = o.priority or 0, metadata = o.metadata,
    max_duration_ms = o.max_duration_ms, max_retries = o.max_retries,
    -- a reboot keeps what the process is doing; only a new one gets its first state
    status = existing and existing.status or (mode == "daemon" and "waiting" or "runnable"),
  }))
  for _, c in ipairs(o.capabilities or {}) do
    local g = type(c) == "string" and { name = c, type = c } or c
    local ctype = g.type or g.name
    local _, err = db:capability_get(ctype)
    if err then error("add_process " .. p.name .. ": " .. err, 0) end
    assert(db:grant_add(row.id, { capability = ctype, name = g.name or ctype, config = g.config or {} }))
  end
  for _, ch in ipairs(o.handlers or {}) do
    db:channel_create(ch)
    assert(db:handler_add(row.id, ch))
  end
end

---Applies the image at dir in one transaction.
---@return table counts {capabilities, processes, channels, files, files_changed}
function M.apply(db, dir)
  local spec = declare(dir)
  local counts = { capabilities = #spec.capabilities, processes = #spec.processes,
    channels = #spec.channels, files = #spec.files, files_changed = 0 }
  db:begin()
  local ok, err = pcall(function()
    for _, c in ipairs(spec.capabilities) do
      local handler = c.opts.handler or c.name
      local mod, merr = caps.load(handler)
      if not mod then error("add_capability " .. c.name .. ": " .. merr, 0) end
      assert(db:capability_upsert({ name = c.name, handler = handler,
        description = c.opts.description or mod.description or "",
        instructions = c.opts.instructions or mod.instructions or "", enabled = true }))
    end
    for _, f in ipairs(spec.files) do
      local r = assert(db:file_write(f.key, f.content, { source = "image" }))
      if r.changed then counts.files_changed = counts.files_changed + 1 end
    end
    for _, c in ipairs(spec.channels) do db:channel_create(c.name, c.opts) end
    for _, p in ipairs(spec.processes) do apply_process(db, p) end
  end)
  if not ok then
    db:rollback()
    error(err, 0)
  end
  db:commit()
  return counts
end

return M
