-- Scheduling end to end (reference §2.2 T6/T7, §2.5, scenarios 20 and 24): a
-- process runs only on a node carrying its required tags, an idle daemon is
-- reaped, and a rate-limited run ends throttled and holds new dispatches for
-- the cooldown.

local harness = require "harness"
local core = require "cogos.core"

local sh = harness.shquote
local MISSING = "system:executor:error:missing-tags"

local function proc(w, name) return w:ok("cogos process get " .. name .. " --json") end

local function finished_run(w, name, timeout_ms)
  return w.wait(function()
    local runs = w:ok("cogos run list --process " .. name .. " --json")
    return runs[1] and runs[1].status ~= "running" and runs
  end, timeout_ms or 15000, "a finished run of " .. name)
end

local function notices(w)
  local chans = w:ok("cogos channel list --json")
  for _, c in ipairs(chans) do
    if c.name == MISSING then return w:ok("cogos channel read " .. MISSING .. " --json") end
  end
  return {}
end

-- A store timestamp ("2026-11-21T06:52:02.123Z") in ms since 1970.
local function ms(ts)
  local y, mo, d, h, mi, s, f = ts:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end -- days from the civil date (March-based years)
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (mo > 2 and mo - 3 or mo + 9) + 2) // 5 + d - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + tonumber(f)
end

describe("scheduling", function()
  local w
  before_each(function() w = harness.world({ COGOS_TICK_MS = "200", FAKE_KEY = "k" }) end)
  after_each(function() w:close() end)

  it("runs a process only on a node carrying its required tags, blocking it (one notice) until one runs", function()
    w:boot("--node-tag gpu")
    local code, _, err = w:run("cogos process create x --required-tag ''")
    assert.equal(2, code)
    assert.match("%-%-required%-tag needs a non%-empty tag", err)
    w:ok("cogos process create g --executor lua --required-tag gpu --content " .. sh("print('on gpu')"))
    assert.equal("completed", finished_run(w, "g")[1].status)
    w:ok("cogos process create t --executor lua --required-tag gpu --required-tag tpu --content "
      .. sh("print('on tpu')"))
    w.wait(function() return proc(w, "t").status == "blocked" end, 10000, "t blocked")
    assert.same({ "gpu", "tpu" }, proc(w, "t").required_tags)
    core.sys.sleep_ms(800) -- several ticks: unblock leaves it be, nobody is told twice
    assert.equal("blocked", proc(w, "t").status)
    local n = notices(w)
    assert.equal(1, #n)
    assert.equal("executor:missing-tags", n[1].payload.type)
    assert.equal("t", n[1].payload.process_name)
    assert.same({ "tpu" }, n[1].payload.missing_tags)
    assert.same({ "gpu", "tpu" }, n[1].payload.required_tags)
    assert.same({}, w:ok("cogos run list --process t --json"))
    -- a node that carries both takes over: the reconcile tick unblocks t
    w:ok("cogos stop")
    code, _, err = w:run("cogos start", { env = { COGOS_NODE_TAGS = "gpu,,tpu" } })
    assert.equal(1, code)
    assert.match("COGOS_NODE_TAGS must be a list of non%-empty tags", err)
    code, _, err = w:run("cogtainer create other --type local --node-tag ''")
    assert.equal(2, code)
    assert.match("%-%-node%-tag needs a non%-empty tag", err)
    w:ok("cogos start", { env = { COGOS_NODE_TAGS = "gpu, tpu" } })
    local runs = finished_run(w, "t")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.equal(1, #notices(w))
  end)

  it("reaps a daemon idle past its idle_timeout_ms: completed, and its waiting parent resumes", function()
    w:boot()
    for _, bad in ipairs({ "--mode daemon --idle-timeout-ms 0", "--idle-timeout-ms 100" }) do
      local code, _, err = w:run("cogos process create lazy " .. bad)
      assert.equal(2, code, bad)
      assert.match("idle%-timeout%-ms", err)
    end
    w:ok("cogos process create keeper --executor lua --capability procs --content " .. sh([[
      local d = assert(procs.spawn({ name = "idler", content = "print('never')", executor = "lua",
        mode = "daemon", idle_timeout_ms = 300 }))
      local res = assert(procs.wait(d))
      print("idler exit " .. res.children[d.id].exit_code)]]))
    local runs = finished_run(w, "keeper")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.match("idler exit 0", w:ok("cogos run show " .. runs[1].id .. " --json").result.output)
    local idler = proc(w, "idler")
    assert.equal("completed", idler.status)
    assert.same({}, w:ok("cogos run list --process idler --json"), "reaped without a run")
    local exits = w:ok("cogos channel read " .. sh("spawn:" .. idler.id .. "\u{2192}" .. proc(w, "keeper").id)
      .. " --json")
    assert.equal(1, #exits)
    -- from the CLI too
    w:ok("cogos process create lazy --mode daemon --idle-timeout-ms 200")
    w.wait(function() return proc(w, "lazy").status == "completed" end, 10000, "lazy reaped")
  end)

  it("ends a rate-limited run throttled (exit_code 3) and dispatches nothing new for the cooldown", function()
    local COOLDOWN = 4000
    -- 429 for the first try and every retry (common.MAX_RETRIES = 3), then an answer
    local url = w:fake_llm({ turns = {
      { error = { status = 429, retry_after = 0, times = 4, message = "rate limited" },
        content = { { type = "text", text = "Done." } }, usage = { input_tokens = 5, output_tokens = 2 } },
    } }, "k")
    w.env.COGOS_THROTTLE_COOLDOWN_MS = tostring(COOLDOWN)
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    w:ok("cogos process create boss --executor lua --capability procs --content " .. sh([[
      assert(procs.spawn({ name = "asker", content = "Say hi." }))]]))
    local runs = finished_run(w, "asker")
    local throttled = runs[1]
    assert.equal("throttled", throttled.status, throttled.error)
    assert.match("HTTP 429", throttled.error)
    assert.equal(4, #w:llm_requests(), "the provider's retries were spent first")
    local asker, boss = proc(w, "asker"), proc(w, "boss")
    local exits = w:ok("cogos channel read " .. sh("spawn:" .. asker.id .. "\u{2192}" .. boss.id) .. " --json")
    assert.equal(1, #exits)
    assert.equal(3, exits[1].payload.exit_code)
    -- during the cooldown a message wakes the demo daemon, but no run starts
    w:ok([[cogos channel send demo:inbox --payload '{"text":"hi"}']])
    local sent = w:ok("cogos channel read demo:inbox --json")[1]
    assert.truthy(ms(sent.created_at) < ms(throttled.completed_at) + COOLDOWN - 2000, "sent inside the cooldown")
    core.sys.sleep_ms(500)
    assert.equal("runnable", proc(w, "demo").status)
    assert.same({}, w:ok("cogos run list --process demo --json"))
    -- after it, the daemon runs (the provider answers again)
    local demo = finished_run(w, "demo", COOLDOWN + 10000)[1]
    assert.equal("completed", demo.status, demo.error)
    assert.truthy(ms(demo.created_at) >= ms(throttled.completed_at) + COOLDOWN,
      "dispatched " .. (ms(demo.created_at) - ms(throttled.completed_at)) .. " ms after the throttled run")
  end)
end)
