-- cogos.image — boot an image folder into a cogent, as one idempotent upsert.
--
--   init/*.lua           builder scripts, run in name order ("_" prefix skipped)
--   <dir>/main.lua|.md   a cog: its process content; an optional <dir>/cog.lua returns
--                        its config; sub-folders that are cogs are its coglets
--   everything else      files under mnt/boot/<relative path> ("apps/" stripped)
--
-- Builders: add_capability(name [, {handler, description, instructions}]),
-- add_process(name, {mode, content, executor, model, priority, metadata, tty, parent,
--   max_duration_ms, max_retries, retry_backoff_ms, resources, required_tags, idle_timeout_ms,
--   capabilities = {"type" | {name, type, config}}, handlers = {"channel" | {channel, predicate}}}),
-- add_channel(name [, {schema, channel_type}]), add_file(key, content),
-- add_schema(name, definition), add_cron(expression, {channel, payload, enabled}),
-- add_resource(name, {type = "pool"|"consumable", capacity, period_ms}), array(t),
-- read_file(path) (a file of the image, e.g. a process's Lua source).
-- The cog manifest is written to mnt/boot/_boot/cog_manifests.json; the image's
-- init process spawns the cogs from it.

local core = require "cogos.core"
local caps = require "cogos.caps"

local json = core.json

local M = {}

M.MANIFEST_KEY = "mnt/boot/_boot/cog_manifests.json"

---Resolves an image name to its folder: a path, ./images/<name> (where
---`cogos snapshot` writes), then the installed images.
function M.resolve(name)
  local dir = name:find("/") and name or (core.root .. "/images/" .. name)
  if not name:find("/") and core.sys.stat("images/" .. name .. "/init") then dir = "images/" .. name end
  local st = core.sys.stat(dir)
  if not st or st.type ~= "dir" then return nil, "unknown image '" .. name .. "' (no folder " .. dir .. ")" end
  if not core.sys.stat(dir .. "/init") then return nil, "image '" .. name .. "' has no init/ folder" end
  return dir
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sorted_dir(dir)
  local names = core.sys.listdir(dir) or {}
  table.sort(names)
  return names
end

local function is_dir(path)
  local st = core.sys.stat(path)
  return st and st.type == "dir"
end

-- A list (a sequence and nothing else) of non-empty strings.
local function is_tag_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n ~= #v then return false end
  for _, tag in ipairs(v) do
    if type(tag) ~= "string" or tag == "" then return false end
  end
  return true
end

local function cog_entry(dir)
  for _, main in ipairs({ "main.lua", "main.md" }) do
    if core.sys.stat(dir .. "/" .. main) then return main end
  end
end

local function load_cog_config(path, name)
  local chunk, err = loadfile(path, "t", setmetatable({ array = json.array }, { __index = _G }))
  if not chunk then error(err, 0) end
  local ok, cfg = pcall(chunk)
  if not ok then error(tostring(cfg), 0) end
  if type(cfg) ~= "table" then error(path .. ": cog.lua must return the cog's config table", 0) end
  cfg.name = cfg.name or name
  return cfg
end

-- Walks the image: plain files, and cogs with their coglets (a cog is
-- registered before its folder is walked, so its coglets find it).
local function walk(dir, rel, spec)
  for _, n in ipairs(sorted_dir(dir)) do
    local path, r = dir .. "/" .. n, rel == "" and n or (rel .. "/" .. n)
    if n:sub(1, 1) == "." or r == "init" then -- luacheck: ignore 542
    elseif is_dir(path) then
      local entry = cog_entry(path)
      if entry then
        local cfg = core.sys.stat(path .. "/cog.lua") and load_cog_config(path .. "/cog.lua", n) or { name = n }
        local cog = { name = cfg.name, config = cfg, entrypoint = entry,
          content_key = "mnt/boot/" .. r:gsub("^apps/", "") .. "/" .. entry, coglets = {} }
        local parent = spec.cog_dirs[dir]
        if parent then parent.coglets[cog.name] = cog else spec.cogs[#spec.cogs + 1] = cog end
        spec.cog_dirs[path] = cog
      end
      walk(path, r, spec)
    else
      spec.files[#spec.files + 1] = { key = "mnt/boot/" .. r:gsub("^apps/", ""), content = read(path) }
    end
  end
end

-- Runs the init scripts and walks the folder; returns the declared spec.
local function declare(dir)
  local spec = { capabilities = {}, processes = {}, channels = {}, files = {}, schemas = {}, cron = {},
    resources = {}, cogs = {}, cog_dirs = {} }
  local env = setmetatable({ array = json.array, null = json.null }, { __index = _G })
  ---The content of a file of this image (a path relative to its folder).
  function env.read_file(rel)
    if type(rel) ~= "string" or rel:find("%.%.") then error("read_file: bad path " .. tostring(rel), 2) end
    local f = io.open(dir .. "/" .. rel, "rb")
    if not f then error("read_file: no file " .. rel .. " in the image", 2) end
    local s = f:read("a")
    f:close()
    return s
  end
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
    local o = opts or {}
    need(o.required_tags == nil or is_tag_list(o.required_tags), "add_process " .. name,
      "required_tags must be a list of non-empty strings")
    need(o.idle_timeout_ms == nil or (math.type(o.idle_timeout_ms) == "integer" and o.idle_timeout_ms > 0),
      "add_process " .. name, "idle_timeout_ms must be a positive integer (ms)")
    spec.processes[#spec.processes + 1] = { name = name, opts = o }
  end
  function env.add_channel(name, opts)
    need(type(name) == "string", "add_channel", "name must be a string")
    spec.channels[#spec.channels + 1] = { name = name, opts = opts or {} }
  end
  function env.add_file(key, content)
    need(type(key) == "string" and type(content) == "string", "add_file", "key and content must be strings")
    spec.files[#spec.files + 1] = { key = key, content = content }
  end
  function env.add_schema(name, definition)
    need(type(name) == "string" and type(definition) == "table", "add_schema", "needs a name and a definition table")
    spec.schemas[#spec.schemas + 1] = { name = name, definition = definition }
  end
  function env.add_cron(expression, opts)
    need(type(expression) == "string", "add_cron", "expression must be a string")
    need(type(opts) == "table" and type(opts.channel) == "string", "add_cron", "needs {channel = name}")
    spec.cron[#spec.cron + 1] = { expression = expression, opts = opts }
  end
  function env.add_resource(name, opts)
    need(type(name) == "string" and type(opts) == "table", "add_resource", "needs a name and {type, capacity}")
    spec.resources[#spec.resources + 1] = { name = name, opts = opts }
  end
  local scripts = {}
  for _, n in ipairs(sorted_dir(dir .. "/init")) do
    if n:match("%.lua$") and n:sub(1, 1) ~= "_" then scripts[#scripts + 1] = n end
  end
  for _, n in ipairs(scripts) do
    local chunk, err = loadfile(dir .. "/init/" .. n, "t", env)
    if not chunk then error(err, 0) end
    local ok, rerr = pcall(chunk)
    if not ok then error(tostring(rerr), 0) end
  end
  walk(dir, "", spec)
  spec.cog_dirs = nil
  return spec
end

local function need_method(db, name, builder)
  if type(db[name]) ~= "function" then
    error(builder .. ": this store has no " .. name .. "()", 0)
  end
end

local function apply_process(db, p)
  local o = p.opts
  local mode = o.mode or "one_shot"
  local existing = db:process_get(p.name)
  local grants = {}
  for _, c in ipairs(o.capabilities or {}) do
    local g = type(c) == "string" and { name = c, type = c } or c
    local ctype = g.type or g.name
    local _, err = db:capability_get(ctype)
    if err then error("add_process " .. p.name .. ": " .. err, 0) end
    grants[#grants + 1] = { capability = ctype, name = g.name or ctype, config = g.config }
  end
  local row = assert(db:process_upsert({
    name = p.name, mode = mode, content = o.content or "", executor = o.executor or "llm",
    model = o.model, priority = o.priority or 0, metadata = o.metadata, tty = o.tty,
    max_duration_ms = o.max_duration_ms, max_retries = o.max_retries, retry_backoff_ms = o.retry_backoff_ms,
    resources = o.resources, required_tags = o.required_tags, idle_timeout_ms = o.idle_timeout_ms,
    parent_process = o.parent,
    -- a reboot keeps what the process is doing; only a new one gets its first state
    status = existing and existing.status or (mode == "daemon" and "waiting" or "runnable"),
    grants = grants,
  }))
  for _, h in ipairs(o.handlers or {}) do
    local ch, opts = h, nil
    if type(h) == "table" then ch, opts = h.channel, { predicate = h.predicate } end
    if not ch:find("[*?]") then db:channel_create(ch) end
    local ok, err = db:handler_add(row.id, ch, opts)
    if not ok then error("add_process " .. p.name .. ": handler " .. ch .. ": " .. tostring(err), 0) end
  end
end

local function apply_cron(db, c)
  need_method(db, "cron_add", "add_cron")
  for _, r in ipairs(db:cron_list()) do
    if r.expression == c.expression and r.channel == c.opts.channel then return end
  end
  local ok, err = db:cron_add({ expression = c.expression, channel = c.opts.channel,
    payload = c.opts.payload or {}, enabled = c.opts.enabled ~= false })
  if not ok then error("add_cron " .. c.expression .. ": " .. tostring(err), 0) end
end

---Applies the image at dir in one transaction.
---@return table counts
function M.apply(db, dir)
  local spec = declare(dir)
  local counts = { capabilities = #spec.capabilities, processes = #spec.processes, channels = #spec.channels,
    files = #spec.files, files_changed = 0, schemas = #spec.schemas, cron = #spec.cron,
    resources = #spec.resources, cogs = #spec.cogs }
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
    for _, r in ipairs(spec.resources) do
      need_method(db, "resource_upsert", "add_resource")
      local rok, rerr = db:resource_upsert({ name = r.name, resource_type = r.opts.type or "pool",
        capacity = r.opts.capacity, period_ms = r.opts.period_ms })
      if not rok then error("add_resource " .. r.name .. ": " .. tostring(rerr), 0) end
    end
    for _, c in ipairs(spec.cron) do apply_cron(db, c) end
    if #spec.cogs > 0 then
      spec.files[#spec.files + 1] = { key = M.MANIFEST_KEY,
        content = assert(json.encode(json.array(spec.cogs), { pretty = true })) }
    end
    for _, f in ipairs(spec.files) do
      local r = assert(db:file_write(f.key, f.content, { source = "image" }))
      if r.changed then counts.files_changed = counts.files_changed + 1 end
    end
    for _, s in ipairs(spec.schemas) do
      need_method(db, "schema_upsert", "add_schema")
      local sok, serr = db:schema_upsert(s.name, s.definition)
      if not sok then error("add_schema " .. s.name .. ": " .. tostring(serr), 0) end
    end
    for _, c in ipairs(spec.channels) do
      local cok, cerr = db:channel_create(c.name, c.opts)
      if not cok then error("add_channel " .. c.name .. ": " .. tostring(cerr), 0) end
    end
    for _, p in ipairs(spec.processes) do apply_process(db, p) end
  end)
  if not ok then
    db:rollback()
    error(err, 0)
  end
  db:commit()
  -- the image's own init process (if it has one) wakes on this after every boot
  if db:channel_get("system:boot") then
    assert(db:send("system:boot", { image = dir:match("([^/]+)/*$"), files_changed = counts.files_changed }))
  end
  return counts
end

return M
