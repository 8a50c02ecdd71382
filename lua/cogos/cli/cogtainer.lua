-- cogos.cli.cogtainer — `cogtainer create|list|status|select|destroy`.

local core = require "cogos.core"
local config = require "cogos.config"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"

local PROVIDERS = { "scripted", "anthropic", "openai", "bedrock" }
local KEY_ENV = { anthropic = "ANTHROPIC_API_KEY", openai = "OPENAI_API_KEY" }

local function check_name(kind, name)
  if not name:match("^[%w][%w_.-]*$") then
    args.fail("invalid " .. kind .. " name '" .. name .. "' (letters, digits, _ . -)")
  end
end

-- The provider when none is named: a configured key wins, else offline replay.
local function default_provider()
  for _, p in ipairs({ "anthropic", "openai" }) do
    local v = os.getenv(KEY_ENV[p])
    if v and v ~= "" then return p end
  end
  return "scripted"
end

local function summary(name, entry)
  local cogents = {}
  for _, c in ipairs(config.cogents(entry)) do
    local pid = config.node_pid(config.paths(name, entry, c))
    cogents[#cogents + 1] = { name = c, running = pid ~= nil, pid = pid }
  end
  return {
    name = name, type = entry.type, data_dir = entry.data_dir, llm = entry.llm, cogents = cogents,
    node_tags = entry.node_tags,
  }
end

local commands = {}

commands.create = { help = "create a cogtainer", fn = function(argv, i, usage_prefix)
  local usage = usage_prefix .. " NAME --type local [--llm-provider P] [--llm-model M]"
    .. " [--llm-api-key-env VAR] [--llm-base-url URL] [--llm-region R] [--llm-fallback P[:MODEL]]..."
    .. " [--data-dir DIR] [--node-tag TAG]..."
  local o, pos = args.parse(argv, i, {
    usage = usage, min = 1, max = 1,
    flags = { type = "string", ["llm-provider"] = "string", ["llm-model"] = "string",
      ["llm-api-key-env"] = "string", ["llm-base-url"] = "string", ["data-dir"] = "string",
      ["llm-region"] = "string", ["llm-fallback"] = "list", ["node-tag"] = "list", json = "bool" },
    choices = { type = { "local" }, ["llm-provider"] = PROVIDERS },
  })
  local name = pos[1]
  check_name("cogtainer", name)
  if not o.type then args.usage_error("--type is required", usage) end
  local cfg = config.load()
  if cfg.cogtainers[name] then args.fail("cogtainer '" .. name .. "' already exists") end
  local provider = o["llm-provider"] or default_provider()
  local entry = {
    type = o.type,
    data_dir = o["data-dir"] or (config.home() .. "/cogtainers/" .. name),
    llm = { provider = provider, model = o["llm-model"],
      api_key_env = o["llm-api-key-env"] or KEY_ENV[provider], base_url = o["llm-base-url"],
      region = o["llm-region"] },
  }
  -- --llm-fallback PROVIDER[:MODEL], in order; keys and endpoints from the provider's usual variables.
  for _, f in ipairs(o["llm-fallback"] or {}) do
    local p, model = f:match("^([^:]+):?(.*)$")
    local known = false
    for _, c in ipairs(PROVIDERS) do known = known or c == p end
    if not known then args.usage_error("--llm-fallback: unknown provider '" .. tostring(p) .. "'", usage) end
    entry.llm.fallback = entry.llm.fallback or {}
    table.insert(entry.llm.fallback, { provider = p, model = model ~= "" and model or nil, api_key_env = KEY_ENV[p] })
  end
  -- the tags its nodes carry: a process with required_tags runs only where all are
  for _, tag in ipairs(o["node-tag"] or {}) do
    if tag == "" or tag:find(",", 1, true) then
      args.usage_error("--node-tag needs a non-empty tag without commas, got '" .. tag .. "'", usage)
    end
    entry.node_tags = entry.node_tags or {}
    table.insert(entry.node_tags, tag)
  end
  local ok, err = core.sys.mkdir_p(entry.data_dir)
  if not ok then args.fail(err) end
  cfg.cogtainers[name] = entry
  config.save(cfg)
  if o.json then return out.json(summary(name, entry)) end
  print(string.format("created cogtainer %s (%s, provider %s) at %s", name, entry.type, provider,
    entry.data_dir))
end }

commands.list = { help = "list cogtainers", fn = function(argv, i, usage_prefix)
  local o = args.parse(argv, i, { usage = usage_prefix .. " [--json]", max = 0, flags = { json = "bool" } })
  local cfg = config.load()
  local rows = {}
  for _, name in ipairs(config.sorted_keys(cfg.cogtainers)) do
    rows[#rows + 1] = summary(name, cfg.cogtainers[name])
    rows[#rows].provider = cfg.cogtainers[name].llm and cfg.cogtainers[name].llm.provider
    rows[#rows].cogent_count = #rows[#rows].cogents
  end
  if o.json then return out.json(setmetatable(rows, core.json.array_mt)) end
  out.table(rows, { "name", "type", "provider", { "cogent_count", "cogents" }, "data_dir" })
end }

commands.status = { help = "show one cogtainer", fn = function(argv, i, usage_prefix)
  local o, pos = args.parse(argv, i, { usage = usage_prefix .. " [NAME] [--json]", max = 1,
    flags = { json = "bool" } })
  local name, entry = config.cogtainer(pos[1])
  local s = summary(name, entry)
  if o.json then return out.json(s) end
  out.record({ name = name, type = entry.type, data_dir = entry.data_dir,
    provider = entry.llm and entry.llm.provider, model = entry.llm and entry.llm.model },
    { "name", "type", "data_dir", "provider", "model" })
  for _, c in ipairs(s.cogents) do
    print(string.format("cogent %s: %s", c.name, c.running and ("running (pid " .. c.pid .. ")") or "stopped"))
  end
end }

commands.select = { help = "remember a cogtainer in ./.env", fn = function(argv, i, usage_prefix)
  local _, pos = args.parse(argv, i, { usage = usage_prefix .. " [NAME]", max = 1 })
  local name = config.cogtainer(pos[1])
  config.write_env({ COGTAINER = name })
  print("selected cogtainer " .. name .. " (in ./.env)")
end }

commands.destroy = { help = "delete a cogtainer and its cogents", fn = function(argv, i, usage_prefix)
  local _, pos = args.parse(argv, i, { usage = usage_prefix .. " NAME", min = 1, max = 1 })
  local cfg = config.load()
  local entry = cfg.cogtainers[pos[1]]
  if not entry then args.fail("unknown cogtainer '" .. pos[1] .. "'") end
  for _, c in ipairs(config.cogents(entry)) do
    local pid = config.node_pid(config.paths(pos[1], entry, c))
    if pid then args.fail("cogent '" .. c .. "' is running (pid " .. pid .. "); stop it first") end
  end
  local ok, err = core.sys.rm_rf(entry.data_dir)
  if not ok then args.fail(err) end
  cfg.cogtainers[pos[1]] = nil
  config.save(cfg)
  print("destroyed cogtainer " .. pos[1])
end }

return function(argv, first, prog)
  return args.subcommand(prog, argv, first, commands)
end
