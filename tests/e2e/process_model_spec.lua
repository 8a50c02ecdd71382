-- The process model end to end (reference §2, scenarios 23–34): lua parents
-- spawn children with delegated grants, wait for them (the parent's coroutine
-- resumes in the same run), kill trees; cron rules and ticks; epochs.

local harness = require "harness"
local core = require "cogos.core"

local sh = harness.shquote

-- A lua one_shot made through the CLI (the running node picks it up at once).
local function create_lua(w, name, content, caps)
  local parts = { "cogos process create", name, "--executor lua" }
  for _, c in ipairs(caps or {}) do parts[#parts + 1] = "--capability " .. sh(c) end
  parts[#parts + 1] = "--content " .. sh(content)
  return w:ok(table.concat(parts, " "))
end

local function finished_run(w, name, timeout_ms)
  return w.wait(function()
    local runs = w:ok("cogos run list --process " .. name .. " --json")
    return runs[1] and runs[1].status ~= "running" and runs
  end, timeout_ms or 15000, "a finished run of " .. name)
end

local function proc(w, name) return w:ok("cogos process get " .. name .. " --json") end

local function exits(w, child, parent)
  local msgs = w:ok("cogos channel read " .. sh("spawn:" .. child.id .. "\u{2192}" .. parent.id) .. " --json")
  local n = 0
  for _, m in ipairs(msgs) do
    if m.payload.type == "child:exited" then n = n + 1 end
  end
  return n, msgs
end

describe("the process model", function()
  local w
  before_each(function() w = harness.world({ COGOS_TICK_MS = "200", FAKE_KEY = "k" }) end)
  after_each(function() w:close() end)

  it("lets a lua parent spawn scoped children and wait for all of them in one run", function()
    w:boot()
    create_lua(w, "parent", [[
      local kids = {}
      for i = 1, 3 do
        -- a {type, scope} table, or a grant narrowed in the sandbox (its real type and scope)
        local grant = i < 3 and { type = "files", scope = { prefix = "kids/" .. i } }
          or files:scope({ prefix = "kids/" .. i })
        kids[i] = assert(procs.spawn({ name = "kid" .. i, executor = "lua",
          content = "assert(files.write('kids/" .. i .. ".txt', 'hi'))", capabilities = { files = grant } }))
      end
      local res = assert(procs.wait_all(kids))
      local n = 0
      for _, p in pairs(res.children) do
        n = n + 1
        assert(p.type == "child:exited" and p.exit_code == 0, json.encode(p))
      end
      print("children " .. n)
      assert(files.write("kids/summary.txt", "children " .. n))
    ]], { "procs", 'files:{"prefix":"kids/"}' })
    local runs = finished_run(w, "parent")
    assert.equal(1, #runs, "the parent resumed in its own run")
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.equal("children 3", w:ok("cogos file get kids/summary.txt"))
    local parent = proc(w, "parent")
    for i = 1, 3 do
      local kid = proc(w, "kid" .. i)
      assert.equal("completed", kid.status)
      assert.equal(parent.id, kid.parent_process)
      assert.equal("hi", w:ok("cogos file get kids/" .. i .. ".txt"))
      assert.same({ prefix = "kids/" .. i }, kid.capabilities[1].config)
      assert.equal(1, (exits(w, kid, parent)), "child:exited posted once for kid" .. i)
    end
  end)

  it("wires a spawn: typed private channels, cog guidance channels, tty", function()
    w:boot()
    create_lua(w, "guide", [[
      local h = assert(procs.spawn({ name = "typed", content = "print(1)", executor = "lua", mode = "daemon",
        tty = true, schema = { n = "number" } }))
      local ok, err = procs.send(h, { n = "x" })
      print("typed send:", ok, err)
      assert(procs.send(h, { n = 2 }))
      assert(procs.cog_send(h, { text = "hint" }))
      print("cog:", #assert(procs.cog_recv(h)))
    ]], { "procs" })
    local runs = finished_run(w, "guide")
    assert.equal("completed", runs[1].status, runs[1].error)
    local out = w:ok("cogos run show " .. runs[1].id .. " --json").result.output
    assert.match("typed send:%s+nil%s+.*does not match the schema", out)
    assert.match("cog:%s+0", out)
    assert.equal(true, proc(w, "typed").tty)
    local names = {}
    for _, c in ipairs(w:ok("cogos channel list --json")) do names[c.name] = c end
    assert.truthy(names["cog:from:typed"], "cog:from is made by its first use")
    assert.is_nil(names["cog:to:typed"], "cog:to is not used yet")
    assert.same({}, w:ok("cogos channel read cog:to:typed --json"))
    local code, _, err = w:run("cogos channel read cog:to:nobody")
    assert.equal(1, code)
    assert.match("unknown channel 'cog:to:nobody'", err)
    assert.equal("hint", w:ok("cogos channel read cog:from:typed --json")[1].payload.text)
  end)

  it("refuses a delegation wider than the parent's grants before writing anything", function()
    w:boot()
    create_lua(w, "scoped", [[
      local function try(name, caps)
        local h, err = procs.spawn({ name = name, executor = "lua", content = "", capabilities = caps })
        print(name .. ": " .. (h and ("ok " .. h.id) or err))
      end
      try("bad1", { files = true })
      try("bad2", { files = { type = "files", scope = { prefix = "b/" } } })
      try("bad3", { files = { type = "files", scope = { prefix = "a/x/", ops = { "read", "search" } } } })
      try("bad4", { ch = { type = "channels", scope = { names = { "x" } } } })
      try("good", { files = { type = "files", scope = { prefix = "a/sub/", ops = { "read" } } } })
    ]], { "procs", 'files:{"prefix":"a/","ops":["read","write"]}' })
    local runs = finished_run(w, "scoped")
    assert.equal("completed", runs[1].status, runs[1].error)
    local output = w:ok("cogos run show " .. runs[1].id .. " --json").result.output
    for i = 1, 4 do
      assert.match("bad" .. i .. ": spawn: Cannot delegate '%w+'", output)
      assert.equal(1, (w:run("cogos process get bad" .. i)), "no row for bad" .. i)
    end
    assert.match("unscoped", output)
    assert.match("holds no 'channels' grant", output)
    assert.match("good: ok", output)
    assert.same({ prefix = "a/sub/", ops = { "read" } }, proc(w, "good").capabilities[1].config)
  end)

  it("returns from wait_any at the first exit and kills a tree, sparing the detached", function()
    w:boot()
    w:ok("cogos process create init --mode daemon --executor lua")
    w:ok("cogos process create bystander --mode daemon --executor lua")
    create_lua(w, "boss", [[
      local slow = assert(procs.spawn({ name = "slow", mode = "daemon", executor = "lua", content = "" }))
      local mid = assert(procs.spawn({ name = "mid", executor = "lua", capabilities = { procs = true },
        content = "assert(procs.spawn({ name = 'grand', mode = 'daemon', executor = 'lua' }))"
          .. " assert(procs.spawn({ name = 'loose', mode = 'daemon', executor = 'lua', detached = true }))" }))
      local res = assert(procs.wait_any({ slow, mid }))
      print("mid exit " .. tostring(res.children[mid.id] and res.children[mid.id].exit_code))
      print("slow exit " .. tostring(res.children[slow.id]))
      local k = assert(procs.kill(mid))
      print("kill " .. k.previous_status .. " -> " .. k.new_status)
      print("slow is " .. procs.status(slow))
      local _, err = procs.kill(procs.get("bystander"))
      print("bystander: " .. tostring(err))
      local again = assert(procs.spawn({ name = "slow", mode = "daemon", executor = "lua", content = "-- v2" }))
      print("respawn keeps id " .. tostring(again.id == slow.id))
      local _, herr = procs.spawn({ name = "bystander", executor = "lua" })
      print("hijack: " .. tostring(herr))
    ]], { "procs" })
    local runs = finished_run(w, "boss")
    assert.equal(1, #runs)
    assert.equal("completed", runs[1].status, runs[1].error)
    local output = w:ok("cogos run show " .. runs[1].id .. " --json").result.output
    assert.match("mid exit 0", output)
    assert.match("slow exit nil", output)
    assert.match("kill completed %-> disabled", output)
    assert.match("slow is waiting", output)
    assert.match("bystander: kill: 'bystander' is not a descendant of this process", output)
    assert.match("respawn keeps id true", output)
    assert.match("hijack: spawn: a process named 'bystander' exists and is not a descendant", output)
    assert.equal("-- v2", proc(w, "slow").content)
    assert.equal("disabled", proc(w, "mid").status)
    assert.equal("disabled", proc(w, "grand").status, "the kill cascades")
    assert.equal("waiting", proc(w, "loose").status, "a detached child survives")
    assert.equal(proc(w, "init").id, proc(w, "loose").parent_process)
    assert.equal("waiting", proc(w, "bystander").status)
    assert.equal("waiting", proc(w, "slow").status)
    assert.equal(1, (exits(w, proc(w, "mid"), proc(w, "boss"))), "child:exited once, not again at the kill")
  end)

  it("resumes a lua parent parked in a wait across a node restart as a new run with event.wait_results", function()
    w:boot()
    create_lua(w, "waiter", [[
      if event.wait_results then
        local n = 0
        for _, p in pairs(event.wait_results.children) do n = n + 1; assert(p.type == "child:exited") end
        assert(files.write("r/resumed.txt", "resumed with " .. n))
        return
      end
      local slow = assert(procs.spawn({ name = "slow", mode = "daemon", executor = "lua", content = "" }))
      procs.wait(slow)
      error("a parked run does not continue after a restart")
    ]], { "procs", 'files:{"prefix":"r/"}' })
    w.wait(function() return w:run("cogos process get slow") == 0 end, 10000, "the child to exist")
    core.sys.sleep_ms(300) -- the parent parks right after the spawn
    w:ok("cogos stop")
    w:ok("cogos start")
    local runs = finished_run(w, "waiter")
    assert.equal("failed", runs[1].status, "the parked run was recovered")
    assert.equal("waiting", proc(w, "waiter").status, "it waits again for its child")
    w:ok("cogos process disable slow")
    assert.equal("resumed with 1", w.wait(function()
      local code, text = w:run("cogos file get r/resumed.txt")
      return code == 0 and text
    end, 10000, "the new run"))
    runs = w:ok("cogos run list --process waiter --json")
    assert.equal(2, #runs)
    assert.equal("completed", runs[1].status, runs[1].error)
  end)

  it("ends an llm run that waits suspended and resumes it as a new run with the results", function()
    local url = w:fake_llm({ turns = {
      { content = { { type = "tool_use", name = "run_code", input = { code = [[
          if event.wait_results then
            local n = 0
            for _, p in pairs(event.wait_results.children) do n = n + 1 end
            assert(files.write("r/llm.txt", "results " .. n))
          else
            local kid = assert(procs.spawn({ name = "llmkid", mode = "daemon", executor = "lua" }))
            print(procs.wait(kid))
          end]] } } }, usage = { input_tokens = 10, output_tokens = 10 } },
      { content = { { type = "text", text = "Done." } }, usage = { input_tokens = 10, output_tokens = 1 } },
    } })
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    w:ok("cogos process create planner --capability procs --capability " .. sh('files:{"prefix":"r/"}'))
    local runs = finished_run(w, "planner")
    assert.equal("suspended", runs[1].status, runs[1].error)
    assert.equal("waiting", proc(w, "planner").status)
    w:ok("cogos process disable llmkid")
    assert.equal("results 1", w.wait(function()
      local code, text = w:run("cogos file get r/llm.txt")
      return code == 0 and text
    end, 10000, "the resumed run"))
    runs = w.wait(function()
      local r = w:ok("cogos run list --process planner --json")
      return #r == 2 and r[1].status ~= "running" and r
    end, 10000, "the second run to end")
    assert.equal("completed", runs[1].status, runs[1].error)
  end)

  it("manages cron rules from the CLI and fires them once per minute from the tick", function()
    w:boot()
    local t0 = os.time()
    local row = w:ok([[cogos cron add '* * * * *' cron:test --payload '{"k":1}' --json]])
    assert.equal("* * * * *", row.expression)
    local function mine()
      for _, r in ipairs(w:ok("cogos cron list --json")) do
        if r.id == row.id then return r end
      end
    end
    assert.equal("cron:test", mine().channel_name)
    local msgs = w.wait(function()
      local code, text = w:run("cogos channel read cron:test --json")
      local m = code == 0 and core.json.decode(text)
      return m and #m > 0 and m
    end, 5000, "the cron rule to fire")
    assert.equal(1, msgs[1].payload.k)
    core.sys.sleep_ms(1000) -- several 200 ms ticks
    local minutes = os.time() // 60 - t0 // 60 + 1
    local n = #w:ok("cogos channel read cron:test --json")
    assert.truthy(n >= 1 and n <= minutes, n .. " firings in " .. minutes .. " minute(s)")
    local ticks = #w:ok("cogos channel read system:tick:minute --json")
    assert.truthy(ticks >= 1 and ticks <= minutes + 1, ticks .. " minute ticks")
    w:ok("cogos cron disable " .. row.id)
    assert.equal(false, mine().enabled)
    w:ok("cogos cron enable " .. row.id)
    assert.equal(true, mine().enabled)
    w:ok("cogos cron delete " .. row.id)
    assert.is_nil(mine())
    local code, _, err = w:run("cogos cron add 'not cron' x")
    assert.equal(1, code)
    assert.truthy(#err > 0)
    assert.equal(1, (w:run("cogos cron delete no-such-rule")))
    assert.equal(2, (w:run("cogos cron add onlyone")))
  end)

  it("reboots, reloads and wipes a stopped cogent, and refuses a running one", function()
    w:boot()
    local code, _, err = w:run("cogos reboot -y")
    assert.equal(1, code)
    assert.match("is running", err)
    w:ok("cogos stop")
    w.started = false
    code, _, err = w:run("cogos reboot")
    assert.equal(1, code)
    assert.match("pass %-y", err)
    w:ok("cogos file create mnt/disk/keep.txt kept")
    local before = proc(w, "demo")
    local r = w:ok("cogos reboot -y --json")
    assert.equal(1, r.epoch)
    local after = proc(w, "demo")
    assert.truthy(before.id ~= after.id, "a new epoch has its own processes")
    assert.equal("kept", w:ok("cogos file get mnt/disk/keep.txt"))
    w:ok("cogos reload -y")
    assert.equal("kept", w:ok("cogos file get mnt/disk/keep.txt"), "reload keeps mnt/disk/")
    assert.truthy(w:ok("cogos file get mnt/boot/demo/prompt.md") ~= "")
    w:ok("cogos reload --full -y")
    assert.equal(1, (w:run("cogos file get mnt/disk/keep.txt")), "a full reload starts from nothing")
    assert.equal("waiting", proc(w, "demo").status)
    w:ok("cogos wipe -y")
    assert.equal(1, (w:run("cogos process get demo")))
  end)
end)
