-- A running node: the stock image's demo daemon wakes on a message, thinks
-- (scripted provider), acts through run_code, and everything is recorded.

local harness = require "harness"

describe("the node", function()
  local w
  before_each(function() w = harness.world() end)
  after_each(function() w:close() end)

  it("runs the demo daemon end to end with the scripted provider", function()
    w:boot()
    local st = w:ok("cogos status --json")
    assert.equal(true, st.running)
    local sent = w:ok([[cogos channel send demo:inbox --payload '{"text":"hello"}' --json]])
    assert.equal(1, sent.deliveries)
    local runs = w:wait_runs(1, "demo")
    local run = runs[1]
    assert.equal("completed", run.status, run.error)
    assert.truthy(run.tokens_in > 0 and run.tokens_out > 0, "tokens recorded")
    assert.truthy(math.type(run.duration_ms) == "integer")
    assert.equal("hello", w:ok("cogos file get demo/last.md"))
    local replies = w:ok("cogos channel read demo:outbox --json")
    assert.equal(1, #replies)
    assert.equal("echo: hello", replies[1].payload.text)
    assert.equal(1, replies[1].payload.version)
    local shown = w:ok("cogos run show " .. run.id .. " --json")
    assert.equal(run.id, shown.id)
    -- a second message makes a second run and a second version
    w:ok([[cogos channel send demo:inbox --payload '{"text":"again"}']])
    w:wait_runs(2, "demo")
    assert.equal(2, #w:ok("cogos file history demo/last.md --json"))
    assert.equal("waiting", w:ok("cogos process get demo --json").status)
  end)

  it("refuses a second start of a running cogent", function()
    w:boot()
    local code, _, err = w:run("cogos start")
    assert.equal(1, code)
    assert.match("already running", err)
    w:ok("cogos stop")
    w.started = false
    local code2, _, err2 = w:run("cogos stop")
    assert.equal(1, code2)
    assert.match("not running", err2)
  end)

  it("runs lua processes with their grants and scopes", function()
    w:boot()
    w:ok([[cogos process create writer --executor lua --capability 'files:{"prefix":"out/"}']]
      .. [[ --content 'assert(files.write("out/x.txt", "from lua"));]]
      .. [[ print(select(2, pcall(files.write, "etc/x", "no")))']])
    local runs = w:wait_runs(1, "writer")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.equal("from lua", w:ok("cogos file get out/x.txt"))
    assert.match("permission denied", w:ok("cogos run show " .. runs[1].id .. " --json").result.output)
    assert.equal("completed", w:ok("cogos process get writer --json").status)
    local code = w:run("cogos file get etc/x")
    assert.equal(1, code)
  end)

  it("keeps serving while a runaway process spins, then stops it", function()
    w:boot()
    w:ok("cogos process create spin --executor lua --max-duration-ms 1500 --content 'while true do end'")
    w.wait(function()
      for _, r in ipairs(w:runs()) do if r.process_name == "spin" then return true end end
    end, 5000, "the spinning run to start")
    w:ok([[cogos channel send demo:inbox --payload '{"text":"meanwhile"}']])
    local demo = w.wait(function()
      for _, r in ipairs(w:runs()) do
        if r.process_name == "demo" and r.status ~= "running" then return r end
      end
    end, 5000, "the demo run to finish while spin runs")
    assert.equal("completed", demo.status, demo.error)
    local spin = w.wait(function()
      for _, r in ipairs(w:runs()) do
        if r.process_name == "spin" and r.status ~= "running" then return r end
      end
    end, 10000, "the spinning run to be stopped")
    assert.truthy(spin.status == "failed" or spin.status == "timeout", spin.status) -- budget or wall clock
    assert.truthy(spin.error:find("instruction budget exhausted", 1, true)
      or spin.error:find("deadline exceeded", 1, true), spin.error)
  end)

  it("records a failing run with its error", function()
    w:boot()
    w:ok([[cogos process create broken --executor lua --content 'error("it broke")']])
    local runs = w:wait_runs(1, "broken")
    assert.equal("failed", runs[1].status)
    assert.match("it broke", runs[1].error)
  end)
end)

describe("the rest of the CLI on a booted cogent", function()
  local w
  before_each(function() w = harness.world() end)
  after_each(function() w:close() end)

  it("lists capabilities, loads folders, runs, disables, removes handlers, restarts clean", function()
    w:boot()
    local caps = w:ok("cogos capability list --json")
    local image_caps = harness.slurp(require("cogos.core").root .. "/images/cogos/init/capabilities.lua")
    assert.equal(select(2, image_caps:gsub("\nadd_capability%(", "")), #caps, "every type the image declares")
    local files_cap = w:ok("cogos capability get files --json")
    assert.truthy(files_cap.methods.read and files_cap.methods.write and files_cap.methods.search)
    local code, _, err = w:run("cogos capability get nope")
    assert.equal(1, code)
    assert.match("unknown capability 'nope'", err)
    -- file load: a folder of files, then again unchanged
    assert(require("cogos.core").sys.mkdir_p(w.cwd .. "/docs/sub"))
    local f = assert(io.open(w.cwd .. "/docs/a.md", "w")); f:write("A"); f:close()
    f = assert(io.open(w.cwd .. "/docs/sub/b.md", "w")); f:write("B"); f:close()
    local counts = w:ok("cogos file load docs --prefix kb/ --json")
    assert.equal(2, counts.created)
    assert.equal(2, w:ok("cogos file load docs --prefix kb/ --json").unchanged)
    assert.equal("B", w:ok("cogos file get kb/sub/b.md"))
    assert.equal(2, #w:ok("cogos file list --prefix kb/ --json"))
    -- a one-shot runs once; `process run` runs it again
    w:ok("cogos process create once --executor lua --capability files"
      .. [[ --content 'files.write("once/n", tostring(os.time()))']])
    w:wait_runs(1, "once")
    assert.equal("completed", w:ok("cogos process get once --json").status)
    w:ok("cogos process run once")
    w:wait_runs(2, "once")
    -- disable: the demo daemon no longer wakes
    w:ok("cogos process disable demo")
    assert.equal("disabled", w:ok("cogos process get demo --json").status)
    w:ok([[cogos channel send demo:inbox --payload '{"text":"ignored"}']])
    -- handler remove
    local hs = w:ok("cogos handler list --process demo --json")
    for _, h in ipairs(hs) do w:ok("cogos handler remove " .. h.id) end
    assert.equal(0, #w:ok("cogos handler list --process demo --json"))
    code, _, err = w:run("cogos handler remove nope")
    assert.equal(1, code)
    assert.match("unknown handler", err)
    -- restart with --clean wipes everything and boots the image again
    w:ok("cogos stop")
    code, _, err = w:run("cogos start nosuchimage")
    assert.equal(1, code)
    assert.match("unknown image 'nosuchimage'", err)
    w:ok("cogos start --clean")
    assert.equal(0, #w:ok("cogos file list --prefix kb/ --json"))
    assert.equal("waiting", w:ok("cogos process get demo --json").status)
    assert.equal(0, #w:runs("demo"))
  end)
end)
