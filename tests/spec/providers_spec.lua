-- Providers: the pure wire mappings (both directions, both formats), error bodies,
-- SSE parsing, backoff, and the scripted provider. No network here (see http_spec).
local json = require("cogos.core").json
local anthropic = require("cogos.providers.anthropic")
local openai = require("cogos.providers.openai")
local scripted = require("cogos.providers.scripted")
local common = require("cogos.providers.common")
local bedrock = require("cogos.providers.bedrock")

local A = json.array

-- A conversation with every block type: a tool call, its result, and a reply.
local function conversation()
  return {
    model = "m-1",
    system = "You are terse.",
    messages = A({
      { role = "user", content = A({ { type = "text", text = "What is 1+1?" } }) },
      { role = "assistant", content = A({
        { type = "text", text = "Let me compute." },
        { type = "tool_use", id = "toolu_1", name = "run_code", input = { code = "print(1+1)" } },
        { type = "tool_use", id = "toolu_2", name = "search", input = {} },
      }) },
      { role = "user", content = A({
        { type = "tool_result", tool_use_id = "toolu_1", content = "2" },
        { type = "tool_result", tool_use_id = "toolu_2", content = "boom", is_error = true },
      }) },
    }),
    tools = A({
      { name = "run_code", description = "Run Lua",
        input_schema = { type = "object", properties = { code = { type = "string" } }, required = A({ "code" }) } },
      { name = "search", description = "Find capabilities",
        input_schema = { type = "object", properties = {}, required = A() } },
    }),
  }
end

