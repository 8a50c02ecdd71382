-- secrets — named secrets: <cogent dir>/.secrets.json ({"key": value, ...}),
-- then the environment variable COGOS_SECRET_<KEY> (upper case, other
-- characters as _). Scope: keys (glob patterns of the keys you may read).

local core = require "cogos.core"

local function env_name(key)
  return "COGOS_SECRET_" .. key:upper():gsub("[^%w]", "_")
end

local function from_file(dir, key)
  if not dir then return nil end
  local f = io.open(dir .. "/.secrets.json", "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local ok, t = pcall(core.json.decode, text)
  if not ok or type(t) ~= "table" then return nil, ".secrets.json is not a JSON object" end
  return t[key]
end

return {
  name = "secrets",
  description = "Named secrets (API keys and the like). Never print them.",
  methods = {
    get = {
      op = "get", target = 1,
      doc = "get(key) -> {key, value} | nil, err   (value JSON-decoded when it is JSON)",
      fn = function(ctx, key)
        if type(key) ~= "string" or key == "" then return nil, "get: key must be a non-empty string" end
        local v, err = from_file(ctx.cogent_dir, key)
        if err then return nil, err end
        if v == nil then
          local raw = os.getenv(env_name(key))
          if raw then
            local ok, decoded = pcall(core.json.decode, raw)
            v = ok and decoded or raw
          end
        end
        if v == nil then return nil, "no secret '" .. key .. "'" end
        return { key = key, value = v }
      end,
    },
  },
}
