-- cogos.llm: provider selection (per-process model, keys, endpoints, AWS settings),
-- the client with its fallback chain against tests/e2e/fake_llm.js on loopback,
-- error classification for the executor, and keys kept out of error texts.
local core = require("cogos.core")
local llm = require("cogos.llm")

local json = core.json
local A = json.array

local servers = {}

-- Starts a fake server on a free port; returns {pid, url, log, pipe, script}.
local function start_server(script, key)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(assert(json.encode(script)))
  f:close()
  local log = path .. ".log"
  local cmd = string.format("echo $$; exec node %s/tests/e2e/fake_llm.js --script %s --port 0 --log %s%s",
                            core.root, path, log, key and (" --key " .. key) or "")
  local pipe = assert(io.popen(cmd, "r"))
  local pid = tonumber(pipe:read("l"))
  local port = (pipe:read("l") or ""):match("^listening (%d+)$")
  assert(pid and port, "fake_llm.js did not start (is node installed?)")
  local s = { pid = pid, url = "http://127.0.0.1:" .. port, log = log, script = path, pipe = pipe }
  servers[#servers + 1] = s
  return s
end

local function requests(s)
  local out = {}
  local f = io.open(s.log, "r")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = assert(json.decode(line)) end
  f:close()
  return out
end

-- Runs fn with os.getenv answering from vars first (nil values unset a variable).
local function with_env(vars, fn)
  local real = os.getenv
  os.getenv = function(k) -- luacheck: ignore 122
    if vars[k] ~= nil then return vars[k] or nil end
    return real(k)
  end
  local ok, err = pcall(fn)
  os.getenv = real -- luacheck: ignore 122
  if not ok then error(err, 0) end
end

local NO_ENV = { ANTHROPIC_BASE_URL = false, OPENAI_BASE_URL = false, BEDROCK_BASE_URL = false,
  AWS_REGION = false, AWS_DEFAULT_REGION = false, AWS_ACCESS_KEY_ID = false, AWS_SECRET_ACCESS_KEY = false,
  AWS_SESSION_TOKEN = false }
local function env(extra)
  local t = {}
  for k, v in pairs(NO_ENV) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local db = { file_get = function(_, key)
  if key == "mnt/boot/scripts/p.json" then
    return { content = '{"turns":[{"content":[{"type":"text","text":"scripted answer"}]}]}' }
  end
end }

local function request()
  return { model = "ignored", system = "Be brief.", max_tokens = 100,
           messages = A({ { role = "user", content = A({ { type = "text", text = "hi" } }) } }) }
end

-- The provider of the primary entry (its config shows what was picked).
local function primary(process, settings)
  local c, err = llm.client(db, process, settings)
  if not c then return nil, err end
  return c.entries[1].provider, c.model
end

describe("llm.client entries (per-process model selection)", function()
  it("uses process.model over the cogtainer's model, then the provider default, for every provider", function()
    local vars = env({ K = "key-1", AWS_ACCESS_KEY_ID = "AKID", AWS_SECRET_ACCESS_KEY = "sec",
                       AWS_REGION = "eu-west-1" })
    with_env(vars, function()
        for _, name in ipairs({ "anthropic", "openai", "bedrock", "scripted" }) do
          local settings = { provider = name, api_key_env = "K", model = "cfg-model" }
          local p, model = primary({ name = "p", model = "proc-model" }, settings)
          assert.truthy(p, model)
          assert.equal("proc-model", model, name)
          assert.equal("proc-model", p.config.model, name)
          p, model = primary({ name = "p" }, settings)
          assert.equal("cfg-model", model, name)
          assert.equal("cfg-model", p.config.model, name)
          p, model = primary({ name = "p" }, { provider = name, api_key_env = "K" })
          assert.equal(llm.DEFAULT_MODEL[name], model, name)
          assert.equal(llm.DEFAULT_MODEL[name], p.config.model, name)
        end
      end)
  end)

  it("llm.provider (the older entry point) gives the client and the primary's model", function()
    local p, model = llm.provider(db, { name = "p", model = "m-proc" }, { provider = "scripted" })
    assert.equal("m-proc", model)
    assert.equal("scripted answer", p:complete(request()).content[1].text)
    p, model = llm.provider(db, { name = "p" }, { provider = "nope" })
    assert.is_nil(p)
    assert.equal("unknown LLM provider 'nope'", model)
  end)

  it("reads endpoints from the settings, else the environment", function()
    with_env(env({ K = "key-1", OPENAI_BASE_URL = "http://env/v1", BEDROCK_BASE_URL = "http://bed",
                   AWS_ACCESS_KEY_ID = "AKID", AWS_SECRET_ACCESS_KEY = "sec", AWS_SESSION_TOKEN = "tok",
                   AWS_REGION = "eu-west-1" }), function()
      local p = primary({ name = "p" }, { provider = "openai", api_key_env = "K" })
      assert.equal("http://env/v1", p.config.base_url)
      p = primary({ name = "p" }, { provider = "openai", api_key_env = "K", base_url = "http://cfg/v1" })
      assert.equal("http://cfg/v1", p.config.base_url)
      p = primary({ name = "p" }, { provider = "bedrock" })
      assert.same({ "http://bed", "eu-west-1", "AKID", "sec", "tok" },
                  { p.config.base_url, p.config.region, p.config.access_key, p.config.secret_key,
                    p.config.session_token })
      p = primary({ name = "p" }, { provider = "bedrock", region = "ap-south-1" })
      assert.equal("ap-south-1", p.config.region)
    end)
  end)

  it("names what is missing, never a value", function()
    with_env(env({ K = false }), function()
      local p, err = primary({ name = "p" }, { provider = "anthropic", api_key_env = "K" })
      assert.is_nil(p)
      assert.equal("anthropic provider: no API key (set $K)", err)
      p, err = primary({ name = "p" }, { provider = "bedrock", region = "us-east-1" })
      assert.is_nil(p)
      assert.match("no AWS credentials %(set %$AWS_ACCESS_KEY_ID and %$AWS_SECRET_ACCESS_KEY%)", err)
      p, err = primary({ name = "p" }, { provider = "bedrock" })
      assert.is_nil(p)
      assert.match("no AWS region", err)
      p, err = primary({ name = "p" }, { provider = "nope" })
      assert.is_nil(p)
      assert.equal("unknown LLM provider 'nope'", err)
      p, err = primary({ name = "p" }, { provider = "common" })
      assert.is_nil(p)
      assert.equal("unknown LLM provider 'common'", err)
      p, err = primary({ name = "other" }, { provider = "scripted" })
      assert.is_nil(p)
      assert.match("no script file 'mnt/boot/scripts/other.json'", err)
    end)
  end)
end)

describe("llm error classification", function()
  it("recognises context overflow from every provider", function()
    for _, e in ipairs({
      "anthropic: HTTP 400: prompt is too long: 212000 tokens > 200000 maximum",
      "openai: HTTP 400: This model's maximum context length is 128000 tokens. However, your messages resulted in"
        .. " 130000 tokens. Please reduce the length of the messages.",
      "openrouter: HTTP 400: This endpoint's maximum context length is 8192 tokens.",
      "bedrock: HTTP 400: ValidationException: Input is too long for requested model.",
      "bedrock: stream error: validationException: The model returned the following errors: prompt is too long",
      "anthropic: HTTP 413: Request exceeds the maximum allowed number of bytes.",
    }) do
      assert.truthy(llm.is_context_overflow(e), e)
      assert.falsy(llm.is_throttle(e), e)
    end
    for _, e in ipairs({ "anthropic: HTTP 400: messages: field required", "openai: HTTP 429: too long a wait",
                         "anthropic: HTTP 401: invalid x-api-key", nil }) do
      assert.falsy(llm.is_context_overflow(e), e)
    end
  end)

  it("recognises throttling and overload", function()
    for _, e in ipairs({ "anthropic: HTTP 429: Number of request tokens has exceeded your per-minute rate limit",
                         "anthropic: HTTP 529: Overloaded", "bedrock: HTTP 429: ThrottlingException: Too many requests",
                         "bedrock: stream error: throttlingException: slow down",
                         "anthropic: stream error: Overloaded",
                         "bedrock: stream error: throttlingException: Too many tokens, please wait",
                         "openai: HTTP 429: Rate limit reached (after anthropic: HTTP 500: boom)" }) do
      assert.truthy(llm.is_throttle(e), e)
    end
    assert.falsy(llm.is_throttle("openai: HTTP 400: bad"))
    -- only the chain's final failure counts, and an overflow is not a rate limit
    assert.falsy(llm.is_throttle("openai: HTTP 401: bad key (after anthropic: HTTP 429: slow down)"))
    assert.falsy(llm.is_throttle("bedrock: HTTP 400: ValidationException: Too many tokens in the input"))
  end)

  it("falls back only after retryable or provider-side failures", function()
    for _, e in ipairs({ "anthropic: HTTP 429: x", "openai: HTTP 500: x", "bedrock: HTTP 503: x", "openai: HTTP 408: x",
                         "anthropic: http: Couldn't connect to server (http://127.0.0.1:1/v1/messages)",
                         "openai: stream error: x", "anthropic: stream ended early", "openai: bad response: no choices",
                         "bedrock: event-stream message CRC mismatch" }) do
      assert.truthy(llm.can_fall_back(e), e)
    end
    for _, e in ipairs({ "anthropic: HTTP 400: prompt is too long", "openai: HTTP 401: bad key",
                         "bedrock: HTTP 403: AccessDeniedException: no", "anthropic: HTTP 404: model not found",
                         "anthropic: unsupported content block type x" }) do
      assert.falsy(llm.can_fall_back(e), e)
    end
  end)

  it("redacts secrets", function()
    assert.equal("bad key [redacted] and [redacted]!", llm.redact("bad key sk-123456 and sk-123456!", { "sk-123456" }))
  end)
end)

describe("llm.client", function()
  local KEY = "sk-llm-spec-key-42"
  local good = start_server({ turns = A({ { content = A({ { type = "text", text = "from the fallback" } }) } }) })

  it("is refused up front when any entry is misconfigured", function()
    with_env(env({ K = KEY, MISSING = false }), function()
      local c, err = llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K",
        fallback = { { provider = "openai", api_key_env = "MISSING" } } })
      assert.is_nil(c)
      assert.equal("fallback 1: openai provider: no API key (set $MISSING)", err)
      c, err = llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K", fallback = { {} } })
      assert.is_nil(c)
      assert.equal("llm.fallback[1] needs a provider", err)
      c, err = llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K", fallback = "openai" })
      assert.is_nil(c)
      assert.match("must be a list", err)
    end)
  end)

  it("answers from the primary when it works, with each entry's own model", function()
    with_env(env({ K = KEY }), function()
      local c = assert(llm.client(db, { name = "p", model = "proc-model" }, { provider = "anthropic", api_key_env = "K",
        base_url = good.url, fallback = { { provider = "openai", api_key_env = "K", base_url = good.url .. "/v1" } } }))
      assert.equal("proc-model", c.model)
      local r = assert(c:complete(request()))
      assert.equal("anthropic", r.provider)
      assert.equal("proc-model", r.model_version)
      assert.equal("proc-model", requests(good)[#requests(good)].body.model)
    end)
  end)

  it("moves to the next entry after a provider-side failure and records who answered", function()
    local bad = start_server({ turns = A({ { error = { status = 529, message = "Overloaded" },
                                             content = A({ { type = "text", text = "primary again" } }) } }) })
    with_env(env({ K = KEY }), function()
      local c = assert(llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K", base_url = bad.url,
        fallback = { { provider = "openai", model = "gpt-fallback", api_key_env = "K", base_url = good.url .. "/v1" },
                     { provider = "scripted" } } }))
      local seen = {}
      local texts = {}
      local r = assert(c:complete(request(), { on_fallback = function(info) seen[#seen + 1] = info end,
                                              on_text = function(t) texts[#texts + 1] = t end }))
      assert.equal("from the fallback", r.content[1].text)
      assert.equal("from the fallback", table.concat(texts))
      assert.equal("openai", r.provider)
      assert.equal("gpt-fallback", r.model_version)
      assert.equal("gpt-fallback", c.model)
      assert.equal(1, #seen)
      assert.same({ from = "anthropic/claude-sonnet-4-5", to = "openai/gpt-fallback",
                    error = "anthropic: HTTP 529: Overloaded" }, seen[1])
      local sent = requests(good)[#requests(good)]
      assert.equal("gpt-fallback", sent.body.model)
      assert.equal(true, sent.body.stream)
      -- The fake fails a position once: the primary answers the next call.
      r = assert(c:complete(request()))
      assert.equal("anthropic", r.provider)
      assert.equal("primary again", r.content[1].text)
    end)
  end)

  it("does not fall back after a request error and keeps the context overflow recognisable", function()
    local msg = "prompt is too long: 212000 tokens > 200000 maximum"
    local bad = start_server({ turns = A({ { error = { status = 400, message = msg } } }) })
    with_env(env({ K = KEY }), function()
      local before = #requests(good)
      local c = assert(llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K", base_url = bad.url,
        fallback = { { provider = "openai", api_key_env = "K", base_url = good.url .. "/v1" } } }))
      local r, err = c:complete(request())
      assert.is_nil(r)
      assert.equal("anthropic: HTTP 400: " .. msg, err)
      assert.truthy(llm.is_context_overflow(err))
      assert.equal(before, #requests(good), "the fallback was not called")
    end)
  end)

  it("reports every failure when the whole chain fails, with keys redacted", function()
    local echo = start_server({ turns = A({ { error = { status = 503,
                                                        message = "upstream rejected key " .. KEY } } }) })
    with_env(env({ K = KEY }), function()
      local c = assert(llm.client(db, { name = "p" }, { provider = "openai", api_key_env = "K", base_url = echo.url,
        fallback = { { provider = "anthropic", api_key_env = "K", base_url = "http://127.0.0.1:1" } } }))
      local r, err = c:complete(request())
      assert.is_nil(r)
      assert.match("^anthropic: http: .*%(after openai: HTTP 503: upstream rejected key %[redacted%]%)$", err)
      assert.falsy(err:find(KEY, 1, true))
    end)
  end)

  it("bounds each attempt by opts.timeout_ms and then falls back", function()
    local slow = start_server({ turns = A({ { delay_ms = 3000, content = A({ { type = "text", text = "late" } }) } }) })
    with_env(env({ K = KEY }), function()
      local c = assert(llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K", base_url = slow.url,
        fallback = { { provider = "openai", api_key_env = "K", base_url = good.url .. "/v1" } } }))
      local t0 = core.sys.monotonic_ms()
      local r = assert(c:complete(request(), { timeout_ms = 200 }))
      assert(core.sys.monotonic_ms() - t0 < 2000, "the slow primary was cut off")
      assert.equal("openai", r.provider)
    end)
  end)

  it("falls back to bedrock (and the scripted provider) too", function()
    local bad = start_server({ turns = A({ { error = { status = 500, message = "boom" } } }) })
    local vars = env({ K = KEY, AWS_ACCESS_KEY_ID = "AKID", AWS_SECRET_ACCESS_KEY = "secret-1",
                       AWS_REGION = "us-west-2" })
    with_env(vars, function()
        local c = assert(llm.client(db, { name = "p" }, { provider = "openai", api_key_env = "K",
          base_url = bad.url .. "/v1", fallback = { { provider = "bedrock", model = "amazon.nova-pro-v1:0",
          base_url = good.url } } }))
        local r = assert(c:complete(request()))
        assert.equal("bedrock", r.provider)
        assert.equal("amazon.nova-pro-v1:0", r.model_version)
        assert.equal("/model/amazon.nova-pro-v1%3A0/converse", requests(good)[#requests(good)].path)
        c = assert(llm.client(db, { name = "p" }, { provider = "anthropic", api_key_env = "K",
          base_url = "http://127.0.0.1:1", fallback = { { provider = "scripted" } } }))
        r = assert(c:complete(request()))
        assert.equal("scripted", r.provider)
        assert.equal("scripted answer", r.content[1].text)
      end)
  end)
end)

for _, s in ipairs(servers) do
  core.sys.kill(s.pid)
  s.pipe:close()
  os.remove(s.script)
  os.remove(s.log)
end
