-- init: runs after every boot (a message on system:boot). Creates the boot
-- channels, then spawns every cog of the manifest that is not a template,
-- detached, with the grants its cog.lua asks for. Spawning an existing name
-- updates it in place, so a reboot changes nothing that did not change.

local BOOT_CHANNELS = { "supervisor:help", "system:alerts", "digest:tick", "fanout:jobs", "fanout:done" }

for _, name in ipairs(BOOT_CHANNELS) do
  assert(channels.create(name))
end

local manifest = assert(files.read("mnt/boot/_boot/cog_manifests.json"))
local cogs = assert(json.decode(manifest.content))

local function grants_of(list)
  local out = {}
  for _, c in ipairs(list or {}) do
    if type(c) == "string" then
      out[c] = true
    else
      out[c.name] = { type = c.type or c.name, scope = c.config }
    end
  end
  return out
end

local spawned = 0
for _, cog in ipairs(cogs) do
  local cfg = cog.config
  if not cfg.template then
    for _, ch in ipairs(cfg.handlers or {}) do assert(channels.create(ch)) end
    local lua_cog = cog.entrypoint == "main.lua"
    local content = lua_cog and assert(files.read(cog.content_key)).content or ("@{" .. cog.content_key .. "}")
    local h, err = procs.spawn({
      name = cog.name,
      content = content,
      mode = cfg.mode or "daemon",
      executor = cfg.executor or (lua_cog and "lua" or "llm"),
      model = cfg.model,
      priority = cfg.priority or 0,
      capabilities = grants_of(cfg.capabilities),
      subscribe = cfg.handlers,
      detached = true,
    })
    if not h then error("spawning cog " .. cog.name .. ": " .. tostring(err)) end
    spawned = spawned + 1
  end
end
print(string.format("init: %d cogs spawned from the manifest", spawned))
