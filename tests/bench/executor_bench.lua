-- make bench: the executor (figures printed, never asserted).
--   1. overhead per LLM turn, the LLM excluded: the scripted provider, many turns of
--      run_code, the provider's own time subtracted; with and without budgets
--   2. N runs (10 000 by default) waiting at once on a fake LLM that answers after 5 s,
--      in one node (one process, one loop): wall time, completions, peak RSS
-- Usage: cogos lua tests/bench/executor_bench.lua [overhead | concurrent [N [DELAY_MS]]]
--   BENCH_TRACE=1 prints RSS and Lua heap every 250 ms to stderr (=gc: after a full
--   collection, i.e. the live heap); the fake server is another process, never counted.

local core = require "cogos.core"
local executor = require "cogos.executor"
local llm = require "cogos.llm"
local log = require "cogos.log"

local json = core.json
local now = core.sys.monotonic_ms

log.info = function() end -- keep the figures readable

local function tmpdir()
  return io.popen("mktemp -d /tmp/cogos-bench-exec.XXXXXX"):read("l")
end

local function status_kb(field)
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+) kB"))
end

-- {============ 1. overhead per turn

local function overhead(runs, turns, with_budget)
  local dir = tmpdir()
  local db = assert(core.store.open(dir .. "/cogos.db"))
  db:migrate()
  assert(db:capability_upsert({ name = "files", handler = "files", description = "Versioned files." }))
  local script = {}
  for i = 1, turns do
    script[i] = { content = { { type = "text", text = "step" },
      { type = "tool_use", name = "run_code", input = { code = "x = (x or 0) + 1" } } },
      usage = { input_tokens = 100, output_tokens = 10 } }
  end
  script[turns + 1] = { content = { { type = "text", text = "done" } },
    usage = { input_tokens = 100, output_tokens = 1 } }
  assert(db:file_write("scripts/bench.json", assert(json.encode({ turns = script }))))
  local p = assert(db:process_upsert({ name = "bench", mode = "daemon", content = "Work.",
    metadata = { script = "scripts/bench.json", max_turns = turns + 1 } }))
  assert(db:grant_add(p.id, { capability = "files", name = "files", config = { prefix = "out/" } }))
  if with_budget then assert(db:budget_set({ scope = "cogent", period = "day", max_tokens = 1e12 })) end
  -- the provider's time is measured and taken out
  local real, in_llm = llm.client, 0
  llm.client = function(...)
    local c, err = real(...)
    if not c then return nil, err end
    local complete = c.complete
    c.complete = function(self, request, opts)
      local t = now()
      local res, e = complete(self, request, opts)
      in_llm = in_llm + (now() - t)
      return res, e
    end
    return c, err
  end
  local exec = executor.new({ db = db, llm = { provider = "scripted" }, node_id = "bench" })
  local t0 = now()
  for _ = 1, runs do
    assert(db:process_set_status(p.id, "runnable"))
    local run = assert(db:dispatch(p.id, "bench"))
    exec:run(run)
    local r = db:run_get(run.id)
    if r.status ~= "completed" then error("bench run " .. r.status .. ": " .. tostring(r.error)) end
  end
  local total = now() - t0
  llm.client = real
  local nturns = runs * (turns + 1)
  -- one event write alone, for scale
  local run = assert(db:run_list({ limit = 1 }))[1]
  local te = now()
  for i = 1, 2000 do db:event_add(run.id, "bench", { i = i }) end
  local per_event = (now() - te) * 1000 / 2000
  db:close()
  core.sys.rm_rf(dir)
  io.write(string.format("%-52s %8.1f µs/turn  (%d turns; LLM %.1f µs/turn excluded)%s\n",
    "executor overhead per LLM turn" .. (with_budget and ", with a budget" or ""),
    (total - in_llm) * 1000 / nturns, nturns, in_llm * 1000 / nturns, ""))
  if not with_budget then
    io.write(string.format("%-52s %8.1f µs\n", "  one run event written (db:event_add)", per_event))
  end
end

-- }============

