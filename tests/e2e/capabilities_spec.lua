-- Capabilities through a running node: a lua process uses fs_dir, channels,
-- http, web_fetch and secrets against a loopback web server (tests/e2e/tiny_web.js);
-- web_fetch refuses hosts outside its domains, also behind a redirect.

local core = require "cogos.core"
local harness = require "harness"

local shquote = harness.shquote

-- Starts tiny_web.js for the world; returns its base URL.
local function tiny_web(w)
  local pidfile, portfile = w.dir .. "/web.pid", w.dir .. "/web.port"
  os.execute(string.format("node %s/tests/e2e/tiny_web.js >%s 2>&1 & echo $! >%s", core.root,
    shquote(portfile), shquote(pidfile)))
  w.pids[#w.pids + 1] = tonumber(harness.wait(function() return harness.slurp(pidfile):match("%d+") end, 5000,
    "tiny_web pid"))
  local port = harness.wait(function() return harness.slurp(portfile):match("listening (%d+)") end, 10000,
    "tiny_web to listen")
  return "http://127.0.0.1:" .. port
end

describe("capabilities in a running node", function()
  local w
  before_each(function() w = harness.world({ COGOS_SECRET_API_TOKEN = "tok-123" }) end)
  after_each(function() w:close() end)

  it("a lua process uses fs_dir, channels, http, web_fetch and secrets within their scopes", function()
    w:boot()
    local base = tiny_web(w)
    local code = table.concat({
      "local base = " .. string.format("%q", base),
      "folder.get('hello.txt').write('hi from fs_dir')",
      "assert(channels.create('cap:out'))",
      "local r = assert(http.request{method = 'POST', url = base .. '/echo', body = 'ping'})",
      "local page = assert(web.extract_text(base .. '/in'))",
      "assert(channels.send('cap:out', {status = r.status, echo = json.decode(r.body).body, title = page.title,"
        .. " secret = secrets.get('api_token').value}))",
      "print(select(2, pcall(web.fetch, 'http://example.com/')))",
      "print(web.fetch(base .. '/out'))",
      "print(select(2, pcall(http.request, {method = 'GET', url = base .. '/echo'})))",
      "print(select(2, pcall(channels.send, 'other', {})))",
    }, "\n")
    w:ok("cogos process create capuser --executor lua"
      .. " --capability " .. shquote('folder=fs_dir:{"prefix":"work/"}')
      .. " --capability " .. shquote('channels:{"names":["cap:*"]}')
      .. " --capability " .. shquote('http:{"hosts":["127.0.0.1"],"methods":["POST"]}')
      .. " --capability " .. shquote('web=web_fetch:{"domains":["127.0.0.1"]}')
      .. " --capability " .. shquote('secrets:{"keys":["api_*"]}')
      .. " --content " .. shquote(code))
    local runs = w:wait_runs(1, "capuser", 20000)
    assert.equal("completed", runs[1].status, runs[1].error)
    assert.equal("hi from fs_dir", w:ok("cogos file get work/hello.txt"))
    local msgs = w:ok("cogos channel read cap:out --json")
    assert.equal(1, #msgs)
    assert.equal(200, msgs[1].payload.status)
    assert.equal("ping", msgs[1].payload.echo)
    assert.equal("Tiny & Page", msgs[1].payload.title)
    assert.equal("tok-123", msgs[1].payload.secret)
    local output = w:ok("cogos run show " .. runs[1].id .. " --json").result.output
    assert.match("permission denied: web%.fetch: host 'example%.com' is not within domains '127%.0%.0%.1'", output)
    assert.match("nil\thost 'outside%.invalid' is not within domains '127%.0%.0%.1'", output)
    assert.match("permission denied: http%.request: 'GET' is not within methods 'POST'", output)
    assert.match("permission denied: channels%.send: 'other' matches none of names 'cap:%*'", output)
  end)
end)
