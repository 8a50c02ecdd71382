-- Helper of sched_spec.lua, run in its own process (the dispatcher starts once
-- per process): `cogos lua tests/spec/sched_dispatch.lua DB_PATH MODE SEED`.
--   order  one slot; prints the order in which runnable processes were dispatched
--   park   a parent run parks in a wait on its child; prints what park returned
--   repark the parked parent is woken for another reason first (made runnable out of
--          band): it stays parked until its child exits
--   check_killed / check_reaped  node.check_parked resumes a parked run whose process
--          was disabled / whose run the reaper ended
--   group  a run's writes commit together when it yields (group commit): a second
--          connection sees none of them before, all of them after
-- Prints one JSON line.

local core = require "cogos.core"
local json = core.json

local path, mode, seed = arg[1], arg[2], math.tointeger(tonumber(arg[3] or "1"))
local db = assert(core.store.open(path))
db:migrate()
local out = {}

core.loop.timer(10000, 0, function()
  out.error = "timed out"
  core.loop.stop()
end)

if mode == "order" then
  db:begin()
  for i = 1, 10 do db:process_upsert({ name = "lo" .. i, executor = "lua", priority = 0, status = "runnable" }) end
  db:process_upsert({ name = "hi", executor = "lua", priority = 20, status = "runnable" })
  db:commit()
  out.order = {}
  core.sched.start(db, function(run)
    local p = db:process_get(run.process)
    table.insert(out.order, p.name)
    db:run_finish(run.id, { status = "completed" })
    if #out.order == 11 then core.loop.stop() end
  end, { node_id = "test", slots = 1, seed = seed })
elseif mode == "park" then
  local parent = db:process_upsert({ name = "parent", executor = "lua", status = "runnable", priority = 10 })
  db:process_upsert({ name = "child", executor = "lua", status = "waiting", parent_process = parent.id })
  local child = db:process_get("child")
  core.sched.start(db, function(run)
    if run.process == parent.id then
      assert(db:wait_add({ run = run.id, process = parent.id, type = "wait", pending = json.array({ child.id }) }))
      assert(db:process_set_status(child.id, "runnable")) -- the child may go now
      local res, err = core.sched.park(parent.id)
      out.results, out.err = res, err
      out.parent_status = db:process_get(parent.id).status
      db:run_finish(run.id, { status = "completed" })
      out.parked_after = core.sched.parked()
      core.loop.stop()
    else
      out.child_ran = true
      out.parked = core.sched.parked() -- the parent, meanwhile
      db:run_finish(run.id, { status = "completed" })
    end
  end, { node_id = "test", slots = 4, seed = seed })
elseif mode == "repark" then
  local parent = db:process_upsert({ name = "parent", executor = "lua", status = "runnable", priority = 10 })
  local child = db:process_upsert({ name = "child", executor = "lua", status = "waiting", parent_process = parent.id })
  core.sched.start(db, function(run)
    if run.process == parent.id and not out.parked_once then
      out.parked_once = true
      assert(db:wait_add({ run = run.id, process = parent.id, type = "wait", pending = json.array({ child.id }) }))
      core.sched.spawn(function() assert(db:process_set_status(parent.id, "runnable")) end)
      out.results = core.sched.park(parent.id)
      out.resumed_after_child = out.child_ran == true
      core.loop.stop()
    elseif run.process == parent.id then
      out.second_dispatch = true -- the out-of-band wake made it runnable: a run of its own
      assert(db:process_set_status(child.id, "runnable"))
    else
      out.child_ran = true
      db:run_finish(run.id, { status = "completed" })
    end
  end, { node_id = "test", slots = 4, seed = seed })
elseif mode == "group" then
  db:process_upsert({ name = "writer", executor = "lua", status = "runnable" })
  local other = assert(core.store.open(path))
  local function seen() return #other:file_list() end
  core.sched.start(db, function(run)
    assert(db:file_write("a", "1"))
    assert(db:file_write("b", "2"))
    out.before_yield = seen()
    core.sched.sleep(1)
    out.after_yield = seen()
    db:run_finish(run.id, { status = "completed" })
    core.loop.stop()
  end, { node_id = "test", slots = 1, seed = seed })
elseif mode == "check_killed" or mode == "check_reaped" then
  local node = require "cogos.node"
  local parent = db:process_upsert({ name = "parent", executor = "lua", status = "runnable" })
  local child = db:process_upsert({ name = "child", mode = "daemon", executor = "lua", parent_process = parent.id })
  core.sched.start(db, function(run)
    assert(db:wait_add({ run = run.id, process = parent.id, type = "wait", pending = json.array({ child.id }) }))
    core.sched.spawn(function()
      if mode == "check_killed" then db:process_disable(parent.id) else db:reap(core.sys.now_ms() + 16 * 60000) end
      node.check_parked(db)
    end)
    out.results, out.err = core.sched.park(parent.id)
    out.parked_after = core.sched.parked()
    core.loop.stop()
  end, { node_id = "test", slots = 4, seed = seed })
else
  error("mode must be order, park, repark, check_killed or check_reaped")
end
core.loop.run()
print(json.encode(out))
