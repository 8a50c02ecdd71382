-- The demo daemon through real wire formats: a fake Anthropic and a fake
-- OpenAI server on loopback answer with tool use, the node calls them.

local harness = require "harness"

local SCRIPT = {
  turns = {
    {
      content = {
        { type = "text", text = "Acting." },
        { type = "tool_use", name = "run_code", input = {
          code = "local w = assert(files.write('demo/last.md', 'via ' .. event.payload.text))\n"
            .. "assert(channels.send('demo:outbox', {text = 'done', version = w.version}))\n"
            .. "print('ok ' .. w.version)" } },
      },
      usage = { input_tokens = 120, output_tokens = 30 },
    },
    { content = { { type = "text", text = "Done." } }, usage = { input_tokens = 200, output_tokens = 5 } },
  },
}

local function check_flow(w, provider)
  w:ok([[cogos channel send demo:inbox --payload '{"text":"wire"}']])
  local runs = w:wait_runs(1, "demo")
  assert.equal("completed", runs[1].status, runs[1].error)
  assert.equal(320, runs[1].tokens_in)
  assert.equal(35, runs[1].tokens_out)
  assert.equal("via wire", w:ok("cogos file get demo/last.md"))
  assert.equal("done", w:ok("cogos channel read demo:outbox --json")[1].payload.text)
  local reqs = w:llm_requests()
  assert.equal(2, #reqs)
  local second = reqs[2].body
  local text = harness.slurp(w.llm_log)
  assert.truthy(not text:find("k%-secret"), "the key never reaches a log")
  local leaked = io.popen("grep -rl k-secret " .. harness.shquote(w.home) .. " 2>/dev/null"):read("a")
  assert.equal("", leaked, "no file of the node (logs, config, database) holds the key")
  if provider == "bedrock" then
    -- The executor streams (token events), so ConverseStream; the path is the same either way.
    assert.match("^/model/us%.anthropic%.claude%-test%-v1%%3A0/converse", reqs[1].path)
    assert.same({ "authorization", "x-amz-security-token", "sigv4:eu-central-1/bedrock" }, reqs[1].auth)
    assert.match("Capabilities", second.system[1].text)
    local last = second.messages[#second.messages]
    assert.match("ok 1", last.content[1].toolResult.content[1].text)
  elseif provider == "anthropic" then
    assert.equal("/v1/messages", reqs[1].path)
    assert.match("Capabilities", second.system)
    local last = second.messages[#second.messages]
    assert.equal("tool_result", last.content[1].type)
    assert.match("ok 1", last.content[1].content)
  else
    assert.match("/chat/completions$", reqs[1].path)
    assert.equal("system", second.messages[1].role)
    local last = second.messages[#second.messages]
    assert.equal("tool", last.role)
    assert.match("ok 1", last.content)
  end
end

describe("providers over the wire", function()
  local w
  before_each(function() w = harness.world({ FAKE_KEY = "k-secret" }) end)
  after_each(function() w:close() end)

  it("anthropic Messages API, endpoint from --llm-base-url", function()
    local url = w:fake_llm(SCRIPT, "k-secret")
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    check_flow(w, "anthropic")
  end)

  it("openai chat completions, endpoint from OPENAI_BASE_URL", function()
    local url = w:fake_llm(SCRIPT, "k-secret")
    w.env.OPENAI_BASE_URL = url .. "/v1"
    w:boot("--llm-provider openai --llm-api-key-env FAKE_KEY")
    check_flow(w, "openai")
  end)

  it("bedrock Converse signed with SigV4, credentials and region from the AWS variables", function()
    local url = w:fake_llm(SCRIPT, "k-secret")
    w.env.AWS_ACCESS_KEY_ID = "AKIDE2E"
    w.env.AWS_SECRET_ACCESS_KEY = "k-secret"
    w.env.AWS_SESSION_TOKEN = "session-e2e"
    w.env.AWS_REGION = "us-west-1" -- the cogtainer's --llm-region wins
    w.env.BEDROCK_BASE_URL = url
    w:boot("--llm-provider bedrock --llm-model us.anthropic.claude-test-v1:0 --llm-region eu-central-1")
    check_flow(w, "bedrock")
    assert.equal("us.anthropic.claude-test-v1:0", w:runs()[1].model_version)
  end)

  it("bedrock fails the run with one clear error without credentials", function()
    w.env.AWS_REGION = "eu-central-1"
    w.env.AWS_ACCESS_KEY_ID = ""
    w.env.AWS_SECRET_ACCESS_KEY = ""
    w:boot("--llm-provider bedrock")
    w:ok([[cogos channel send demo:inbox --payload '{"text":"x"}']])
    local runs = w:wait_runs(1)
    assert.equal("failed", runs[1].status)
    assert.match("bedrock: no AWS credentials %(set %$AWS_ACCESS_KEY_ID and %$AWS_SECRET_ACCESS_KEY%)", runs[1].error)
  end)

  it("falls back to the next provider of the chain when the primary is down", function()
    local url = w:fake_llm(SCRIPT, "k-secret")
    w.env.OPENAI_API_KEY = "k-secret"
    w.env.OPENAI_BASE_URL = url .. "/v1"
    local code, _, err = w:run("cogtainer create bad --type local --llm-fallback nope:x")
    assert.equal(2, code)
    assert.match("%-%-llm%-fallback: unknown provider 'nope'", err)
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url http://127.0.0.1:1"
      .. " --llm-fallback openai:gpt-fallback")
    check_flow(w, "openai")
    for _, r in ipairs(w:llm_requests()) do assert.equal("gpt-fallback", r.body.model) end
    assert.equal("gpt-fallback", w:runs()[1].model_version, "the run records the model that answered")
  end)

  it("fails the run with one clear error on a wrong key", function()
    local url = w:fake_llm(SCRIPT, "other-key")
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    w:ok([[cogos channel send demo:inbox --payload '{"text":"x"}']])
    local runs = w:wait_runs(1, "demo")
    assert.equal("failed", runs[1].status)
    assert.match("401", runs[1].error)
    assert.truthy(not runs[1].error:find("k%-secret"))
  end)
end)
