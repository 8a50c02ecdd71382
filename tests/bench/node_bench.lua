-- make bench: speed figures of the core paths (printed, never asserted).
--   send -> run-start latency (p50, p99), the demo daemon with the scripted
--   provider, message sent by
--   another process (commit + local wake-up) and by a run inside the node;
--   sandbox creation + a trivial run_code.

local core = require "cogos.core"
local image = require "cogos.image"
local executor = require "cogos.executor"

local now = core.sys.monotonic_ms

local function percentile(samples, p)
  table.sort(samples)
  return samples[math.max(1, math.ceil(#samples * p))]
end

local function report(name, samples, unit)
  io.write(string.format("%-46s p50 %8.3f %s   p99 %8.3f %s   (n=%d)\n", name,
    percentile(samples, 0.50), unit, percentile(samples, 0.99), unit, #samples))
end

-- {============ send -> run start

local function latency(n_remote, n_local)
  local dir = io.popen("mktemp -d /tmp/cogos-bench.XXXXXX"):read("l")
  local db = assert(core.store.open(dir .. "/cogos.db"))
  db:migrate()
  image.apply(db, core.root .. "/images/cogos")
  -- the stock demo daemon, thinking with the scripted provider
  local exec = executor.new({ db = db, llm = { provider = "scripted" }, node_id = "bench" })
  local remote, inproc = {}, {}
  local log = require "cogos.log"
  log.info = function() end -- keep the figures readable
  local phase = "remote"
  core.sched.start(db, function(run)
    local t = run.payload and run.payload.t
    if t then
      local list = phase == "remote" and remote or inproc
      list[#list + 1] = now() - t
    end
    exec:run(run)
  end, { node_id = "bench", slots = 8 })
  local sock = dir .. "/node.sock"
  assert(core.loop.listen(sock, function() core.sched.wake() end))
  -- the other process: the real binary running the sender script
  local sender = string.format("%s lua %s/tests/bench/sender.lua %s %s %d &",
    core.sys.exe(), core.root, dir .. "/cogos.db", sock, n_remote)
  os.execute(sender)
  local sent_local = 0
  local timer
  timer = core.loop.timer(20, 2, function()
    if #remote < n_remote then return end
    phase = "local"
    if sent_local >= n_local then
      timer:stop()
      core.loop.stop()
      return
    end
    sent_local = sent_local + 1
    db:send("demo:inbox", { text = "bench", t = now() })
  end)
  core.loop.run()
  db:close()
  core.sys.rm_rf(dir)
  report("send -> run start, CLI process + wake-up", remote, "ms")
  report("send -> run start, sent inside the node", inproc, "ms")
end

-- }============

-- {============ sandbox

local function sandbox(n)
  local t0 = now()
  for _ = 1, n do
    local sb = core.sandbox.new({ memory = 8 << 20, instructions = 1000000 })
    sb:run("x = 1 + 1")
    sb:close()
  end
  local per = (now() - t0) * 1000 / n
  io.write(string.format("%-46s %8.2f us/op (n=%d)\n", "sandbox new + trivial run_code + close", per, n))
  local sb = core.sandbox.new({ memory = 8 << 20, instructions = 100000000 })
  t0 = now()
  for _ = 1, n do sb:run("x = 1 + 1") end
  sb:close()
  io.write(string.format("%-46s %8.2f us/op (n=%d)\n", "trivial run_code in a live sandbox",
    (now() - t0) * 1000 / n, n))
end

-- }============

io.write("cogos bench (" .. core.version .. ")\n")
latency(300, 500)
sandbox(20000)
