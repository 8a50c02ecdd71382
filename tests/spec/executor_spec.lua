-- The executor in-process: a fresh store per test, scripted or fake providers,
-- runs dispatched by hand (cogos-spec §5, scenarios 36-43; events, budgets,
-- timeouts, suspended runs).

local core = require "cogos.core"
local executor = require "cogos.executor"
local llm = require "cogos.llm"
local caps = require "cogos.caps"
local log = require "cogos.log"
local session = require "cogos.session"
local cost = require "cogos.cost"
local events = require "cogos.events"

local json = core.json

local quiet = function() end

local W = {}
W.__index = W

local function world()
  local dir = io.popen("mktemp -d /tmp/cogos-exec-spec.XXXXXX"):read("l")
  local db = assert(core.store.open(dir .. "/cogos.db"))
  db:migrate()
  assert(db:capability_upsert({ name = "files", handler = "files", description = "Versioned files." }))
  local w = setmetatable({ dir = dir, db = db, requests = {} }, W)
  w.exec = executor.new({ db = db, llm = { provider = "scripted" }, node_id = "spec", cogent_dir = dir })
  return w
end

function W:close()
  self.db:close()
  core.sys.rm_rf(self.dir)
end

-- A one-shot process (runnable), its grants and, for the scripted provider, its script.
function W:process(name, t)
  t = t or {}
  local script = t.script
  t.script, t.grants = nil, t.grants
  local grants = t.grants or { { capability = "files", name = "files", config = {} } }
  t.grants = nil
  local row = { name = name, mode = t.mode or "one_shot", status = "runnable", content = t.content or "" }
  for k, v in pairs(t) do row[k] = v end
  if script then
    row.metadata = row.metadata or {}
    row.metadata.script = "scripts/" .. name .. ".json"
    assert(self.db:file_write(row.metadata.script, assert(json.encode({ turns = script }))))
  end
  local p = assert(self.db:process_upsert(row))
  for _, g in ipairs(grants) do assert(self.db:grant_add(p.id, g)) end
  return p
end

-- Dispatches the process and runs it to its end; returns the finished run row.
function W:run(p)
  local run = assert(self.db:dispatch(p.id, "spec"))
  self.exec:run(run)
  return assert(self.db:run_get(run.id)), run
end

