-- cogos.cli.common — what the `cogos` command groups share: the selected
-- cogent's database, waking its node, and a few output helpers.

local core = require "cogos.core"
local config = require "cogos.config"
local args = require "cogos.cli.args"

local json = core.json

local M = {}

---Opens the selected cogent's database.
---@return table db, table target
function M.open()
  local t = config.target()
  local db, err = core.store.open(t.db_path)
  if not db then args.fail(err) end
  db:migrate()
  return db, t
end

---Tells a running node to look for work now; no node is fine (it looks at start).
function M.poke(t)
  core.loop.notify(t.sock_path, "wake")
end

---Returns v, or fails the command with err when v is nil.
function M.ok_or_fail(v, err)
  if v == nil then args.fail(err) end
  return v, err
end

function M.array(t) return setmetatable(t, json.array_mt) end

---Adds process_name to rows that carry a process id, for people and scripts.
function M.with_process_names(db, rows)
  local names = {}
  for _, r in ipairs(rows) do
    if r.process and names[r.process] == nil then
      local p = db:process_get(r.process)
      names[r.process] = p and p.name or false
    end
    r.process_name = names[r.process] or nil
  end
  return rows
end

---Decodes text that must be a JSON object, or fails naming `what`.
function M.parse_json_object(text, what)
  local v, err = json.decode(text)
  if v == nil then args.fail("malformed JSON " .. what .. ": " .. err) end
  if type(v) ~= "table" or json.is_array(v) then args.fail(what .. " must be a JSON object") end
  return v
end

return M
