-- The stock image works end to end offline: init spawns the cogs of the
-- manifest; the fan-out app collects its children; the digest app answers its
-- cron; the supervisor answers with the scripted provider.

local harness = require "harness"
local core = require "cogos.core"

local function names(w)
  local set = {}
  for _, p in ipairs(w:ok("cogos process list --json")) do set[p.name] = p end
  return set
end

describe("the stock image", function()
  local w
  before_each(function()
    w = harness.world()
    w:boot()
  end)
  after_each(function() w:close() end)

  it("spawns every cog but the templates, once, after each boot", function()
    local procs = harness.wait(function()
      local set = names(w)
      return set.fanout and set.digest and set.supervisor and set
    end, 10000, "the cogs")
    assert.is_nil(procs.worker)
    assert.equal(procs.init.id, procs.fanout.parent_process)
    local first = procs.fanout.id
    w:ok("cogos stop")
    w:ok("cogos start")
    w:wait_runs(2, "init")
    assert.equal(first, names(w).fanout.id, "a reboot keeps the cog's identity")
    assert.equal("completed", w:runs("init")[1].status)
  end)

  it("fans out and collects", function()
    harness.wait(function() return names(w).fanout end, 10000, "the fanout cog")
    w:ok([[cogos channel send fanout:jobs --payload '{"job":"j1","items":["x","y","z"]}']])
    local done = harness.wait(function()
      local m = w:ok("cogos channel read fanout:done --json")
      return m[1]
    end, 10000, "fanout:done")
    assert.equal(3, done.payload.count)
    local summary = w:ok("cogos file get fanout/j1/summary.md")
    assert.match("1%. X\n2%. Y\n3%. Z", summary)
    assert.match("3 children exited", summary)
    local runs = w:wait_runs(1, "fanout")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.equal(1, #runs, "the children's exits do not wake the collector again")
  end)

  it("writes the digest when its cron fires", function()
    harness.wait(function() return names(w).digest end, 10000, "the digest cog")
    local db = assert(core.store.open(w.home .. "/cogtainers/dev/demo/cogos.db"))
    -- 2030-01-01 00:00 UTC: the hourly rule's minute, one the node's own clock can't have fired
    local fired = db:cron_fire(1893456000000)
    db:close()
    assert.truthy(fired.messages >= 1)
    w:ok("cogos process run digest") -- pokes the node; the tick is already a delivery
    local runs = w:wait_runs(1, "digest")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.match("reason: hourly", w:ok("cogos file get digest/latest.md"))
  end)

  it("the supervisor answers a request for help", function()
    harness.wait(function() return names(w).supervisor end, 10000, "the supervisor cog")
    w:ok([[cogos channel send supervisor:help --payload '{"text":"hello","reply_to":"demo:outbox"}']])
    local runs = w:wait_runs(1, "supervisor")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.equal("The supervisor received: hello", w:ok("cogos channel read demo:outbox --json")[1].payload.text)
  end)
end)
