-- cogos.llm — which provider, model, key and endpoint a process's run uses.
-- Keys come from the environment variable the cogtainer names; the endpoint
-- from --llm-base-url, else ANTHROPIC_BASE_URL / OPENAI_BASE_URL.

local json = require("cogos.core").json

local M = {}

local BASE_URL_ENV = { anthropic = "ANTHROPIC_BASE_URL", openai = "OPENAI_BASE_URL" }
local DEFAULT_MODEL = { anthropic = "claude-sonnet-4-5", openai = "gpt-4o-mini", scripted = "scripted" }

local function script_for(db, process, llm)
  local key = (process.metadata and process.metadata.script) or llm.script
    or ("mnt/boot/scripts/" .. process.name .. ".json")
  local f = db:file_get(key)
  if not f then
    return nil, "scripted provider: no script file '" .. key .. "' (set the process's metadata.script)"
  end
  local script, err = json.decode(f.content)
  if type(script) ~= "table" then return nil, "scripted provider: bad script '" .. key .. "': " .. tostring(err) end
  return script
end

---@param llm table the cogtainer's llm settings {provider, model, api_key_env, base_url, script}
---@return table|nil provider, string model_or_err
function M.provider(db, process, llm)
  local name = llm.provider or "scripted"
  local ok, mod = pcall(require, "cogos.providers." .. name)
  if not ok or type(mod) ~= "table" then return nil, "unknown LLM provider '" .. name .. "'" end
  local cfg = { model = process.model or llm.model or DEFAULT_MODEL[name] }
  if name == "scripted" then
    local script, err = script_for(db, process, llm)
    if not script then return nil, err end
    cfg.script = script
  else
    local var = llm.api_key_env
    cfg.api_key = var and os.getenv(var)
    if not cfg.api_key or cfg.api_key == "" then
      return nil, name .. " provider: no API key (set $" .. tostring(var) .. ")"
    end
    local env = BASE_URL_ENV[name] and os.getenv(BASE_URL_ENV[name])
    cfg.base_url = llm.base_url or (env ~= "" and env or nil)
  end
  return mod.new(cfg), cfg.model
end

return M
