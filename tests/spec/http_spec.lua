-- core.http and the HTTP providers against tests/e2e/fake_llm.js (a real server on
-- loopback speaking both wire formats): the blocking path (the CLI) and the yield
-- path (sched coroutines on the loop), errors, retries, streaming.
local core = require("cogos.core")
local anthropic = require("cogos.providers.anthropic")
local openai = require("cogos.providers.openai")
local bedrock = require("cogos.providers.bedrock")

local json = core.json
local A = json.array

local KEY = "sk-test-key-0123456789"
local servers = {}

local function write_file(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- Starts a fake server on a free port; returns {pid, url, log, pipe}.
local function start_server(script, key)
  local path = os.tmpname()
  write_file(path, assert(json.encode(script)))
  local log = path .. ".log"
  local cmd = string.format("echo $$; exec node %s/tests/e2e/fake_llm.js --script %s --port 0 --log %s%s",
                            core.root, path, log, key and (" --key " .. key) or "")
  local pipe = assert(io.popen(cmd, "r"))
  local pid = tonumber(pipe:read("l"))
  local line = pipe:read("l")
  local port = line and line:match("^listening (%d+)$")
  assert(pid and port, "fake_llm.js did not start (is node installed?): " .. tostring(line))
  local s = { pid = pid, url = "http://127.0.0.1:" .. port, log = log, script = path, pipe = pipe }
  servers[#servers + 1] = s
  return s
end

local function stop_servers()
  for _, s in ipairs(servers) do
    core.sys.kill(s.pid)
    s.pipe:close()
    os.remove(s.script)
    os.remove(s.log)
  end
  servers = {}
end

-- The requests a server received, decoded from its log.
local function requests(s)
  local out = {}
  local f = io.open(s.log, "r")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = assert(json.decode(line)) end
  f:close()
  return out
end

local function read_all(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local TOOLS = A({ { name = "run_code", description = "Run Lua code",
  input_schema = { type = "object", properties = { code = { type = "string" } }, required = A({ "code" }) } } })

local SCRIPT = { turns = A({
  { content = A({ { type = "text", text = "Let me look." },
                  { type = "tool_use", name = "run_code", input = { code = "print(1+1)" } } }) },
  { content = A({ { type = "text", text = "The answer is 2." } }), usage = { input_tokens = 50, output_tokens = 6 } },
}) }

local function first_request()
  return { system = "Be brief.", tools = TOOLS,
           messages = A({ { role = "user", content = A({ { type = "text", text = "What is 1+1?" } }) } }) }
end

-- Checks turn 1, appends it and a tool result, and returns the request for turn 2.
local function check_turn1(req, r)
  assert.equal("tool_use", r.stop_reason)
  assert.equal(2, #r.content)
  assert.same({ type = "text", text = "Let me look." }, r.content[1])
  assert.equal("tool_use", r.content[2].type)
  assert.equal("toolu_scripted_1_2", r.content[2].id)
  assert.equal("run_code", r.content[2].name)
  assert.same({ code = "print(1+1)" }, r.content[2].input)
  assert(r.usage.input_tokens > 0 and r.usage.output_tokens > 0, "usage recorded")
  req.messages[#req.messages + 1] = { role = "assistant", content = r.content }
  req.messages[#req.messages + 1] = { role = "user", content = A({
    { type = "tool_result", tool_use_id = r.content[2].id, content = "2" } }) }
  return req
end

local function check_turn2(r)
  assert.equal("end_turn", r.stop_reason)
  assert.same({ { type = "text", text = "The answer is 2." } }, r.content)
  assert.same({ input_tokens = 50, output_tokens = 6 }, r.usage)
end

-- Runs fns as sched coroutines until the loop is idle; returns their outcomes.
local function run_async(fns)
  local results = {}
  for i, fn in ipairs(fns) do
    core.sched.spawn(function()
      results[i] = { xpcall(fn, debug.traceback) }
    end)
  end
  core.loop.run()
  for i = 1, #fns do
    local r = results[i]
    assert(r, "coroutine " .. i .. " never finished")
    assert(r[1], r[2])
  end
  return results
end

local server = start_server(SCRIPT, KEY)

describe("core.http blocking", function()
  it("returns status, lower-cased headers and body", function()
    local res = assert(core.http.request{ method = "POST", url = server.url .. "/nowhere",
      headers = { ["Content-Type"] = "application/json" }, body = "{}" })
    assert.equal(404, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.match("no route", res.body)
  end)

  it("streams the body to on_data", function()
    local chunks = {}
    local res = assert(core.http.request{ url = server.url .. "/v1/messages", headers = { ["x-api-key"] = KEY },
      body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}',
      on_data = function(c) chunks[#chunks + 1] = c end })
    assert.equal(200, res.status)
    assert.equal("", res.body)
    assert.match("event: message_stop", table.concat(chunks))
  end)

  it("reports a refused connection without the query string", function()
    local res, err = core.http.request{ url = "http://127.0.0.1:1/v1/x?key=" .. KEY }
    assert.is_nil(res)
    assert.match("^http: .*%(http://127%.0%.0%.1:1/v1/x%)$", err)
    assert.falsy(err:find(KEY, 1, true))
  end)

  it("reports an error raised by on_data", function()
    local res, err = core.http.request{ url = server.url .. "/v1/messages", body = "{}",
                                        on_data = function() error("stop here", 0) end }
    assert.is_nil(res)
    assert.match("^http: on_data: stop here", err)
  end)

  it("rejects bad options", function()
    assert.error(function() core.http.request{} end, "url is required")
    assert.error(function() core.http.request{ url = "http://x/", method = "get" } end, "bad method")
    assert.error(function() core.http.request{ url = "http://x/", headers = { ["a\nb"] = "c" } } end, "bad header")
  end)
end)

describe("anthropic over HTTP", function()
  local config = { model = "claude-test", api_key = KEY, base_url = server.url }

  it("runs a tool-use conversation on the documented wire format", function()
    local p = anthropic.new(config)
    local req = check_turn1(first_request(), assert(p:complete(first_request())))
    check_turn2(assert(p:complete(req)))
    local log = requests(server)
    local sent = log[#log]
    assert.equal("/v1/messages", sent.path)
    assert.same({ "x-api-key" }, sent.auth)
    assert.equal("claude-test", sent.body.model)
    assert.equal(16384, sent.body.max_tokens)
    assert.equal("Be brief.", sent.body.system)
    assert.equal("tool_result", sent.body.messages[3].content[1].type)
    assert.same({ "code" }, sent.body.tools[1].input_schema.required)
  end)

  it("streams with the same result and calls on_text", function()
    local p = anthropic.new(config)
    local texts = {}
    local r = assert(p:complete(first_request(), { on_text = function(t) texts[#texts + 1] = t end }))
    local req = check_turn1(first_request(), r)
    assert.equal("Let me look.", table.concat(texts))
    assert(#texts > 1, "text arrived in several deltas")
    check_turn2(assert(anthropic.new({ model = "m", api_key = KEY, base_url = server.url, stream = true })
      :complete(req)))
    assert.equal(true, requests(server)[#requests(server)].body.stream)
  end)

  it("reports a wrong key with the message of the error body, never the key", function()
    local r, err = anthropic.new({ model = "m", api_key = "wrong-key", base_url = server.url })
      :complete(first_request())
    assert.is_nil(r)
    assert.equal("anthropic: HTTP 401: invalid x-api-key", err)
    r, err = anthropic.new({ model = "m", base_url = server.url, stream = true }):complete(first_request())
    assert.is_nil(r)
    assert.equal("anthropic: HTTP 401: invalid x-api-key", err)
  end)

  it("passes transport errors through with its prefix", function()
    local r, err = anthropic.new({ model = "m", api_key = KEY, base_url = "http://127.0.0.1:1" })
      :complete(first_request())
    assert.is_nil(r)
    assert.match("^anthropic: http: .*Couldn't connect.*%(http://127%.0%.0%.1:1/v1/messages%)$", err)
  end)
end)

describe("openai over HTTP", function()
  it("runs a tool-use conversation on the documented wire format", function()
    local p = openai.new({ model = "gpt-test", api_key = KEY, base_url = server.url .. "/v1" })
    local req = check_turn1(first_request(), assert(p:complete(first_request())))
    check_turn2(assert(p:complete(req)))
    local sent = requests(server)[#requests(server)]
    assert.equal("/v1/chat/completions", sent.path)
    assert.same({ "authorization" }, sent.auth)
    assert.equal("system", sent.body.messages[1].role)
    assert.equal("tool", sent.body.messages[4].role)
    assert.equal("toolu_scripted_1_2", sent.body.messages[4].tool_call_id)
    assert.equal('{"code":"print(1+1)"}', sent.body.messages[3].tool_calls[1]["function"].arguments)
    assert.equal(16384, sent.body.max_tokens)
  end)

  it("streams under another base path (OpenRouter style) with the same result", function()
    local texts = {}
    local p = openai.new({ model = "gpt-test", api_key = KEY, base_url = server.url .. "/api/v1/" })
    local r = assert(p:complete(first_request(), { on_text = function(t) texts[#texts + 1] = t end }))
    local req = check_turn1(first_request(), r)
    assert.equal("Let me look.", table.concat(texts))
    check_turn2(assert(p:complete(req, { on_text = function() end })))
    local sent = requests(server)[#requests(server)]
    assert.equal("/api/v1/chat/completions", sent.path)
    assert.equal(true, sent.body.stream)
    assert.equal(true, sent.body.stream_options.include_usage)
  end)

  it("reports a wrong key from the error body and sends no authorization without a key", function()
    local r, err = openai.new({ model = "m", api_key = "wrong-key", base_url = server.url .. "/v1" })
      :complete(first_request())
    assert.is_nil(r)
    assert.equal("openai: HTTP 401: Incorrect API key provided.", err)
    r, err = openai.new({ model = "m", base_url = server.url .. "/v1", name = "ollama" }):complete(first_request())
    assert.is_nil(r)
    assert.equal("ollama: HTTP 401: Incorrect API key provided.", err)
    assert.same({}, requests(server)[#requests(server)].auth)
  end)

  it("passes transport errors through with its prefix", function()
    local r, err = openai.new({ model = "m", base_url = "http://127.0.0.1:1/v1" }):complete(first_request())
    assert.is_nil(r)
    assert.match("^openai: http: .*%(http://127%.0%.0%.1:1/v1/chat/completions%)$", err)
  end)

  it("never writes a key to the request log", function()
    assert.falsy(read_all(server.log):find(KEY, 1, true))
  end)
end)

describe("bedrock over HTTP (SigV4 verified by the fake with KEY as the secret)", function()
  local MODEL = "us.anthropic.claude-test-v1:0"
  local function config(extra)
    local c = { model = MODEL, region = "eu-west-3", access_key = "AKIDTEST", secret_key = KEY,
                base_url = server.url }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  it("runs a tool-use conversation on Converse, signed by curl", function()
    local p = assert(bedrock.new(config({ session_token = "session-token-xyz" })))
    local req = check_turn1(first_request(), assert(p:complete(first_request())))
    local r = assert(p:complete(req))
    check_turn2(r)
    assert.equal(MODEL, r.model)
    local sent = requests(server)[#requests(server)]
    assert.equal("/model/us.anthropic.claude-test-v1%3A0/converse", sent.path)
    assert.same({ "authorization", "x-amz-security-token", "sigv4:eu-west-3/bedrock" }, sent.auth)
    assert.same({ { text = "Be brief." } }, sent.body.system)
    assert.equal(16384, sent.body.inferenceConfig.maxTokens)
    assert.equal("toolu_scripted_1_2", sent.body.messages[2].content[2].toolUse.toolUseId)
    assert.same({ toolResult = { toolUseId = "toolu_scripted_1_2", content = { { text = "2" } } } },
                sent.body.messages[3].content[1])
    assert.equal("run_code", sent.body.toolConfig.tools[1].toolSpec.name)
  end)

  it("streams ConverseStream event-stream frames with the same result and calls on_text", function()
    local texts = {}
    local p = assert(bedrock.new(config()))
    local r = assert(p:complete(first_request(), { on_text = function(t) texts[#texts + 1] = t end }))
    local req = check_turn1(first_request(), r)
    assert.equal("Let me look.", table.concat(texts))
    assert(#texts > 1, "text arrived in several deltas")
    check_turn2(assert(assert(bedrock.new(config({ stream = true }))):complete(req)))
    local sent = requests(server)[#requests(server)]
    assert.equal("/model/us.anthropic.claude-test-v1%3A0/converse-stream", sent.path)
    assert.same({ "authorization", "sigv4:eu-west-3/bedrock" }, sent.auth)
  end)

  it("reports a wrong secret with the error type and message, never the secret", function()
    for _, stream in ipairs({ false, true }) do
      local r, err = assert(bedrock.new(config({ secret_key = "wrong-secret", stream = stream })))
        :complete(first_request())
      assert.is_nil(r)
      assert.equal("bedrock: HTTP 403: InvalidSignatureException: "
        .. "The request signature we calculated does not match the signature you provided.", err)
    end
    assert.falsy(read_all(server.log):find("wrong-secret", 1, true))
    assert.falsy(read_all(server.log):find(KEY, 1, true))
  end)

  it("refuses to start without region or credentials", function()
    local p, err = bedrock.new(config({ region = false }))
    assert.is_nil(p)
    assert.match("no AWS region", err)
    p, err = bedrock.new(config({ secret_key = "" }))
    assert.is_nil(p)
    assert.match("no AWS credentials", err)
  end)
end)

describe("core.http credentials", function()
  it("sends user and password as basic auth without aws_sigv4", function()
    local res = assert(core.http.request{ url = server.url .. "/nowhere", body = "{}", user = "u", password = "p" })
    assert.equal(404, res.status)
    assert.same({ "authorization" }, requests(server)[#requests(server)].auth)
  end)

  it("rejects incomplete options", function()
    assert.error(function() core.http.request{ url = "http://x/", aws_sigv4 = "aws:amz:r:s" } end,
                 "needs user and password")
    assert.error(function() core.http.request{ url = "http://x/", user = "u" } end, "go together")
    assert.error(function() core.http.request{ url = "http://x/", aws_sigv4 = "", user = "u", password = "p" } end,
                 "bad aws_sigv4")
  end)
end)

describe("errors in the middle of a stream", function()
  local s = start_server({ turns = A({
    { stream_error = { after = 2, message = "Overloaded", type = "overloaded_error" },
      content = A({ { type = "text", text = "A long answer that is cut." } }) },
  }) }, KEY)

  it("fail with the provider's message on all three wire formats, then the turn succeeds", function()
    local bs = bedrock.new({ model = "m", region = "us-east-1", access_key = "A", secret_key = KEY, base_url = s.url })
    local cases = {
      { anthropic.new({ model = "m", api_key = KEY, base_url = s.url }), "^anthropic: stream error: Overloaded$" },
      { openai.new({ model = "m", api_key = KEY, base_url = s.url .. "/v1" }), "^openai: stream error: Overloaded$" },
      { bs, "^bedrock: stream error: overloaded_error: Overloaded$" },
    }
    for _, c in ipairs(cases) do
      local texts = {}
      local r, err = c[1]:complete(first_request(), { on_text = function(t) texts[#texts + 1] = t end })
      assert.is_nil(r)
      assert.match(c[2], err)
      assert.equal(2, #texts, "two deltas arrived before the error")
      -- The fake cuts a position once per wire format; the next call streams to the end.
      r, err = c[1]:complete(first_request(), { on_text = function() end })
      assert.equal("A long answer that is cut.", r and r.content[1].text, err)
    end
  end)
end)

describe("retries", function()
  it("fail after the first error outside a coroutine (nothing can wait)", function()
    local s = start_server({ turns = A({ { error = { status = 429, retry_after = 0 },
                                           content = A({ { type = "text", text = "ok" } }) } }) })
    local r, err = anthropic.new({ model = "m", base_url = s.url }):complete(first_request())
    assert.is_nil(r)
    assert.equal("anthropic: HTTP 429: scripted error 429", err)
    assert.equal(1, #requests(s))
    assert.equal("ok", assert(anthropic.new({ model = "m", base_url = s.url }):complete(first_request()))
      .content[1].text)
  end)
end)

describe("yield path (sched coroutines)", function()
  it("runs many conversations at once on all three wire formats", function()
    local fns = {}
    for i = 1, 12 do
      fns[i] = function()
        assert(core.sched.in_coroutine())
        local stream = i % 2 == 0
        local p = i % 3 == 0
          and anthropic.new({ model = "m", api_key = KEY, base_url = server.url, stream = stream })
          or i % 3 == 1 and openai.new({ model = "m", api_key = KEY, base_url = server.url .. "/v1", stream = stream })
          or assert(bedrock.new({ model = "m:0", region = "us-east-1", access_key = "A", secret_key = KEY,
                                  base_url = server.url, stream = stream }))
        local req = check_turn1(first_request(), assert(p:complete(first_request())))
        check_turn2(assert(p:complete(req)))
      end
    end
    run_async(fns)
  end)

  it("calls on_text from the stream while the coroutine waits", function()
    local texts = {}
    run_async({ function()
      local r = assert(anthropic.new({ model = "m", api_key = KEY, base_url = server.url })
        :complete(first_request(), { on_text = function(t) texts[#texts + 1] = t end }))
      check_turn1(first_request(), r)
    end })
    assert.equal("Let me look.", table.concat(texts))
  end)

  it("retries 429 honouring retry-after, and 529 with backoff", function()
    local s = start_server({ turns = A({
      { error = { status = 429, retry_after = 0 }, content = A({ { type = "text", text = "after 429" } }) },
      { error = { status = 529 }, content = A({ { type = "text", text = "after 529" } }) },
    }) })
    local elapsed
    run_async({ function()
      local p = openai.new({ model = "m", base_url = s.url .. "/v1" })
      local r = assert(p:complete(first_request()))
      assert.equal("after 429", r.content[1].text)
      local a = anthropic.new({ model = "m", base_url = s.url })
      local req = first_request()
      req.messages[#req.messages + 1] = { role = "assistant", content = r.content }
      req.messages[#req.messages + 1] = { role = "user", content = "again" }
      local t0 = core.sys.monotonic_ms()
      r = assert(a:complete(req))
      elapsed = core.sys.monotonic_ms() - t0
      assert.equal("after 529", r.content[1].text)
    end })
    assert.equal(4, #requests(s))
    assert(elapsed >= 240, "backed off at least half of 500 ms, waited " .. tostring(elapsed))
  end)

  it("retries a Bedrock ThrottlingException and streams the answer after it", function()
    local s = start_server({ turns = A({
      { error = { status = 429, retry_after = 0, message = "Too many requests, please wait before trying again." },
        content = A({ { type = "text", text = "after throttling" } }) },
    }) }, KEY)
    run_async({ function()
      local texts = {}
      local r = assert(assert(bedrock.new({ model = "m", region = "us-east-1", access_key = "A", secret_key = KEY,
        base_url = s.url })):complete(first_request(), { on_text = function(t) texts[#texts + 1] = t end }))
      assert.equal("after throttling", r.content[1].text)
      assert.equal("after throttling", table.concat(texts))
    end })
    assert.equal(2, #requests(s))
  end)

  it("reports a refused connection", function()
    run_async({ function()
      local r, err = anthropic.new({ model = "m", base_url = "http://127.0.0.1:1" }):complete(first_request())
      assert.is_nil(r)
      assert.match("^anthropic: http: ", err)
      local res, herr = core.http.request{ url = "http://127.0.0.1:1/" }
      assert.is_nil(res)
      assert.match("^http: ", herr)
    end })
  end)

  it("reports a wrong key", function()
    run_async({ function()
      local r, err = openai.new({ model = "m", api_key = "nope", base_url = server.url .. "/v1" })
        :complete(first_request())
      assert.is_nil(r)
      assert.equal("openai: HTTP 401: Incorrect API key provided.", err)
    end })
  end)
end)

stop_servers()