-- {============ 2. many runs waiting at once

local function start_server(delay_ms)
  local dir = tmpdir()
  local port_file, pid_file = dir .. "/port", dir .. "/pid"
  os.execute(string.format("node %s/tests/bench/slow_llm.js --delay-ms %d >%s 2>%s.err & echo $! >%s",
    core.root, delay_ms, port_file, port_file, pid_file))
  local port, pid
  local deadline = now() + 10000
  repeat
    core.sys.sleep_ms(20)
    local f = io.open(port_file)
    if f then port = f:read("a"):match("listening (%d+)") f:close() end
  until port or now() > deadline
  local f = io.open(pid_file)
  pid = tonumber(f:read("a"))
  f:close()
  assert(port, "the slow LLM server did not start")
  return "http://127.0.0.1:" .. port, pid, dir
end

local function concurrent(n, delay_ms)
  local url, server_pid, sdir = start_server(delay_ms)
  local dir = tmpdir()
  local db = assert(core.store.open(dir .. "/cogos.db"))
  db:migrate()
  assert(db:begin())
  for i = 1, n do assert(db:process_upsert({ name = "w" .. i, status = "runnable", content = "Say ok." })) end
  assert(db:commit())
  local rss0, lua0 = status_kb("VmRSS"), collectgarbage("count")
  local exec = executor.new({ db = db, node_id = "bench", llm = { provider = "anthropic", model = "claude-sonnet-4-5",
    api_key_env = "BENCH_LLM_KEY", base_url = url } })
  local done, waiting_peak, started, lua_peak_kb = 0, 0, 0, 0
  local rss_all_waiting, lua_all_waiting -- while every run waits: no answer has come yet
  local t0 = now()
  local t_all_started
  core.sched.start(db, function(run)
    started = started + 1
    if started == n then t_all_started = now() - t0 end
    exec:run(run)
    done = done + 1
    -- the answers come in a burst that keeps the loop busy: the ticker below rarely
    -- runs then, so the Lua heap is also sampled here
    lua_peak_kb = math.max(lua_peak_kb, collectgarbage("count"))
    if done == n then core.loop.stop() end
  end, { node_id = "bench", slots = n + 1 })
  local trace = os.getenv("BENCH_TRACE") -- a timeline on stderr, for finding where memory goes
  local ticker = core.loop.timer(250, 250, function()
    local in_flight = started - done
    if in_flight > waiting_peak then waiting_peak = in_flight end
    lua_peak_kb = math.max(lua_peak_kb, collectgarbage("count"))
    if started == n and done == 0 then
      rss_all_waiting = math.max(rss_all_waiting or 0, status_kb("VmRSS"))
      lua_all_waiting = math.max(lua_all_waiting or 0, collectgarbage("count"))
    end
    if trace then
      if trace == "gc" then collectgarbage("collect") end -- the live heap, not what awaits collection
      io.stderr:write(string.format("t=%6.0f started %5d done %5d RSS %7.1f MiB Lua %7.1f MiB\n", now() - t0,
        started, done, status_kb("VmRSS") / 1024, collectgarbage("count") / 1024))
    end
    if now() - t0 > 120000 then core.loop.stop() end
  end)
  core.sched.wake()
  core.loop.run()
  ticker:stop()
  local wall = now() - t0
  local hwm = status_kb("VmHWM")
  local counts = {}
  for _, r in ipairs(db:run_list({ limit = n * 2 })) do counts[r.status] = (counts[r.status] or 0) + 1 end
  local sample
  for _, r in ipairs(db:run_list({ limit = 5 })) do
    if r.status ~= "completed" then sample = r.error end
  end
  db:close()
  core.sys.kill(server_pid, 15)
  core.sys.sleep_ms(100)
  local f = io.open(sdir .. "/port.err")
  local server_note = f and f:read("a"):gsub("\n$", "") or ""
  if f then f:close() end
  core.sys.rm_rf(dir)
  core.sys.rm_rf(sdir)
  local list = {}
  for k, v in pairs(counts) do list[#list + 1] = k .. " " .. v end
  table.sort(list)
  io.write(string.format("%-52s %d runs, LLM answers after %d ms\n", "runs waiting at once on a slow LLM, one node", n,
    delay_ms))
  io.write(string.format("  all dispatched after %.0f ms; all ended after %.0f ms; peak in flight %d\n",
    t_all_started or -1, wall, waiting_peak))
  io.write(string.format("  outcomes: %s%s\n", table.concat(list, ", "), sample and ("; e.g. " .. sample) or ""))
  io.write(string.format("  peak RSS (VmHWM) %.1f MiB; %.1f KiB per waiting run above the %.1f MiB before the runs\n",
    hwm / 1024, (hwm - rss0) / n, rss0 / 1024))
  io.write(string.format("  of which the node's Lua heap at most %.1f MiB\n", lua_peak_kb / 1024))
  if rss_all_waiting then -- the peak may come later, from the burst of answers
    io.write(string.format("  while all %d waited: RSS %.1f MiB (%.1f KiB per run), Lua heap %.1f MiB (%.1f KiB"
      .. " per run)\n", n, rss_all_waiting / 1024, (rss_all_waiting - rss0) / n, lua_all_waiting / 1024,
      (lua_all_waiting - lua0) / n))
  end
  io.write("  server: ", server_note, "\n")
end

-- }============

local phase = arg and arg[1]
if phase == "overhead" or phase == nil then
  overhead(20, 100, false)
  overhead(20, 100, true)
end
if phase == "concurrent" then
  concurrent(tonumber(arg[2]) or 10000, tonumber(arg[3]) or 5000)
elseif phase == nil then
  -- a child process with the file-descriptor limit raised (one socket per waiting run)
  -- and the fake key in its environment
  local cmd = string.format("ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); "
    .. "BENCH_LLM_KEY=bench %q lua %q concurrent 10000 5000", core.sys.exe(),
    core.root .. "/tests/bench/executor_bench.lua")
  io.flush()
  if not os.execute(cmd) then io.write("(the concurrent phase failed)\n") end
end
