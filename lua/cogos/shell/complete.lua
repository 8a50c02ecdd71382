-- cogos.shell.complete — Tab completion: command names, then per command file
-- and directory paths, process, channel and capability names. Lookups are
-- cached for two seconds so that repeated Tabs stay instant.

local core = require "cogos.core"
local paths = require "cogos.shell.paths"

local M = {}

M.CACHE_MS = 2000

local function cached(sh, key, fn)
  sh.complete_cache = sh.complete_cache or {}
  local now = core.sys.monotonic_ms()
  local c = sh.complete_cache[key]
  if c and now - c.at < M.CACHE_MS then return c.v end
  local v = fn()
  sh.complete_cache[key] = { at = now, v = v }
  return v
end

local function names(rows)
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = r.name end
  table.sort(out)
  return out
end

local function processes(sh)
  return cached(sh, "processes", function() return names(sh.db:process_list({})) end)
end

local function channels(sh)
  return cached(sh, "channels", function() return names(sh.db:channel_list()) end)
end

local function capabilities(sh)
  return cached(sh, "capabilities", function() return names(sh.db:capability_list()) end)
end

local function commands(sh)
  local out = {}
  for name in pairs(sh.commands) do out[#out + 1] = name end
  table.sort(out)
  return out
end

-- Paths for `word`: its directory part kept as typed, then the children.
local function path_candidates(sh, word, dirs_only)
  local dirpart = word:match("^(.*/)") or ""
  local key = paths.resolve(sh.cwd, dirpart)
  local dirs, files = table.unpack(cached(sh, "dir:" .. key, function()
    return { paths.children(sh.db, key) }
  end))
  local out = {}
  for _, d in ipairs(dirs) do out[#out + 1] = dirpart .. d .. "/" end
  if not dirs_only then
    for _, f in ipairs(files) do out[#out + 1] = dirpart .. f end
  end
  return out
end

local SUBS = { ch = { "log", "ls", "send" }, cap = { "disable", "enable", "ls" }, run = { "show" } }

---Candidates for the word being completed.
---@param sh table the session
---@param word string the text from the last blank to the cursor
---@param before string the line up to the cursor
---@return string[] candidates (the terminal keeps those that start with word)
function M.candidates(sh, word, before)
  local words = {}
  for w in before:gmatch("%S+") do words[#words + 1] = w end
  if word ~= "" then words[#words] = nil end -- the word being completed
  if #words == 0 then
    if word:sub(1, 1) == "=" then return {} end
    return commands(sh)
  end
  local cmd = sh:command(words[1])
  if not cmd then return {} end
  local nth, prev = #words, words[#words]
  local kind = cmd.complete
  if SUBS[words[1]] and nth == 1 then return SUBS[words[1]] end
  if kind == "command" then return nth == 1 and commands(sh) or {}
  elseif kind == "path" then return path_candidates(sh, word, false)
  elseif kind == "dir" then return path_candidates(sh, word, true)
  elseif kind == "process" then return processes(sh)
  elseif kind == "ch" then
    if nth == 2 and (words[2] == "send" or words[2] == "log") then return channels(sh) end
  elseif kind == "cap" then
    if nth == 2 and (words[2] == "enable" or words[2] == "disable") then return capabilities(sh) end
  elseif kind == "runs" then
    if prev == "--process" then return processes(sh) end
    return { "--limit", "--process" }
  elseif kind == "llm" then
    if prev == "-f" then return path_candidates(sh, word, false) end
  end
  return {}
end

return M