-- Replaces the provider with fn(request, opts, n) -> response | nil, err; records requests.
function W:fake(fn, model)
  local w = self
  llm.client = function()
    return { model = model or "fake-model", config = {}, complete = function(prov, request, opts)
      w.requests[#w.requests + 1] = json.decode(json.encode(request))
      w.opts = opts
      w.config = prov.config
      return fn(request, opts, #w.requests)
    end }
  end
end

local function text_turn(text, usage)
  return { content = { { type = "text", text = text } }, stop_reason = "end_turn",
    usage = usage or { input_tokens = 10, output_tokens = 5 } }
end

local function tool_turn(name, input, usage)
  return { content = { { type = "tool_use", id = "t1", name = name, input = input } }, stop_reason = "tool_use",
    usage = usage or { input_tokens = 10, output_tokens = 5 } }
end

local function texts(db, channel)
  local out = {}
  local ok = db:channel_get(channel)
  if not ok then return out end
  local rows = db:messages(channel, { limit = 100 })
  for i = #rows, 1, -1 do out[#out + 1] = rows[i].payload.text end
  return out
end

local function types_of(evs)
  local t = {}
  for i, e in ipairs(evs) do t[i] = e.type end
  return table.concat(t, " ")
end

local saved = { client = llm.client, info = log.info, grants = caps.grants }

describe("executor", function()
  local w
  before_each(function()
    log.info = quiet
    w = world()
  end)
  after_each(function()
    llm.client, log.info, caps.grants = saved.client, saved.info, saved.grants
    w:close()
  end)

  it("expands readable @{} references into the system prompt (36)", function()
    assert(w.db:file_write("docs/k", "K body @{docs/inner}"))
    assert(w.db:file_write("docs/inner", "inner body"))
    assert(w.db:file_write("secret/s", "hidden"))
    w:fake(function() return text_turn("ok") end)
    local p = w:process("p36", { content = "Start @{docs/k} and @{secret/s}",
      grants = { { capability = "files", name = "files", config = { prefix = "docs/", ops = { "read" } } } } })
    local r = w:run(p)
    assert.equal("completed", r.status, r.error)
    local system = w.requests[1].system
    assert.match("%-%-%- docs/k %-%-%-\nK body %-%-%- docs/inner %-%-%-\ninner body", system)
    assert.match("@{secret/s}", system)
    assert.match("\n\n%-%-%- Capabilities %-%-%-\n\nfiles:", system)
  end)

  it("answers invalid tool names and keeps the transcript valid (37)", function()
    w:fake(function(_, _, n)
      if n == 1 then return tool_turn("bash", { cmd = "ls" }) end
      return text_turn("done")
    end)
    local r = w:run(w:process("p37"))
    assert.equal("completed", r.status, r.error)
    local msgs = w.requests[2].messages
    local call = msgs[2].content[1]
    assert.equal("search", call.name)
    assert.equal("invalid tool placeholder for bash", call.input.query)
    assert.is_nil(call.invalid)
    local result = msgs[3].content[1]
    assert.equal(call.id, result.tool_use_id)
    assert.equal(true, result.is_error)
    assert.equal("Error: invalid tool name 'bash'. Valid tools: run_code, search.", result.content)
    local evs = w.db:events(r.id)
    assert.match("tool_call", types_of(evs))
  end)

  it("spills long tool outputs to run_output/<run>/<turn>-<idx> (38)", function()
    local p = w:process("p38", { script = {
      { content = { { type = "tool_use", name = "run_code", input = { code = 'print(string.rep("x", 10000))' } } } },
      { content = { { type = "text", text = "seen" } } },
    } })
    local r = w:run(p)
    assert.equal("completed", r.status, r.error)
    local f = assert(w.db:file_get("run_output/" .. r.id .. "/1-0"))
    assert.equal(10000, #f.content:gsub("\n$", ""))
    -- what the model saw: the preview and the pointer
    local evs = w.db:events(r.id)
    local result
    for _, e in ipairs(evs) do if e.type == "tool_result" then result = e.data.output end end
    assert.truthy(#result < 1400, #result)
    assert.match("^" .. string.rep("x", 1000) .. "\n%.%.%. %[10000 chars total", result)
    assert.truthy(result:find('files.read("run_output/' .. r.id .. '/1-0")', 1, true), result)
    assert.match("@{run_output/", result)
  end)

  it("resumes a session and starts fresh when the prompt changes (39)", function()
    w:fake(function(_, _, n) return text_turn("answer " .. n) end)
    local p = w:process("p39", { mode = "daemon", content = "Be brief.",
      metadata = { session = { resume = true, scope = "process" } } })
    local r1 = w:run(p)
    assert.equal("completed", r1.status, r1.error)
    assert.equal(false, r1.snapshot.resumed)
    assert.equal("missing_checkpoint", r1.snapshot.resume_skipped_reason)
    assert(w.db:process_set_status(p.id, "runnable"))
    local r2 = w:run(p)
    assert.equal("completed", r2.status, r2.error)
    local msgs = w.requests[2].messages
    assert.equal(3, #msgs)
    assert.equal("user", msgs[1].role)
    assert.equal("answer 1", msgs[2].content[1].text)
    assert.equal("user", msgs[3].role)
    assert.equal(true, r2.snapshot.resumed)
    assert.equal(r1.id, r2.snapshot.resumed_from_run_id)
    local manifest = json.decode(assert(w.db:file_get(r2.snapshot.manifest_key)).content)
    assert.equal(r2.id, manifest.latest_run_id)
    -- a changed prompt: fresh transcript
    p = assert(w.db:process_upsert({ name = "p39", content = "Be verbose." }))
    assert(w.db:process_set_status(p.id, "runnable"))
    local r3 = w:run(p)
    assert.equal(false, r3.snapshot.resumed)
    assert.equal("prompt_fingerprint_changed", r3.snapshot.resume_skipped_reason)
    assert.equal(1, #w.requests[3].messages)
    -- one checkpoint version per turn, not per step
    assert.equal(3, #w.db:file_history(r3.snapshot.checkpoint_key))
  end)

  it("says why a session is not resumed", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", session.sha256("abc"))
    w:fake(function() return text_turn("x") end)
    local keyed = w:run(w:process("k", { metadata = { session = { resume = true, scope = "keyed" } } }))
    assert.equal("unsupported_session_scope:keyed", keyed.snapshot.resume_skipped_reason)
    assert.match("^keyed%-%x+$", keyed.snapshot.session_path)
    local none = w:run(w:process("none"))
    assert.is_nil(none.snapshot)
  end)

  it("publishes stdout and stderr, and copies them to io:* with tty (40)", function()
    local script = {
      { content = { { type = "text", text = "let me look" },
        { type = "tool_use", name = "run_code", input = { code = 'print("from code")' } } } },
      { content = { { type = "text", text = "all done" } } },
    }
    local r = w:run(w:process("p40", { script = script }))
    assert.equal("completed", r.status, r.error)
    assert.same({ "let me look", "from code" }, texts(w.db, "process:p40:stdout"))
    assert.same({ "let me look", "from code" }, texts(w.db, "io:stdout:p40"))
    assert.same({ "all done" }, texts(w.db, "process:p40:stderr"))
    assert.same({}, texts(w.db, "io:stdout"))
    w:run(w:process("tty40", { script = script, tty = true }))
    assert.same({ "let me look", "from code" }, texts(w.db, "io:stdout"))
    assert.same({ "all done" }, texts(w.db, "io:stderr"))
    -- channels deleted behind the executor's back (a wipe) are made again
    assert(w.db:wipe())
    assert(w.db:capability_upsert({ name = "files", handler = "files", description = "Versioned files." }))
    w:run(w:process("p40", { script = script }))
    assert.same({ "let me look", "from code" }, texts(w.db, "process:p40:stdout"))
  end)

  it("runs lua processes with event (41), at no cost", function()
    local p = w:process("p41", { executor = "lua", mode = "daemon", content = "print(event.payload.x)" })
    assert(w.db:channel_create("in41"))
    assert(w.db:handler_add(p.id, "in41"))
    assert(w.db:process_set_status(p.id, "waiting"))
    assert(w.db:send("in41", { x = 1 }))
    local r = w:run(p)
    assert.equal("completed", r.status, r.error)
    assert.equal("1", r.result.output)
    assert.equal(0, r.tokens_in)
    assert.equal("lua", r.model_version)
    assert.equal(0, r.cost_usd)
    local life = w.db:messages("process:p41")
    assert.equal("process:run:success", life[1].payload.type)
    assert.equal(r.id, life[1].payload.run_id)
  end)

  it("fails on context overflow with a critical alert (43)", function()
    w:fake(function() return nil, "anthropic: HTTP 400: prompt is too long: 250000 tokens > 200000 maximum" end)
    local p = w:process("p43")
    local r = w:run(p)
    assert.equal("failed", r.status)
    assert.match("prompt is too long", r.error)
    local alerts = w.db:alert_list({ alert_type = "process:context_overflow" })
    assert.equal(1, #alerts)
    assert.equal("critical", alerts[1].severity)
    assert.equal(r.id, alerts[1].metadata.run_id)
    assert.equal("fake-model", alerts[1].metadata.model)
    assert.equal(0, #w.db:alert_list({ alert_type = "process:run:failed" }))
    local life = w.db:messages("process:p43")
    assert.equal("process:run:failed", life[1].payload.type)
    assert.match("too long", life[1].payload.error)
    assert.truthy(executor.is_context_overflow("anthropic: HTTP 400: input is too long for the model"))
    assert.falsy(executor.is_context_overflow("HTTP 401: bad key"))
  end)

  it("ends throttled when the provider rate-limits it, and holds new dispatches (20, 24)", function()
    w:fake(function() return nil, "bedrock: HTTP 429: ThrottlingException: Too many tokens, please wait" end)
    local parent = w.db:process_upsert({ name = "boss", mode = "daemon" })
    local r = w:run(w:process("t24", { parent_process = parent.id }))
    assert.equal("throttled", r.status)
    assert.match("ThrottlingException", r.error)
    assert.equal("disabled", w.db:process_get("t24").status)
    local exit = w.db:messages("spawn:" .. r.process .. "\u{2192}" .. parent.id)[1].payload
    assert.equal(3, exit.exit_code)
    assert.equal("throttled", w.db:messages("process:t24")[1].payload.status)
    w:process("next")
    assert.same({}, w.db:runnable(200), "the cooldown holds new dispatches")
    -- a provider error that is not a rate limit fails as before
    w:fake(function() return nil, "openai: HTTP 401: bad key (after anthropic: HTTP 429: slow down)" end)
    assert.equal("failed", w:run(w.db:process_get("next")).status)
  end)

  it("raises a warning alert for an ordinary failure", function()
    local r = w:run(w:process("bad", { executor = "lua", content = 'error("boom")' }))
    assert.equal("failed", r.status)
    local a = w.db:alert_list({ alert_type = "process:run:failed" })
    assert.equal(1, #a)
    assert.equal("warning", a[1].severity)
    assert.match("%[bad%] error: .*boom", texts(w.db, "process:bad:stderr")[1])
  end)

  it("writes the canonical events, with streamed text batched", function()
    w:fake(function(_, opts, n)
      if n == 1 then
        for _ = 1, 1000 do opts.on_text("a") end
        local r = tool_turn("run_code", { code = "print(1)" })
        table.insert(r.content, 1, { type = "text", text = string.rep("a", 1000) })
        return r
      end
      return text_turn("bye")
    end)
    local r = w:run(w:process("ev"))
    local evs = w.db:events(r.id)
    local kinds = types_of(evs)
    assert.match("^status token.* usage tool_call tool_result usage done$", kinds:gsub("token token", "token"))
    local tokens, text = 0, {}
    for _, e in ipairs(evs) do
      if e.type == "token" then tokens = tokens + 1 text[#text + 1] = e.data.text end
    end
    assert.equal(1000, #table.concat(text))
    assert.truthy(tokens <= 6, tokens .. " token rows")
    local done = evs[#evs]
    assert.equal("completed", done.data.status)
    assert.equal(r.tokens_in, done.data.tokens_in)
    for i, e in ipairs(evs) do assert.equal(i, e.seq) end
    -- follow() of an ended run returns at once with its status
    local seen = 0
    assert.equal("completed", events.follow(w.db, r.id, function() seen = seen + 1 end))
    assert.equal(#evs, seen)
    assert.match("tool_call", events.format(evs[#evs - 3]))
  end)

  it("shows a long tool call in the events while it runs", function()
    w:fake(function(_, _, n)
      if n == 1 then
        return tool_turn("run_code", { code = "local t = os.clock() while os.clock() - t < 0.4 do end print('spun')" })
      end
      return text_turn("ok")
    end)
    local p = w:process("live")
    local run = assert(w.db:dispatch(p.id, "spec"))
    core.sched.spawn(function()
      w.exec:run(run)
      core.loop.stop()
    end)
    core.loop.run()
    local at = {}
    for _, e in ipairs(w.db:events(run.id)) do at[e.type] = at[e.type] or e.created_at end
    local function ms(ts)
      local h, m, sec = ts:match("T(%d+):(%d+):([%d.]+)Z$")
      return ((tonumber(h) * 60 + tonumber(m)) * 60 + tonumber(sec)) * 1000
    end
    assert.equal("completed", w.db:run_get(run.id).status)
    -- written by the timer while the code spun, not with its result
    assert.truthy(ms(at.tool_result) - ms(at.tool_call) >= 150, at.tool_call .. " " .. at.tool_result)
  end)

  it("records cost from the price table", function()
    w:fake(function() return text_turn("hi", { input_tokens = 1000000, output_tokens = 100000 }) end,
      "claude-sonnet-4-5")
    local r = w:run(w:process("c"))
    assert.truthy(math.abs(r.cost_usd - 4.5) < 1e-9, r.cost_usd)
    assert.equal(0, cost.estimate("scripted", 1000, 1000))
    assert.equal(0, cost.estimate("some-unknown-model", 1000, 1000))
    assert.truthy(math.abs(cost.estimate("gpt-4o-mini", 1e6, 0) - 0.15) < 1e-12)
    llm.client = saved.client
    local demo = w:run(w:process("scripted", { script = { { content = { { type = "text", text = "x" } } } } }))
    assert.equal(0, demo.cost_usd)
    assert.equal("scripted", demo.model_version)
  end)

  it("stops at a budget: the run fails and a critical alert is raised", function()
    w:fake(function(_, _, n)
      if n % 2 == 1 then
        return tool_turn("run_code", { code = "print(1)" }, { input_tokens = 600, output_tokens = 10 })
      end
      return text_turn("end")
    end)
    local p = w:process("b", { mode = "daemon" })
    assert(w.db:budget_set({ scope = "process:" .. p.id, period = "day", max_tokens = 500 }))
    local r = w:run(p)
    -- the first turn went over; the second never started
    assert.equal("failed", r.status)
    assert.match("^budget exceeded: process budget %(day%) spent 610 of 500 tokens", r.error)
    assert.equal(1, #w.requests)
    local a = w.db:alert_list({ alert_type = "budget:exceeded" })
    assert.equal(1, #a)
    assert.equal("critical", a[1].severity)
    -- the next run does not reach the LLM at all; a cogent budget stops others too
    assert(w.db:process_set_status(p.id, "runnable"))
    assert.equal("failed", w:run(p).status)
    assert.equal(1, #w.requests)
    assert(w.db:budget_set({ scope = "cogent", period = "total", max_cost_usd = 0 }))
    local other = w:run(w:process("other"))
    assert.match("budget exceeded: cogent budget %(total%) spent %$0%.0000 of %$0%.0000", other.error)
  end)

  it("ends with status timeout when max_duration_ms passes", function()
    local spin = w:run(w:process("spin", { executor = "lua", max_duration_ms = 100,
      content = "local t = os.time() while true do t = t + 1 end" }))
    assert.truthy(spin.status == "timeout" or spin.error:find("instruction budget"), spin.error)
    -- an LLM run: run_code spinning past the deadline
    w:fake(function() return tool_turn("run_code", { code = "while true do end" }) end)
    local r = w:run(w:process("slow", { max_duration_ms = 150 }))
    assert.equal("timeout", r.status)
    assert.match("deadline exceeded", r.error)
    assert.truthy(w.opts.timeout_ms <= 150 and w.config.timeout_ms <= 150, "LLM calls bounded by the time left")
    local evs = w.db:events(r.id)
    assert.match("interrupt error done$", types_of(evs))
    -- an LLM call that outlives the run
    w:fake(function()
      core.sys.sleep_ms(80)
      return nil, "timeout was reached"
    end)
    local r2 = w:run(w:process("slowllm", { max_duration_ms = 50 }))
    assert.equal("timeout", r2.status)
    assert.equal("process:run:failed", w.db:messages("process:slowllm")[1].payload.type)
  end)

  it("ends an llm run suspended when a capability asks to wait", function()
    local seen
    caps.grants = function(db, process)
      local list = saved.grants(db, process)
      list[#list + 1] = { name = "waiter", type = "waiter", config = {}, description = "waits",
        module = { name = "waiter", methods = { wait = { op = "wait", doc = "wait()", fn = function(ctx)
          seen = ctx
          ctx.run_state.suspend = { reason = "children" }
          return true
        end } } } }
      return list
    end
    w:fake(function()
      local t = tool_turn("run_code", { code = "waiter.wait()" })
      t.content[2] = { type = "tool_use", id = "t2", name = "run_code", input = { code = "print(2)" } }
      return t
    end)
    local p = w:process("sus", { mode = "daemon" })
    local r = w:run(p)
    assert.equal("suspended", r.status, r.error)
    assert.is_nil(r.error)
    assert.equal(1, #w.requests)
    assert.equal("waiting", w.db:process_get(p.id).status)
    assert.equal(w.dir, seen.cogent_dir)
    assert.equal("llm", seen.executor)
    assert.equal(r.id, seen.run.id)
    assert.match("interrupt done$", types_of(w.db:events(r.id)))
    assert.same({}, texts(w.db, "process:sus"))
  end)

  it("puts cog messages and the waited-for children's results in the user message", function()
    w:fake(function() return text_turn("ok") end)
    local p = w:process("cogp", { mode = "daemon" })
    assert(w.db:channel_create("cog:from:cogp"))
    assert(w.db:send("cog:from:cogp", { text = "first" }))
    assert(w.db:send("cog:from:cogp", { n = 2 }))
    assert(w.db:channel_create("kids"))
    assert(w.db:handler_add(p.id, "kids"))
    assert(w.db:process_set_status(p.id, "waiting"))
    assert(w.db:send("kids", { type = "child:exited", exit_code = 0 }))
    -- a store with wait results (the scheduler's method), seen through a proxy
    local real = w.db
    local proxy = setmetatable({ wait_results = function() return { children = { c1 = { exit_code = 0 } } } end },
      { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
    w.exec.db = proxy
    local r = w:run(p)
    w.exec.db = real
    assert.equal("completed", r.status, r.error)
    local user = w.requests[1].messages[1].content[1].text
    assert.match('^Message payload: {\n  "exit_code": 0,\n  "type": "child:exited"\n}', user)
    assert.match("%-%-%- Results of the children you waited for %-%-%-\n{", user)
    assert.match('"c1"', user)
    assert.match("%-%-%- Messages from your cog %-%-%-\nfirst\n{\"n\":2}$", user)
  end)
end)
