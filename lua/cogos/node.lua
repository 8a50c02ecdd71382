-- cogos.node — a running cogent: boot its image, then dispatch runs on the loop
-- until stopped. One node per cogent, guarded by node.lock; other processes
-- (the CLI) wake it through node.sock right after they commit.

local core = require "cogos.core"
local image = require "cogos.image"
local executor = require "cogos.executor"
local log = require "cogos.log"
local args = require "cogos.cli.args"

local M = {}

M.TICK_MS = 60000

---The reconciliation interval: $COGOS_TICK_MS (tests), else the cogtainer's
---`tick_ms`, else 60 s.
---@param t table config.target()
---@return integer ms
function M.tick_ms(t)
  local v = os.getenv("COGOS_TICK_MS")
  local src = "COGOS_TICK_MS"
  if v == nil or v == "" then
    v, src = t.entry and t.entry.tick_ms, "the cogtainer's tick_ms"
  end
  if v == nil then return M.TICK_MS end
  local ms = math.tointeger(tonumber(v))
  if not ms or ms < 10 then args.fail(src .. " must be an integer of at least 10 (ms), got '" .. tostring(v) .. "'") end
  return ms
end

M.THROTTLE_COOLDOWN_MS = 300000

---How long the scheduler starts nothing new after a run ended throttled (the
---provider rate-limited it): $COGOS_THROTTLE_COOLDOWN_MS (tests), else the
---cogtainer's `throttle_cooldown_ms`, else 5 min; 0 turns the cooldown off.
---@param t table config.target()
---@return integer ms
function M.throttle_cooldown_ms(t)
  local v = os.getenv("COGOS_THROTTLE_COOLDOWN_MS")
  local src = "COGOS_THROTTLE_COOLDOWN_MS"
  if v == nil or v == "" then
    v, src = t.entry and t.entry.throttle_cooldown_ms, "the cogtainer's throttle_cooldown_ms"
  end
  if v == nil then return M.THROTTLE_COOLDOWN_MS end
  local ms = math.tointeger(tonumber(v))
  if not ms or ms < 0 then args.fail(src .. " must be a non-negative integer (ms), got '" .. tostring(v) .. "'") end
  return ms
end

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

