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

function M.run(t, opts, summary)
  local db = open(t)
  local node_id = string.format("%s-%d", core.sys.uuid():sub(1, 8), core.sys.getpid())
  log.info("node %s: cogent %s (cogtainer %s), provider %s", node_id, t.cogent, t.cogtainer,
    opts.llm.provider or "scripted")
  log.info("booted %s", summary)
  local recovered = db:recover(node_id)
  if recovered > 0 then log.info("recovered %d run(s) left unfinished by a stopped node", recovered) end
  local exec = executor.new({ db = db, llm = opts.llm, node_id = node_id })
  core.sched.start(db, function(run) exec:run(run) end, { node_id = node_id, slots = 64 })
  local ok, err = core.loop.listen(t.sock_path, function() core.sched.wake() end)
  if not ok then args.fail(err) end
  -- Reconciliation: anything made runnable without a wake-up is picked up here.
  core.loop.timer(M.TICK_MS, M.TICK_MS, function() core.sched.wake() end)
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
