-- The executor through the real binary: a run's events (`cogos run show --events`,
-- `cogos run tail`, live and after the end), timeouts bounded by max_duration_ms.

local harness = require "harness"
local core = require "cogos.core"

local TOOL_SCRIPT = {
  turns = {
    {
      delay_ms = 1500, -- long enough to start tailing a running run
      content = {
        { type = "text", text = "Acting." },
        { type = "tool_use", name = "run_code", input = {
          code = "assert(files.write('demo/last.md', event.payload.text)) print('wrote it')" } },
      },
      usage = { input_tokens = 100, output_tokens = 20 },
    },
    { content = { { type = "text", text = "Done." } }, usage = { input_tokens = 150, output_tokens = 5 } },
  },
}

local function running_run(w, name)
  return harness.wait(function()
    for _, r in ipairs(w:runs()) do
      if r.process_name == name then return r end
    end
  end, 10000, "a run of " .. name)
end

describe("run events", function()
  local w
  before_each(function() w = harness.world({ FAKE_KEY = "k" }) end)
  after_each(function() w:close() end)

  it("are followed live by `run tail` and listed by `run show --events`", function()
    local url = w:fake_llm(TOOL_SCRIPT, "k")
    w:boot("--llm-provider anthropic --llm-model claude-sonnet-4-5 --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    w:ok([[cogos channel send demo:inbox --payload '{"text":"tailed"}']])
    local run = running_run(w, "demo")
    assert.equal("running", run.status, "tail starts while the run is in flight")
    local t0 = core.sys.monotonic_ms()
    local code, out, err = w:run("cogos run tail " .. run.id)
    assert.equal(0, code, err)
    assert.truthy(core.sys.monotonic_ms() - t0 > 300, "tail waited for the run")
    assert.match("^%s*1  %S+  status +started\n", out)
    for _, kind in ipairs({ "token", "usage", "tool_call", "tool_result", "done" }) do
      assert.match("\n%s*%d+  %S+  " .. kind .. " ", out)
    end
    assert.match("run_code", out)
    assert.match("done +completed in %d+ ms %(250 in, 25 out, %$0%.001125%)\n$", out)
    -- the same stream afterwards, as text and as JSON
    local shown = w:ok("cogos run show " .. run.id .. " --events")
    assert.match("done +completed", shown)
    assert.match("tool_result run_code wrote it", shown)
    local j = w:ok("cogos run show " .. run.id .. " --events --json")
    assert.equal("status", j.events[1].type)
    assert.equal("done", j.events[#j.events].type)
    assert.equal(#j.events, j.events[#j.events].seq)
    assert.truthy(math.abs(j.cost_usd - 0.001125) < 1e-12, "cost from the price table")
    -- a finished run: tail prints everything and returns at once
    local code2, out2 = w:run("cogos run tail " .. run.id .. " --json")
    assert.equal(0, code2)
    local n = 0
    for line in out2:gmatch("[^\n]+") do n = n + 1 assert(core.json.decode(line)) end
    assert.equal(#j.events, n)
    -- stdout/stderr publishing
    local stdout = w:ok("cogos channel read process:demo:stdout --json")
    assert.equal(2, #stdout)
    assert.equal("Done.", w:ok("cogos channel read process:demo:stderr --json")[1].payload.text)
    assert.equal("process:run:success", w:ok("cogos channel read process:demo --json")[1].payload.type)
  end)

  it("`run tail` exits 1 for a run that failed, and a timeout ends the LLM call", function()
    local url = w:fake_llm({ turns = { { delay_ms = 5000, content = { { type = "text", text = "late" } } } } }, "k")
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    w:ok([[cogos process create broken --executor lua --content 'error("it broke")']])
    local broken = w:wait_runs(1, "broken")[1]
    local code, out, err = w:run("cogos run tail " .. broken.id)
    assert.equal(1, code)
    assert.match("error +.*it broke", out)
    assert.truthy(err:find("run " .. broken.id .. " ended failed: broken:1: it broke", 1, true), err)
    -- an LLM call that would answer after 5 s; the process may take 500 ms
    local t0 = core.sys.monotonic_ms()
    w:ok("cogos process create slow --max-duration-ms 500 --content 'Think.'")
    local slow = running_run(w, "slow")
    code, out, err = w:run("cogos run tail " .. slow.id)
    assert.equal(1, code)
    assert.truthy(core.sys.monotonic_ms() - t0 < 4000, "the call was cut at the deadline")
    assert.match("interrupt +timeout", out)
    assert.match("ended timeout", err)
    local r = w:ok("cogos run show " .. slow.id .. " --json")
    assert.equal("timeout", r.status)
    local code3, _, err3 = w:run("cogos run tail nope")
    assert.equal(1, code3)
    assert.match("unknown run 'nope'", err3)
  end)
end)
