-- Selection (reference §2.3): softmax over effective priority, without replacement,
-- reproducible with a seed; and the dispatcher's parking API outside a run.

local core = require "cogos.core"
local sched = core.sched

local NOW = 1800000000000 -- ms since the epoch, injected

local function ts(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

local function rows(priorities, since)
  local t = {}
  for i, p in ipairs(priorities) do
    t[i] = { id = "p" .. i, priority = p, runnable_since = since and since[i] }
  end
  return t
end

-- Frequencies of the first draw over n seeded selections.
local function first_counts(cands, n, opts)
  local counts = {}
  for s = 1, n do
    local pick = sched.select(cands, 1, { seed = s, now_ms = (opts or {}).now_ms or NOW })
    counts[pick[1].id] = (counts[pick[1].id] or 0) + 1
  end
  return counts
end

local function softmax(eps)
  local max, w, total = -math.huge, {}, 0
  for _, e in ipairs(eps) do max = math.max(max, e) end
  for i, e in ipairs(eps) do w[i] = math.exp(e - max); total = total + w[i] end
  for i = 1, #w do w[i] = w[i] / total end
  return w
end

describe("sched.select", function()
  it("is reproducible with a seed and varies across seeds", function()
    local cands = rows({ 0, 0, 0, 0, 0, 0, 0, 0 })
    local function ids(sel) local t = {} for i, r in ipairs(sel) do t[i] = r.id end return table.concat(t, ",") end
    assert.equal(ids(sched.select(cands, 8, { seed = 42 })), ids(sched.select(cands, 8, { seed = 42 })))
    local seen = {}
    for s = 1, 20 do seen[ids(sched.select(cands, 8, { seed = s }))] = true end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.truthy(distinct > 10, "different seeds give different orders")
  end)

  it("draws without replacement and never more than there are", function()
    local cands = rows({ 5, 1, 0, 3 })
    local sel = sched.select(cands, 10, { seed = 7 })
    assert.equal(4, #sel)
    local seen = {}
    for _, r in ipairs(sel) do
      assert.falsy(seen[r.id], "drawn twice: " .. r.id)
      seen[r.id] = true
    end
    assert.equal(0, #sched.select(cands, 0, { seed = 1 }))
    assert.equal(0, #sched.select({}, 5, { seed = 1 }))
  end)

  it("follows softmax over priority at temperature 1", function()
    local cands = rows({ 0, 1, 2 })
    local n = 30000
    local counts = first_counts(cands, n)
    local want = softmax({ 0, 1, 2 })
    for i = 1, 3 do
      local got = (counts["p" .. i] or 0) / n
      assert.truthy(math.abs(got - want[i]) < 0.015,
        string.format("p%d drawn %.3f of the time, softmax says %.3f", i, got, want[i]))
    end
  end)

  it("boosts by 0.1 per minute runnable", function()
    -- priority 0 runnable for 10 minutes ties with priority 1 runnable now
    local cands = rows({ 0, 1 }, { ts(NOW - 600000), ts(NOW) })
    local counts = first_counts(cands, 20000)
    local share = (counts.p1 or 0) / 20000
    assert.truthy(math.abs(share - 0.5) < 0.02, "a 10-minute boost of 1.0 ties: p1 share " .. share)
    -- 30 minutes: +3, so p1 now leads by 2
    cands = rows({ 0, 1 }, { ts(NOW - 1800000), ts(NOW) })
    counts = first_counts(cands, 20000)
    share = (counts.p1 or 0) / 20000
    local want = softmax({ 3, 1 })[1]
    assert.truthy(math.abs(share - want) < 0.02, string.format("p1 share %.3f, want %.3f", share, want))
    -- no runnable_since, no boost
    cands = rows({ 0, 1 })
    counts = first_counts(cands, 20000)
    share = (counts.p1 or 0) / 20000
    want = softmax({ 0, 1 })[1]
    assert.truthy(math.abs(share - want) < 0.02, string.format("p1 share %.3f, want %.3f", share, want))
  end)

  it("renormalises the weights left after each draw, even when they underflow", function()
    -- exp(-1000) underflows to 0: the second draw must still be fair between p2 and p3
    local cands = rows({ 1000, 0, 0 })
    local second = {}
    for s = 1, 4000 do
      local sel = sched.select(cands, 2, { seed = s })
      assert.equal("p1", sel[1].id)
      second[sel[2].id] = (second[sel[2].id] or 0) + 1
    end
    local share = (second.p2 or 0) / 4000
    assert.truthy(math.abs(share - 0.5) < 0.04, "second draw split " .. share)
    -- the second draw of {2, 1, 0} without p-first renormalises over the rest
    cands = rows({ 2, 1, 0 })
    local after_p1, p2_then = 0, 0
    for s = 1, 30000 do
      local sel = sched.select(cands, 2, { seed = s })
      if sel[1].id == "p1" then
        after_p1 = after_p1 + 1
        if sel[2].id == "p2" then p2_then = p2_then + 1 end
      end
    end
    local want = softmax({ 1, 0 })[1]
    assert.truthy(math.abs(p2_then / after_p1 - want) < 0.02,
      string.format("after p1, p2 share %.3f, want %.3f", p2_then / after_p1, want))
  end)

  it("rejects bad input with one clear error", function()
    assert.error(function() sched.select(rows({ 1 }), -1) end, "slots must not be negative")
    local many = {}
    for i = 1, 201 do many[i] = { id = i, priority = 0 } end
    assert.error(function() sched.select(many, 1) end, "at most 200 candidates")
  end)
end)

describe("sched.park", function()
  it("refuses outside a sched coroutine", function()
    assert.error(function() sched.park("x") end, "not inside a sched coroutine")
    assert.equal(false, sched.unpark("nobody"))
    assert.same({}, sched.parked())
  end)
end)

-- The dispatcher runs once per process: drive it in a child process.
local function dispatch_script(mode, seed)
  local dir = io.popen("mktemp -d /tmp/cogos-sched.XXXXXX"):read("l")
  local cmd = string.format("%s lua tests/spec/sched_dispatch.lua %s/cogos.db %s %d 2>&1", core.sys.exe(), dir, mode,
    seed)
  local f = io.popen(cmd)
  local text = f:read("a")
  f:close()
  core.sys.rm_rf(dir)
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  local v = last and core.json.decode(last)
  if type(v) ~= "table" then error("dispatch script printed: " .. text) end
  assert.is_nil(v.error, v.error)
  return v
end

describe("the dispatcher", function()
  it("draws one slot at a time by priority from the store's candidates", function()
    local first_hi = 0
    for seed = 1, 5 do
      local r = dispatch_script("order", seed)
      assert.equal(11, #r.order, "every runnable process got a run")
      if r.order[1] == "hi" then first_hi = first_hi + 1 end
    end
    -- e^20 against ten e^0: hi first every time
    assert.equal(5, first_hi)
  end)

  it("resumes a run parked in a wait when the child exits, without a new dispatch", function()
    local r = dispatch_script("park", 1)
    assert.truthy(r.child_ran)
    assert.equal(1, #r.parked, "the parent was parked while the child ran")
    assert.is_nil(r.err)
    local n = 0
    for _, payload in pairs(r.results.children) do
      n = n + 1
      assert.equal("child:exited", payload.type)
      assert.equal(0, payload.exit_code)
    end
    assert.equal(1, n)
    assert.equal("running", r.parent_status, "the parked run's process stays running")
    assert.equal(0, #r.parked_after)
  end)

  it("resumes a parked run with an error when its process is disabled or its run reaped", function()
    local r = dispatch_script("check_killed", 1)
    assert.is_nil(r.results)
    assert.match("killed", r.err)
    assert.equal(0, #r.parked_after)
    r = dispatch_script("check_reaped", 1)
    assert.is_nil(r.results)
    assert.match("the run ended while it waited %(timeout%)", r.err)
  end)

  it("commits a run's writes together when it yields (group commit)", function()
    local r = dispatch_script("group", 1)
    assert.equal(0, r.before_yield)
    assert.equal(2, r.after_yield)
  end)

  it("keeps a parked run parked when its process is woken while the wait is pending", function()
    local r = dispatch_script("repark", 1)
    assert.truthy(r.second_dispatch)
    assert.truthy(r.resumed_after_child, "resumed only once the child had exited")
    local n = 0
    for _ in pairs(r.results.children) do n = n + 1 end
    assert.equal(1, n)
  end)
end)

describe("the reconciliation tick", function()
  local node = require "cogos.node"
  local dir, db
  before_each(function()
    dir = io.popen("mktemp -d /tmp/cogos-tick.XXXXXX"):read("l")
    db = assert(core.store.open(dir .. "/cogos.db"))
    db:migrate()
  end)
  after_each(function()
    db:close()
    core.sys.rm_rf(dir)
  end)

  -- UTC wall time in ms since the epoch (days from civil, whatever the local zone)
  local function at(y, mo, d, h, mi, s)
    if mo <= 2 then y = y - 1 end
    local era = y // 400
    local yoe = y - era * 400
    local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
    local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return ((days * 24 + h) * 60 + mi) * 60000 + s * 1000
  end
  assert(at(2026, 11, 21, 8, 15, 10) == 1795248910000, "the civil-date helper itself")

  local function count(channel)
    local list = db:messages(channel, { limit = 1000 })
    return list and #list or 0
  end

  it("fires a cron rule once per matching minute, and ticks once per minute and hour", function()
    local daemon = db:process_upsert({ name = "health", mode = "daemon", executor = "lua" })
    db:channel_create("check:health")
    db:handler_add(daemon.id, "check:health")
    assert(db:cron_add({ expression = "15 8 * * *", channel = "check:health", payload = { kind = "cron" } }))
    node.tick(db, "n1", at(2026, 11, 21, 8, 15, 10))
    assert.equal(1, count("check:health"))
    assert.equal("cron", db:messages("check:health")[1].payload.kind)
    assert.equal("runnable", db:process_get("health").status, "the subscriber was woken")
    node.tick(db, "n1", at(2026, 11, 21, 8, 15, 50)) -- same minute: nothing again
    node.tick(db, "n1", at(2026, 11, 21, 8, 16, 5))  -- no match
    assert.equal(1, count("check:health"))
    node.tick(db, "n1", at(2026, 11, 22, 8, 15, 0))  -- next day
    assert.equal(2, count("check:health"))
    assert.equal(3, count("system:tick:minute"))
    assert.equal(2, count("system:tick:hour"))
  end)

  it("reaps a run left running past the limit", function()
    db:process_upsert({ name = "stuck", executor = "lua" })
    local run = assert(db:dispatch(db:process_get("stuck").id, "n1"))
    node.tick(db, "n1", core.sys.now_ms() + 16 * 60000)
    assert.equal("timeout", db:run_get(run.id).status)
  end)

  it("reads its interval from the cogtainer, 60 s by default, and refuses nonsense", function()
    assert.equal(60000, node.tick_ms({ entry = {} }))
    assert.equal(500, node.tick_ms({ entry = { tick_ms = 500 } }))
    local ok, err = pcall(node.tick_ms, { entry = { tick_ms = "soon" } })
    assert.falsy(ok)
    assert.match("tick_ms must be an integer", err.cli)
  end)
end)