describe("anthropic.to_wire", function()
  it("maps system, model, max_tokens, tools and every block type", function()
    local w = assert(anthropic.to_wire(conversation(), {}))
    assert.equal("m-1", w.model)
    assert.equal(16384, w.max_tokens)
    assert.equal("You are terse.", w.system)
    assert.equal(3, #w.messages)
    assert.same({ type = "text", text = "What is 1+1?" }, w.messages[1].content[1])
    assert.same({ type = "tool_use", id = "toolu_1", name = "run_code", input = { code = "print(1+1)" } },
                w.messages[2].content[2])
    assert.same({ type = "tool_result", tool_use_id = "toolu_2", content = "boom", is_error = true },
                w.messages[3].content[2])
    assert.is_nil(w.messages[3].content[1].is_error)
    assert.same({ "name", "description", "input_schema" }, (function()
      local keys = {}
      for _, k in ipairs({ "name", "description", "input_schema" }) do
        if w.tools[1][k] ~= nil then keys[#keys + 1] = k end
      end
      return keys
    end)())
  end)

  it("keeps [] and {} apart in the encoded body", function()
    local w = assert(anthropic.to_wire(conversation(), {}))
    local s = assert(json.encode(w))
    assert.match('"input":{}', s)
    assert.match('"required":%[%]', s)
    assert.match('"properties":{}', s)
    local empty = assert(json.encode(assert(anthropic.to_wire({ messages = A() }, { model = "x" }))))
    assert.match('"messages":%[%]', empty)
  end)

  it("takes model and max_tokens from the config and omits an empty system and no tools", function()
    local w = assert(anthropic.to_wire({ messages = A({ { role = "user", content = "hi" } }) },
                                       { model = "cfg", max_tokens = 99 }))
    assert.equal("cfg", w.model)
    assert.equal(99, w.max_tokens)
    assert.is_nil(w.system)
    assert.is_nil(w.tools)
    assert.same({ { type = "text", text = "hi" } }, w.messages[1].content)
  end)

  it("refuses a request without a model or with a bad role", function()
    local w, err = anthropic.to_wire({ messages = A() }, {})
    assert.is_nil(w)
    assert.match("^anthropic: no model", err)
    w, err = anthropic.to_wire({ messages = A({ { role = "system", content = "x" } }) }, { model = "m" })
    assert.is_nil(w)
    assert.match("bad message role", err)
  end)
end)

describe("anthropic.from_wire", function()
  local body = json.decode([[{
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [{"type": "text", "text": "Computing."},
                {"type": "tool_use", "id": "toolu_9", "name": "run_code", "input": {"code": "x"}},
                {"type": "tool_use", "id": "toolu_10", "name": "search", "input": {}}],
    "stop_reason": "tool_use", "stop_sequence": null,
    "usage": {"input_tokens": 120, "output_tokens": 33}
  }]])

  it("maps content, stop reason, usage and model", function()
    local r = assert(anthropic.from_wire(body))
    assert.equal(3, #r.content)
    assert.same({ type = "text", text = "Computing." }, r.content[1])
    assert.same({ type = "tool_use", id = "toolu_9", name = "run_code", input = { code = "x" } }, r.content[2])
    assert.equal("tool_use", r.stop_reason)
    assert.same({ input_tokens = 120, output_tokens = 33 }, r.usage)
    assert.equal("claude-x", r.model)
    assert.match('"input":{}', json.encode(r.content))
  end)

  it("maps every stop reason", function()
    for wire, want in pairs({ end_turn = "end_turn", stop_sequence = "end_turn", tool_use = "tool_use",
                              max_tokens = "max_tokens" }) do
      local r = assert(anthropic.from_wire({ content = A(), stop_reason = wire, usage = {} }))
      assert.equal(want, r.stop_reason, wire)
    end
    local r = assert(anthropic.from_wire({ content = A(), stop_reason = json.null }))
    assert.equal("end_turn", r.stop_reason)
    assert.same({ input_tokens = 0, output_tokens = 0 }, r.usage)
  end)

  it("round-trips a tool call back onto the wire unchanged", function()
    local r = assert(anthropic.from_wire(body))
    local req = conversation()
    req.messages = A({ { role = "user", content = "go" }, { role = "assistant", content = r.content } })
    local w = assert(anthropic.to_wire(req, {}))
    assert.equal(json.encode(body.content), json.encode(w.messages[2].content))
  end)

  it("rejects a body without content", function()
    local r, err = anthropic.from_wire({ type = "error" })
    assert.is_nil(r)
    assert.match("^anthropic: bad response", err)
  end)
end)

describe("anthropic.error_text", function()
  it("takes the message from the error body", function()
    local body = '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'
    assert.equal("anthropic: HTTP 401: invalid x-api-key", anthropic.error_text(401, body))
  end)

  it("falls back to the raw body, or the status alone", function()
    assert.equal("anthropic: HTTP 502: <html>bad gateway</html>",
                 anthropic.error_text(502, "<html>bad\n gateway</html>"))
    assert.equal("anthropic: HTTP 503", anthropic.error_text(503, ""))
  end)
end)

describe("openai.to_wire", function()
  it("puts the system first, tool calls on the assistant and each result in its own message", function()
    local w = assert(openai.to_wire(conversation(), { base_url = "http://localhost:11434/v1" }))
    assert.equal("m-1", w.model)
    assert.equal(16384, w.max_tokens)
    assert.same({ role = "system", content = "You are terse." }, w.messages[1])
    assert.same({ role = "user", content = "What is 1+1?" }, w.messages[2])
    local a = w.messages[3]
    assert.equal("assistant", a.role)
    assert.equal("Let me compute.", a.content)
    assert.equal(2, #a.tool_calls)
    assert.same({ id = "toolu_1", type = "function", ["function"] = { name = "run_code",
                  arguments = '{"code":"print(1+1)"}' } }, a.tool_calls[1])
    assert.equal("{}", a.tool_calls[2]["function"].arguments)
    assert.same({ role = "tool", tool_call_id = "toolu_1", content = "2" }, w.messages[4])
    assert.same({ role = "tool", tool_call_id = "toolu_2", content = "boom" }, w.messages[5])
    assert.equal(5, #w.messages)
    assert.same({ type = "function", ["function"] = { name = "search", description = "Find capabilities",
                  parameters = { type = "object", properties = {}, required = {} } } }, w.tools[2])
  end)

  it("sends null content for an assistant turn with only tool calls, and keeps [] apart from {}", function()
    local req = { model = "m", messages = A({
      { role = "user", content = "hi" },
      { role = "assistant", content = A({ { type = "tool_use", id = "c1", name = "search", input = {} } }) },
      { role = "user", content = A({ { type = "tool_result", tool_use_id = "c1", content = "[]" } }) },
    }), tools = conversation().tools }
    local s = assert(json.encode(assert(openai.to_wire(req, {}))))
    assert.match('"content":null', s)
    assert.match('"required":%[%]', s)
    assert.match('"properties":{}', s)
    assert.match('"arguments":"{}"', s)
    local empty = assert(json.encode(assert(openai.to_wire({ messages = A() }, { model = "x" }))))
    assert.match('"messages":%[%]', empty)
  end)

  it("uses max_completion_tokens on api.openai.com and max_tokens elsewhere", function()
    local w = assert(openai.to_wire({ messages = A() }, { model = "x", max_tokens = 7 }))
    assert.equal(7, w.max_completion_tokens)
    assert.is_nil(w.max_tokens)
    w = assert(openai.to_wire({ messages = A() }, { model = "x", base_url = "https://openrouter.ai/api/v1" }))
    assert.equal(16384, w.max_tokens)
  end)
end)

describe("openai.from_wire", function()
  local function body(message, finish, usage)
    return { id = "c", model = "gpt-x", choices = A({ { index = 0, message = message, finish_reason = finish } }),
             usage = usage or { prompt_tokens = 11, completion_tokens = 5, total_tokens = 16 } }
  end

  it("maps text and tool calls, parsing the arguments", function()
    local b = json.decode([[{"model":"gpt-x","choices":[{"index":0,"finish_reason":"tool_calls","message":{
      "role":"assistant","content":"Checking.","tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"run_code","arguments":"{\"code\":\"print(2)\"}"}},
        {"id":"call_b","type":"function","function":{"name":"search","arguments":"{}"}}]}}],
      "usage":{"prompt_tokens":40,"completion_tokens":9,"total_tokens":49}}]])
    local r = assert(openai.from_wire(b))
    assert.same({ type = "text", text = "Checking." }, r.content[1])
    assert.same({ type = "tool_use", id = "call_a", name = "run_code", input = { code = "print(2)" } }, r.content[2])
    assert.same({ type = "tool_use", id = "call_b", name = "search", input = {} }, r.content[3])
    assert.equal("tool_use", r.stop_reason)
    assert.same({ input_tokens = 40, output_tokens = 9 }, r.usage)
    assert.equal("gpt-x", r.model)
  end)

  it("maps finish reasons and null content", function()
    for wire, want in pairs({ stop = "end_turn", tool_calls = "tool_use", length = "max_tokens" }) do
      local r = assert(openai.from_wire(body({ role = "assistant", content = "x" }, wire)))
      assert.equal(want, r.stop_reason, wire)
    end
    local r = assert(openai.from_wire(body({ role = "assistant", content = json.null }, "stop")))
    assert.equal(0, #r.content)
    assert.match("^%[%]$", json.encode(r.content))
  end)

  it("reports tool arguments that are not JSON", function()
    local r, err = openai.from_wire(body({ role = "assistant", content = json.null, tool_calls = A({
      { id = "c", type = "function", ["function"] = { name = "run_code", arguments = "{bad" } } }) }, "tool_calls"))
    assert.is_nil(r)
    assert.match("^openai: bad tool arguments for run_code", err)
  end)

  it("round-trips a tool call back onto the wire", function()
    local calls = A({ { id = "call_a", type = "function",
                        ["function"] = { name = "run_code", arguments = '{"code":"x"}' } } })
    local r = assert(openai.from_wire(body({ role = "assistant", content = "Hi.", tool_calls = calls }, "tool_calls")))
    local w = assert(openai.to_wire({ model = "m", messages = A({ { role = "user", content = "go" },
                                       { role = "assistant", content = r.content } }) }, {}))
    assert.same({ role = "assistant", content = "Hi.", tool_calls = calls }, w.messages[2])
  end)

  it("rejects a body without choices", function()
    local r, err = openai.from_wire({ error = { message = "x" } })
    assert.is_nil(r)
    assert.match("^openai: bad response", err)
  end)
end)

describe("openai.error_text", function()
  it("parses the error shapes of OpenAI, Ollama and FastAPI servers", function()
    assert.equal("openai: HTTP 401: Incorrect API key provided.", openai.error_text(401,
      '{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}'))
    assert.equal("openai: HTTP 404: model \"x\" not found",
                 openai.error_text(404, '{"error":"model \\"x\\" not found"}'))
    assert.equal("openai: HTTP 400: bad things", openai.error_text(400, '{"detail":"bad things"}'))
    assert.equal("openrouter: HTTP 402: no credits",
                 openai.error_text(402, '{"error":{"message":"no credits","code":402}}', { name = "openrouter" }))
  end)
end)

describe("common", function()
  it("parses server-sent events split anywhere", function()
    local got = {}
    local feed = common.sse_parser(function(ev, data) got[#got + 1] = ev .. "=" .. data end)
    local text = "event: a\ndata: {\"x\":1}\n\n: comment\ndata: one\r\ndata: two\r\n\r\ndata: [DONE]\n\n"
    for i = 1, #text, 3 do feed(text:sub(i, i + 2)) end
    assert.same({ 'a={"x":1}', "message=one\ntwo", "message=[DONE]" }, got)
  end)

  it("honours retry-after and otherwise backs off exponentially with jitter", function()
    assert.equal(0, common.backoff_ms(1, { ["retry-after"] = "0" }))
    assert.equal(2000, common.backoff_ms(3, { ["retry-after"] = "2" }))
    assert.equal(60000, common.backoff_ms(1, { ["retry-after"] = "3600" }))
    for attempt, step in ipairs({ 500, 1000, 2000, 4000, 8000, 8000 }) do
      for _ = 1, 20 do
        local d = common.backoff_ms(attempt, {})
        assert(d >= step / 2 and d <= step, "attempt " .. attempt .. ": " .. d)
      end
    end
  end)
end)

describe("scripted provider", function()
  local script = { turns = A({
    { content = A({ { type = "text", text = "Looking." },
                    { type = "tool_use", name = "run_code", input = { code = "print(1)" } },
                    { type = "tool_use", id = "mine", name = "search" } }) },
    { content = A({ { type = "text", text = "Done." } }), usage = { input_tokens = 7, output_tokens = 3 } },
    { content = A({ { type = "text", text = "Cut." } }), stop_reason = "max_tokens" },
  }) }

  local function request(n_assistant)
    local msgs = A({ { role = "user", content = A({ { type = "text", text = "hello" } }) } })
    for i = 1, n_assistant do
      msgs[#msgs + 1] = { role = "assistant", content = A({ { type = "text", text = "a" .. i } }) }
      msgs[#msgs + 1] = { role = "user", content = A({ { type = "text", text = "u" .. i } }) }
    end
    return { model = "m", system = "sys", messages = msgs }
  end

  it("requires a script", function()
    local p, err = scripted.new({})
    assert.is_nil(p)
    assert.match("^scripted: config.script", err)
  end)

  it("replays the turn of the conversation position and names tool calls", function()
    local p = assert(scripted.new({ script = script }))
    local r = p:complete(request(0))
    assert.equal("tool_use", r.stop_reason)
    assert.equal("Looking.", r.content[1].text)
    assert.equal("toolu_scripted_1_2", r.content[2].id)
    assert.same({ code = "print(1)" }, r.content[2].input)
    assert.equal("mine", r.content[3].id)
    assert.same({}, r.content[3].input)
    r = p:complete(request(1))
    assert.equal("end_turn", r.stop_reason)
    assert.same({ input_tokens = 7, output_tokens = 3 }, r.usage)
    r = p:complete(request(2))
    assert.equal("max_tokens", r.stop_reason)
  end)

  it("serves interleaved conversations independently", function()
    local p = assert(scripted.new({ script = script }))
    assert.equal("Looking.", p:complete(request(0)).content[1].text)
    assert.equal("Done.", p:complete(request(1)).content[1].text)
    assert.equal("Looking.", p:complete(request(0)).content[1].text)
  end)

  it("estimates usage from characters when the turn has none", function()
    local p = assert(scripted.new({ script = script }))
    local req = request(0)
    local r = p:complete(req)
    local want_in = math.ceil((#req.system + #json.encode(req.messages)) / 4)
    assert.equal(want_in, r.usage.input_tokens)
    assert.equal(math.ceil(#json.encode(r.content) / 4), r.usage.output_tokens)
    assert(r.usage.input_tokens > 0 and r.usage.output_tokens > 0)
  end)

  it("answers (script ended) past the end", function()
    local p = assert(scripted.new({ script = script }))
    local r = p:complete(request(3))
    assert.same({ { type = "text", text = "(script ended)" } }, r.content)
    assert.equal("end_turn", r.stop_reason)
    assert(r.usage.output_tokens > 0)
  end)

  it("does not let callers change the script through a response", function()
    local p = assert(scripted.new({ script = script }))
    local r = p:complete(request(0))
    r.content[2].input.code = "changed"
    assert.equal("print(1)", p:complete(request(0)).content[2].input.code)
  end)

  it("streams text blocks to on_text", function()
    local p = assert(scripted.new({ script = script }))
    local got = {}
    p:complete(request(1), { on_text = function(t) got[#got + 1] = t end })
    assert.same({ "Done." }, got)
  end)
end)

describe("bedrock.to_wire", function()
  it("maps system, tools and every block type to Converse shapes", function()
    local w, model = bedrock.to_wire(conversation(), {})
    assert.truthy(w, model)
    assert.equal("m-1", model)
    assert.is_nil(w.modelId)
    assert.same({ { text = "You are terse." } }, w.system)
    assert.equal(16384, w.inferenceConfig.maxTokens)
    assert.equal(3, #w.messages)
    assert.same({ role = "user", content = { { text = "What is 1+1?" } } }, w.messages[1])
    assert.same({ { text = "Let me compute." },
                  { toolUse = { toolUseId = "toolu_1", name = "run_code", input = { code = "print(1+1)" } } },
                  { toolUse = { toolUseId = "toolu_2", name = "search", input = {} } } }, w.messages[2].content)
    assert.same({ toolResult = { toolUseId = "toolu_1", content = { { text = "2" } } } }, w.messages[3].content[1])
    assert.same({ toolResult = { toolUseId = "toolu_2", content = { { text = "boom" } }, status = "error" } },
                w.messages[3].content[2])
    assert.same({ toolSpec = { name = "run_code", description = "Run Lua", inputSchema = { json =
      { type = "object", properties = { code = { type = "string" } }, required = { "code" } } } } },
      w.toolConfig.tools[1])
  end)

  it("keeps [] and {} apart, drops blank text and maps images", function()
    local req = conversation()
    req.messages[1].content[2] = { type = "text", text = "" }
    req.messages[1].content[3] = { type = "image",
                                   source = { type = "base64", media_type = "image/png", data = "iVBO" } }
    local w = assert(bedrock.to_wire(req, {}))
    local s = assert(json.encode(w))
    assert.match('"input":{}', s)
    assert.match('"required":%[%]', s)
    assert.match('"properties":{}', s)
    assert.equal(2, #w.messages[1].content)
    assert.same({ image = { format = "png", source = { bytes = "iVBO" } } }, w.messages[1].content[2])
    local ew = assert(bedrock.to_wire({ messages = A() }, { model = "x" }))
    local empty = assert(json.encode(ew))
    assert.match('"messages":%[%]', empty)
    assert.falsy(empty:find("toolConfig", 1, true))
  end)

  it("refuses a request without a model or with a bad role", function()
    local w, err = bedrock.to_wire({ messages = A() }, {})
    assert.is_nil(w)
    assert.match("^bedrock: no model", err)
    w, err = bedrock.to_wire({ messages = A({ { role = "system", content = "x" } }) }, { model = "m" })
    assert.is_nil(w)
    assert.match("bad message role", err)
  end)

  it("encodes model ids and ARNs as one path segment", function()
    assert.equal("us.anthropic.claude-sonnet-4-5-20250929-v1%3A0",
                 bedrock.path_segment("us.anthropic.claude-sonnet-4-5-20250929-v1:0"))
    assert.equal("arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx",
                 bedrock.path_segment("arn:aws:bedrock:us-east-1:1:inference-profile/x"))
  end)
end)

describe("bedrock.from_wire", function()
  local body = json.decode([[{
    "output": {"message": {"role": "assistant", "content": [
      {"text": "Computing."},
      {"toolUse": {"toolUseId": "tooluse_9", "name": "run_code", "input": {"code": "x"}}},
      {"toolUse": {"toolUseId": "tooluse_10", "name": "search", "input": {}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 120, "outputTokens": 33, "totalTokens": 153},
    "metrics": {"latencyMs": 900}
  }]])

  it("maps content, stop reason and usage", function()
    local r = assert(bedrock.from_wire(body))
    assert.same({ type = "text", text = "Computing." }, r.content[1])
    assert.same({ type = "tool_use", id = "tooluse_9", name = "run_code", input = { code = "x" } }, r.content[2])
    assert.equal("tool_use", r.stop_reason)
    assert.same({ input_tokens = 120, output_tokens = 33 }, r.usage)
    assert.match('"input":{}', json.encode(r.content))
  end)

  it("maps every stop reason", function()
    for wire, want in pairs({ end_turn = "end_turn", stop_sequence = "end_turn", tool_use = "tool_use",
                              max_tokens = "max_tokens", guardrail_intervened = "end_turn",
                              content_filtered = "end_turn" }) do
      local r = assert(bedrock.from_wire({ output = { message = { content = A() } }, stopReason = wire }))
      assert.equal(want, r.stop_reason, wire)
    end
  end)

  it("round-trips a tool call back onto the wire unchanged", function()
    local r = assert(bedrock.from_wire(body))
    local w = bedrock.to_wire({ model = "m", messages = A({ { role = "user", content = "go" },
      { role = "assistant", content = r.content } }) })
    assert.equal(json.encode(body.output.message.content), json.encode(w.messages[2].content))
  end)

  it("rejects a body without an output message", function()
    local r, err = bedrock.from_wire({ message = "x" })
    assert.is_nil(r)
    assert.match("^bedrock: bad response", err)
  end)
end)

describe("bedrock.error_text", function()
  it("names the error type from x-amzn-errortype and the message", function()
    assert.equal("bedrock: HTTP 400: ValidationException: Input is too long for requested model.",
      bedrock.error_text(400, '{"message":"Input is too long for requested model."}',
        { ["x-amzn-errortype"] = "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/" }))
    assert.equal("bedrock: HTTP 403: UnrecognizedClientException: "
                 .. "The security token included in the request is invalid.",
      bedrock.error_text(403, '{"__type":"com.amazon.coral#UnrecognizedClientException",'
        .. '"Message":"The security token included in the request is invalid."}', {}))
    assert.equal("bedrock: HTTP 503", bedrock.error_text(503, "", {}))
  end)
end)

describe("bedrock event-stream framing", function()
  local function frame(t, payload)
    return bedrock.event_stream_message({ [":event-type"] = t, [":content-type"] = "application/json",
                                           [":message-type"] = "event" }, payload)
  end

  it("computes the IEEE CRC32", function()
    assert.equal(0xCBF43926, bedrock.crc32("123456789"))
    assert.equal(0, bedrock.crc32(""))
  end)

  it("decodes messages split anywhere and checks both CRCs", function()
    local stream = frame("messageStart", '{"role":"assistant"}')
      .. frame("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"hi"}}')
    local got = {}
    local feed = bedrock.event_stream_parser(function(h, p) got[#got + 1] = h[":event-type"] .. "=" .. p end)
    for i = 1, #stream, 7 do feed(stream:sub(i, i + 6)) end
    assert.same({ 'messageStart={"role":"assistant"}',
                  'contentBlockDelta={"contentBlockIndex":0,"delta":{"text":"hi"}}' }, got)
    -- One flipped payload byte breaks the message CRC, one flipped length the prelude CRC.
    local bad = frame("x", '{"a":1}')
    local flipped = bad:sub(1, 20) .. string.char(bad:byte(21) ~ 1) .. bad:sub(22)
    assert.error(function() bedrock.event_stream_parser(function() end)(flipped) end, "message CRC")
    local prelude = string.char(bad:byte(1) ~ 1) .. bad:sub(2)
    assert.error(function() bedrock.event_stream_parser(function() end)(prelude) end, "prelude CRC")
  end)
end)
