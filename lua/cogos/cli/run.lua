-- cogos.cli.run — `cogos run list|show|tail`.

local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"
local events = require "cogos.events"

local open = common.open
local ok_or_fail = common.ok_or_fail
local array = common.array
local with_process_names = common.with_process_names

local M = {}

local RUN_COLS = { "id", "process_name", "status", "tokens_in", "tokens_out", "duration_ms", "created_at" }

-- Every event of a run, in order (paged).
local function all_events(db, id)
  local list, after = array({}), 0
  while true do
    local rows = ok_or_fail(db:events(id, { after = after, limit = 1000 }))
    for _, ev in ipairs(rows) do
      list[#list + 1] = ev
      after = ev.seq
    end
    if #rows < 1000 then return list end
  end
end

M.list = { help = "list runs, newest first", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--process NAME] [--limit N] [--json]", max = 0,
    flags = { process = "string", limit = "integer", json = "bool" } })
  local db = open()
  if o.process then ok_or_fail(db:process_get(o.process)) end
  local rows = with_process_names(db, db:run_list({ process = o.process, limit = o.limit or 20 }))
  if o.json then return out.json(array(rows)) end
  out.table(rows, RUN_COLS)
end }

M.show = { help = "show one run (--events: its event stream too)", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " ID [--events] [--json]", min = 1, max = 1,
    flags = { json = "bool", events = "bool" } })
  local db = open()
  local r = with_process_names(db, { ok_or_fail(db:run_get(pos[1])) })[1]
  local evs = o.events and all_events(db, r.id) or nil
  if o.json then
    r.events = evs
    return out.json(r)
  end
  out.record(r, { "id", "process_name", "status", "tokens_in", "tokens_out", "cost_usd", "duration_ms",
    "model_version", "error", "message", "created_at", "completed_at" })
  if evs then
    io.write("\n")
    for _, ev in ipairs(evs) do io.write(events.format(ev), "\n") end
  end
end }

M.tail = { help = "follow a run's events until it ends (exit 1 when it did not complete)", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " ID [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local json = require("cogos.core").json
  local status = ok_or_fail(events.follow(db, pos[1], function(ev)
    io.write(o.json and json.encode(ev) or events.format(ev), "\n")
    io.flush()
  end))
  if status ~= "completed" and status ~= "suspended" then
    local r = db:run_get(pos[1])
    args.fail("run " .. pos[1] .. " ended " .. status .. ((r and r.error) and (": " .. r.error:gsub("\n.*", "")) or ""))
  end
end }

return M
