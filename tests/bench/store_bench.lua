-- make bench: the store under the original's workload (issue 3), each phase on a fresh
-- database, at synchronous=NORMAL (our default) and FULL (the original's), one
-- transaction per operation; then the node's path, where a task's slice commits once
-- (group commit, sched.c), with 100 operations a slice. Figures are printed, never
-- asserted: wall time, and the process's CPU time (what the store itself costs when the
-- machine is shared; wall - CPU is mostly fsync).

local core = require "cogos.core"
local caps = require "cogos.caps"

local now = core.sys.monotonic_ms

local function fresh(sync)
  local dir = io.popen("mktemp -d /tmp/cogos-store-bench.XXXXXX"):read("l")
  local db = assert(core.store.open(dir .. "/cogos.db", { synchronous = sync }))
  db:migrate()
  return db, dir
end

local function cleanup(db, dir)
  db:close()
  os.execute("rm -rf '" .. dir .. "'")
end

-- Runs op(i) for i = 1..n, `batch` operations per transaction (1: each its own).
-- Returns wall and CPU µs per op.
local function timed(db, n, batch, op)
  local t0, c0 = now(), os.clock()
  local i = 1
  while i <= n do
    if batch > 1 then db:begin() end
    for j = i, math.min(n, i + batch - 1) do op(j) end
    if batch > 1 then db:commit() end
    i = i + batch
  end
  return (now() - t0) * 1000 / n, (os.clock() - c0) * 1e6 / n
end

local phases = {}

phases[#phases + 1] = { "create 1000 one-shot processes", function(db, batch)
  return timed(db, 1000, batch, function(i) assert(db:process_upsert({ name = "p" .. i })) end)
end }

-- The real procs.spawn, called by a daemon's code in its sandbox (a delegated, narrowed
-- grant; the child's channels are implicit, made on first use).
phases[#phases + 1] = { "1000 spawns of a child from a daemon (procs.spawn)", function(db, batch)
  for _, t in ipairs({ "files", "procs" }) do assert(db:capability_upsert({ name = t, handler = t })) end
  local parent = assert(db:process_upsert({ name = "parent", mode = "daemon", executor = "lua" }))
  assert(db:grant_add(parent.id, { capability = "files", name = "files", config = { prefix = "data/" } }))
  assert(db:grant_add(parent.id, { capability = "procs", name = "procs" }))
  local list = caps.grants(db, parent)
  local sb = core.sandbox.new({ instructions = 1e9, memory = 64 * 1024 * 1024, deadline_ms = 600000,
    grants = caps.sandbox_grants(list), dispatch = caps.dispatcher(list, { db = db, process = parent }) })
  local n, t0, c0 = 1000, now(), os.clock()
  for i = 1, n, batch do
    if batch > 1 then db:begin() end
    local _, err = sb:run(string.format("for i = %d, %d do assert(procs.spawn{name = 'child' .. i, "
      .. "content = 'work', capabilities = {files = files:scope{prefix = 'data/sub/'}}}) end", i, i + batch - 1))
    assert(not err, err)
    if batch > 1 then db:commit() end
  end
  sb:close()
  return (now() - t0) * 1000 / n, (os.clock() - c0) * 1e6 / n
end }

phases[#phases + 1] = { "10000 sends, one daemon handler (msg+delivery+wake)", function(db, batch)
  local d = assert(db:process_upsert({ name = "d", mode = "daemon" }))
  db:channel_create("in")
  assert(db:handler_add(d.id, "in"))
  return timed(db, 10000, batch, function(i) assert(db:send("in", { i = i })) end)
end }

phases[#phases + 1] = { "10000 file writes, round-robin over 100 keys", function(db, batch)
  return timed(db, 10000, batch, function(i)
    assert(db:file_write("notes/k" .. (i % 100), "content " .. i))
  end)
end }