---The tags this node carries (a process with required_tags runs only on a node
---that carries them all): $COGOS_NODE_TAGS (comma-separated), else the
---cogtainer's `node_tags` list, else none.
---@param t table config.target()
---@return string[] tags
function M.tags(t)
  local v = os.getenv("COGOS_NODE_TAGS")
  local list, src = {}, "COGOS_NODE_TAGS"
  if v ~= nil and v ~= "" then
    for item in (v .. ","):gmatch("([^,]*),") do list[#list + 1] = item:match("^%s*(.-)%s*$") end
  else
    list, src = t.entry and t.entry.node_tags or {}, "the cogtainer's node_tags"
  end
  if not is_tag_list(list) then args.fail(src .. " must be a list of non-empty tags") end
  return list
end

-- A parked lua run (procs.wait*) whose wait resolved in another OS process (a
-- CLI that disabled a child), whose process was disabled meanwhile, or whose run
-- the reaper ended: resume it.
local function check_parked(db)
  for _, pid in ipairs(core.sched.parked()) do
    local p = db:process_get(pid)
    local w, err = db:wait_get(pid)
    if err and p then error("wait_get " .. pid .. ": " .. err, 0) end
    local run = w and w.run and db:run_get(w.run)
    if run and run.status ~= "running" then -- the reaper ended it (max_duration_ms)
      core.sched.unpark(pid, nil, "the run ended while it waited (" .. run.status .. ")")
    elseif not p or p.status == "disabled" or p.status == "completed" then
      core.sched.unpark(pid, nil, "killed: the process was disabled while it waited")
    elseif w == nil then
      core.sched.unpark(pid, db:wait_results(pid)) -- nothing pending: resolved
    end
  end
end
M.check_parked = check_parked

---One reconciliation pass (reference §3.7, in this order): heartbeat, ticks and
---cron, backfill and wait/wake repair, stale-run reaper, unblock; then a wake.
---Each step is its own transaction in the store; a failing step is logged and
---the others still run.
---@param db table
---@param node_id string
---@param now_ms integer|nil ms since the epoch (default: now)
---@return table counts {step = result} of the steps that succeeded
function M.tick(db, node_id, now_ms)
  now_ms = now_ms or core.sys.now_ms()
  local steps = {
    { "heartbeat", function() return db:heartbeat(node_id) end },
    { "cron_fire", function() return db:cron_fire(now_ms) end },
    { "reconcile", function() return db:reconcile() end },
    { "reap", function() return db:reap(now_ms) end },
    { "unblock", function() return db:unblock(now_ms) end },
    { "parked", function() return check_parked(db) end },
  }
  local results = {}
  for _, step in ipairs(steps) do
    local ok, r, err = pcall(step[2])
    if not ok or (r == nil and err ~= nil) then
      log.info("error: tick: %s failed: %s", step[1], tostring(ok and err or r))
    else
      results[step[1]] = r
    end
  end
  core.sched.wake()
  return results
end

local function open(t)
  local db, err = core.store.open(t.db_path)
  if not db then args.fail(err) end
  db:migrate()
  return db
end

---Boots and runs the node for target t.
---@param t table config.target()
---@param opts table {image, clean, foreground, llm}
function M.start(t, opts)
  local dir, ierr = image.resolve(opts.image or "cogos")
  if not dir then args.fail(ierr) end
  -- bad settings fail here, on the terminal, not in the log of a detached node
  M.tick_ms(t)
  M.tags(t)
  M.throttle_cooldown_ms(t)
  local lock, _, holder = core.sys.lock(t.lock_path)
  if not lock then args.fail("cogent '" .. t.cogent .. "' is already running (pid " .. tostring(holder) .. ")") end
  local db = open(t)
  if opts.clean then db:wipe() end
  local ok, counts = pcall(image.apply, db, dir)
  db:close()
  if not ok then args.fail("boot failed: " .. tostring(counts)) end
  local summary = string.format("image %s: %d capabilities, %d processes, %d files (%d changed)",
    opts.image or "cogos", counts.capabilities, counts.processes, counts.files, counts.files_changed)
  if not opts.foreground then
    assert(core.sys.mkdir_p(t.dir .. "/logs"))
    local pid = core.sys.daemonize(t.log_path, lock)
    if pid > 0 then
      print(string.format("started cogent %s (pid %d); %s; log %s", t.cogent, pid, summary, t.log_path))
      return
    end
  end
  M.run(t, opts, summary)
end

---Recovers what the previous node of this cogent left running (the node lock
---makes it dead): its runs fail and their deliveries are owed again. A lua run
---that was parked in a wait does not start over at once: its process waits
---again for the children, and their child:exited wakes it as a new run with
---event.wait_results.
---@param db table
---@param node_id string this node
function M.recover(db, node_id)
  local prev = db:meta_get("node:id")
  db:meta_set("node:id", node_id)
  if not prev then return 0 end
  local n = db:recover(prev)
  if n > 0 then log.info("recovered %d run(s) left unfinished by node %s", n, prev) end
  for _, p in ipairs(db:process_list({ status = "runnable" })) do
    local w = db:wait_get(p.id)
    local r = w and w.run and db:run_get(w.run)
    if r and r.status ~= "running" and r.node_id == prev then
      assert(db:process_set_status(p.id, "waiting"))
      log.info("process %s waits again for its children (its run %s was parked in a wait)", p.name,
        log.short(r.id))
    end
  end
  return n
end

function M.run(t, opts, summary)
  local tick_ms = M.tick_ms(t)
  local tags = M.tags(t)
  local cooldown_ms = M.throttle_cooldown_ms(t)
  local db = open(t)
  local node_id = string.format("%s-%d", core.sys.uuid():sub(1, 8), core.sys.getpid())
  log.info("node %s: cogent %s (cogtainer %s), provider %s%s", node_id, t.cogent, t.cogtainer,
    opts.llm.provider or "scripted", #tags > 0 and (", tags " .. table.concat(tags, ", ")) or "")
  log.info("booted %s", summary)
  M.recover(db, node_id)
  -- the store's rules read these: required_tags (T6) and the throttle cooldown
  assert(db:executor_register(node_id, { tags = tags, heartbeat_ms = tick_ms }))
  assert(db:meta_set("scheduler:throttle_cooldown_ms", tostring(cooldown_ms)))
  local exec = executor.new({ db = db, llm = opts.llm, node_id = node_id, cogent_dir = t.dir,
    throttle_cooldown_ms = cooldown_ms })
  -- COGOS_SCHED_SEED makes the selection draws reproducible (tests)
  local seed = os.getenv("COGOS_SCHED_SEED")
  if seed == "" then seed = nil end
  if seed and not math.tointeger(tonumber(seed)) then args.fail("COGOS_SCHED_SEED must be an integer") end
  core.sched.start(db, function(run) exec:run(run) end, { node_id = node_id, slots = 64,
    seed = seed and math.tointeger(tonumber(seed)) })
  local ok, err = core.loop.listen(t.sock_path, function()
    -- another process committed something: dispatch, and resume parked runs it finished
    if #core.sched.parked() > 0 then
      local pok, perr = pcall(check_parked, db)
      if not pok then log.info("error: wake: parked runs: %s", tostring(perr)) end
    end
    core.sched.wake()
  end)
  if not ok then args.fail(err) end
  -- Reconciliation: ticks, cron, backfill, reaping, unblocking; then a wake.
  M.tick(db, node_id)
  core.loop.timer(tick_ms, tick_ms, function() M.tick(db, node_id) end)
  local function stop(sig)
    return function()
      log.info("%s: stopping (%d run(s) in flight are recovered at the next start)", sig,
        core.sched.running())
      core.loop.stop()
    end
  end
  core.loop.on_signal("SIGINT", stop("SIGINT"))
  core.loop.on_signal("SIGTERM", stop("SIGTERM"))
  log.info("ready; wake-ups on %s", t.sock_path)
  core.loop.run()
  -- gone: processes that need its tags block until a node that carries them runs
  local dok, derr = db:executor_set_status(node_id, "dead")
  if not dok then log.info("warning: cannot deregister node %s: %s", node_id, tostring(derr)) end
  os.remove(t.sock_path)
  log.info("node %s stopped", node_id)
end

---Stops the node of target t; waits up to timeout_ms for it to exit.
function M.stop(t, timeout_ms)
  local config = require "cogos.config"
  local pid = config.node_pid(t)
  if not pid then args.fail("cogent '" .. t.cogent .. "' is not running") end
  core.sys.kill(pid, 15)
  local deadline = core.sys.monotonic_ms() + (timeout_ms or 10000)
  while core.sys.monotonic_ms() < deadline do
    if not config.node_pid(t) then return pid end
    core.sys.sleep_ms(20)
  end
  args.fail("cogent '" .. t.cogent .. "' (pid " .. pid .. ") did not stop within " .. (timeout_ms or 10000) .. " ms")
end

return M