phases[#phases + 1] = { "select + dispatch: 2002 runnable, one run each", function(db, batch)
  db:begin()
  for i = 1, 2002 do assert(db:process_upsert({ name = "r" .. i, priority = i % 7 })) end
  db:commit()
  local t0, c0, n = now(), os.clock(), 0
  while true do
    local rows = db:runnable(200)
    if #rows == 0 then break end
    if batch > 1 then db:begin() end
    for k, row in ipairs(rows) do
      assert(db:dispatch(row.id, "bench"))
      n = n + 1
      if batch > 1 and k % batch == 0 then
        db:commit()
        db:begin()
      end
    end
    if batch > 1 then db:commit() end
  end
  assert(n == 2002)
  return (now() - t0) * 1000 / n, (os.clock() - c0) * 1e6 / n
end }

-- Sends when 200 pattern handlers exist (matched once per channel name, then cached).
phases[#phases + 1] = { "10000 sends, one handler, 200 pattern handlers", function(db, batch)
  local d = assert(db:process_upsert({ name = "d", mode = "daemon" }))
  db:channel_create("in")
  assert(db:handler_add(d.id, "in"))
  for i = 1, 200 do
    local p = assert(db:process_upsert({ name = "w" .. i, mode = "daemon" }))
    assert(db:handler_add(p.id, "app" .. i .. ":*"))
  end
  return timed(db, 10000, batch, function(i) assert(db:send("in", { i = i })) end)
end }

local function peak_rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmHWM:%s*(%d+)")
    if v then return tonumber(v) end
  end
end

-- One idle pass with 2000 handlers (1000 daemons, each handling two of 100 shared
-- channels), after 250 messages fanned out to 5000 deliveries.
local function reconcile_pass(sync)
  local db, dir = fresh(sync)
  db:begin()
  for i = 1, 1000 do
    local p = assert(db:process_upsert({ name = "h" .. i, mode = "daemon" }))
    db:channel_create("ch" .. (i % 50))
    assert(db:handler_add(p.id, "ch" .. (i % 50)))
    db:channel_create("ch" .. (50 + i % 50))
    assert(db:handler_add(p.id, "ch" .. (50 + i % 50)))
  end
  for c = 0, 49 do for m = 1, 5 do assert(db:send("ch" .. c, { m = m })) end end
  db:commit()
  local handlers = #db:handler_list()
  assert(db:reconcile().deliveries == 0)
  local walls, cpus = {}, {}
  for _ = 1, 9 do
    local t0, c0 = now(), os.clock()
    local r = db:reconcile()
    walls[#walls + 1], cpus[#cpus + 1] = now() - t0, (os.clock() - c0) * 1000
    assert(r.deliveries == 0)
  end
  table.sort(walls)
  table.sort(cpus)
  cleanup(db, dir)
  return walls[5], cpus[5], handlers
end

for _, batch in ipairs({ 1, 100 }) do
  io.write(batch == 1 and "one transaction per operation (a CLI command, or code outside the node)\n"
    or "the node's path: a task's slice commits once (group commit), here 100 operations a slice\n")
  io.write(string.format("  %-50s %22s %22s\n", "phase (µs/op)", "NORMAL wall / CPU", "FULL wall / CPU"))
  for _, ph in ipairs(phases) do
    local figures = {}
    for _, sync in ipairs({ "normal", "full" }) do
      local db, dir = fresh(sync)
      local wall, cpu = ph[2](db, batch)
      figures[#figures + 1] = string.format("%10.1f / %9.1f", wall, cpu)
      cleanup(db, dir)
    end
    io.write(string.format("  %-50s %22s %22s\n", ph[1], figures[1], figures[2]))
    io.flush()
  end
end
local wall, cpu, handlers = reconcile_pass("normal")
io.write(string.format("idle reconcile pass, %d handlers: %.2f ms wall, %.2f ms CPU (medians of 9)\n",
  handlers, wall, cpu))
io.write(string.format("peak RSS over the whole workload (VmHWM): %.1f MiB\n", peak_rss_kib() / 1024))
