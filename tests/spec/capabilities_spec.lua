-- The capabilities (capabilities/*.lua) and their scope algebra (core/cap.h):
-- each capability runs in a real sandbox against a real store on a temp file,
-- with dispatch wired as the executor wires it (cogos.caps.dispatcher).
-- Reference scenarios 31–35 (cogos-spec §11) are marked "scenario N".

local core = require "cogos.core"
local caps = require "cogos.caps"
local prompt = require "cogos.prompt"

local json = core.json
local narrow, covers, allows = core.sandbox.narrow, core.sandbox.covers, core.sandbox.allows

local function tmpdir()
  return io.popen("mktemp -d /tmp/cogos-caps.XXXXXX"):read("l")
end

-- A world: a store, a process `p` holding `grants` ({name, type, config}), a
-- run of it, and a sandbox whose dispatch is the executor's.
local World = {}
World.__index = World

local function world(grants, opts)
  opts = opts or {}
  local dir = tmpdir()
  local db = assert(core.store.open(dir .. "/cogos.db"))
  db:migrate()
  local p = db:process_upsert({ name = opts.name or "p", mode = "one_shot", executor = "lua", content = "" })
  for _, g in ipairs(grants) do
    if not db:capability_get(g.type) then
      assert(db:capability_upsert({ name = g.type, handler = g.handler or g.type }))
    end
    assert(db:grant_add(p.id, { capability = g.type, name = g.name, config = g.config }))
  end
  local run = assert(db:dispatch(p.id))
  local list = caps.grants(db, p)
  local probe = {}
  local sgrants = caps.sandbox_grants(list)
  -- probe.take(x): records what arrives (to see grants passed as arguments)
  sgrants[#sgrants + 1] = { name = "probe", type = "probe", methods = { take = { op = "take" } } }
  local dispatch = caps.dispatcher(list, { db = db, process = p, run = run, cogent_dir = dir })
  local sb = core.sandbox.new({ memory = 16 * 1024 * 1024, instructions = 50000000, deadline_ms = 60000,
    grants = sgrants,
    dispatch = function(g, m, ...)
      if g == "probe" then
        probe[#probe + 1] = { ... }
        return true
      end
      return dispatch(g, m, ...)
    end })
  return setmetatable({ dir = dir, db = db, process = p, run_row = run, sb = sb, probe = probe }, World)
end

function World:run(code)
  return self.sb:run(code)
end

-- Runs code that must succeed; returns its output.
function World:ok(code)
  local out, err = self.sb:run(code)
  if err then error("code failed: " .. tostring(err) .. "\n" .. tostring(out), 2) end
  return out
end

function World:close()
  self.sb:close()
  self.db:close()
  core.sys.rm_rf(self.dir)
end

describe("scope algebra", function()
  it("ops narrow to a subset; asking for more is an error naming the key", function()
    local s = assert(narrow({ ops = { "read", "write" } }, { ops = { "read" } }))
    assert.same({ "read" }, s.ops)
    local r, err = narrow({ ops = { "read" } }, { ops = { "read", "write" } })
    assert.is_nil(r)
    assert.match("ops: 'write' is not within 'read'", err)
    assert.truthy(json.is_array(assert(narrow({ ops = {} }, {})).ops), "an empty list stays a list")
  end)

  it("a prefix narrows only by extending; dot segments are refused (scenario 31)", function()
    assert.equal("a/b/", assert(narrow({ prefix = "a/" }, { prefix = "a/b/" })).prefix)
    local r, err = narrow({ prefix = "a/" }, { prefix = "b/" })
    assert.is_nil(r)
    assert.match("prefix 'b/' does not extend 'a/'", err)
    assert.error(function() narrow({ prefix = "a/" }, { prefix = "a/../b/" }) end, "'%.' or '%.%.' path segment")
    assert.falsy(allows({ prefix = "notes/" }, "prefix", "notes/../secret"))
    assert.falsy(allows({ prefix = "notes/" }, "prefix", "notes/./x"))
    assert.falsy(allows({ prefix = "notes/" }, "prefix", "/notes/x"))
    assert.truthy(allows({ prefix = "notes/" }, "prefix", "notes/a..b/x"))
  end)

  it("names and keys: every narrower pattern must be covered by a wider one", function()
    assert.truthy(narrow({ names = { "io:*" } }, { names = { "io:discord:*", "io:a?" } }))
    assert.truthy(narrow({ names = { "io:*", "demo:x" } }, { names = { "demo:x" } }))
    local r, err = narrow({ names = { "io:*" } }, { names = { "*" } })
    assert.is_nil(r)
    assert.match("names: '%*' is not within 'io:%*'", err)
    assert.is_nil((narrow({ keys = { "a?" } }, { keys = { "a*" } })))
    assert.truthy(narrow({ keys = { "a*" } }, { keys = { "a?" } }))
  end)

  it("domains and hosts: equal or a subdomain; URLs are parsed, tricks refused", function()
    assert.truthy(narrow({ domains = { "example.com" } }, { domains = { "api.example.com" } }))
    assert.is_nil((narrow({ domains = { "example.com" } }, { domains = { "example.org" } })))
    assert.is_nil((narrow({ hosts = { "api.example.com" } }, { hosts = { "example.com" } })))
    local d = { domains = { "example.com" } }
    assert.truthy(allows(d, "domains", "https://EXAMPLE.com/x"))
    assert.truthy(allows(d, "domains", "http://a.b.example.com:8080/p?q"))
    assert.falsy(allows(d, "domains", "https://example.com@evil.com/"))
    assert.falsy(allows(d, "domains", "https://evilexample.com/"))
    assert.falsy(allows(d, "domains", "https://evil.com\\@example.com/"))
    assert.falsy(allows(d, "domains", "https://example.com.evil.com/"))
    assert.error(function() narrow({ domains = { "http://x/y" } }, {}) end, "not a host name")
  end)

  it("read_only is sticky, budgets only shrink, key never changes", function()
    local r, err = narrow({ read_only = true }, { read_only = false })
    assert.is_nil(r)
    assert.match("read_only cannot be turned off", err)
    assert.equal(true, assert(narrow({ read_only = true }, { prefix = "x" })).read_only)
    assert.equal(5, assert(narrow({ max_bytes = 10 }, { max_bytes = 5 })).max_bytes)
    assert.is_nil((narrow({ query_budget = 10 }, { query_budget = 11 })))
    assert.is_nil((narrow({ key = "a" }, { key = "b" })))
    assert.equal("a", assert(narrow({ key = "a" }, { key = "a" })).key)
    assert.same({ "GET" }, assert(narrow({ methods = { "GET", "POST" } }, { methods = { "get" } })).methods)
  end)

  it("the child inherits what it does not restate; covers needs it restated", function()
    local s = assert(narrow({ prefix = "a/", ops = { "read" } }, { prefix = "a/b/" }))
    assert.same({ prefix = "a/b/", ops = { "read" } }, { prefix = s.prefix, ops = s.ops })
    assert.truthy(covers({}, { prefix = "x" }), "unscoped covers anything")
    assert.truthy(covers({}, {}))
    local ok, why = covers({ prefix = "a/" }, {})
    assert.falsy(ok, "a scoped parent never covers an unscoped child")
    assert.match("prefix is restricted by the parent", why)
    assert.truthy(covers({ prefix = "a/", ops = { "read" } }, { prefix = "a/b/", ops = { "read" } }))
    assert.falsy(covers({ prefix = "a/", ops = { "read" } }, { prefix = "a/b/" }))
  end)

  it("unknown keys cannot be narrowed; malformed scopes raise", function()
    local r, err = narrow({ region = "eu" }, {})
    assert.is_nil(r)
    assert.match("scope key 'region' has no narrowing rule", err)
    assert.falsy(covers({ region = "eu" }, { region = "eu" }))
    assert.error(function() narrow({ ops = "read" }, {}) end, "scope.ops must be a list of strings")
    assert.error(function() narrow({ read_only = "yes" }, {}) end, "read_only must be a boolean")
    assert.error(function() allows({}, "nope", "x") end, "unknown scope key 'nope'")
  end)
end)

describe("grants in the sandbox", function()
  it("grant:scope returns a narrower copy and leaves the original untouched (scenario 31)", function()
    local w = world({ { name = "folder", type = "fs_dir", config = { prefix = "a/" } } })
    w.db:file_write("a/b/x", "bx")
    w.db:file_write("a/c", "c")
    local out = w:ok([[
      local sub = folder:scope{prefix = "a/b/"}
      print(sub.get("x").read().content)
      print(pcall(sub.get, "../c"))
      print(pcall(folder.scope, folder, {prefix = "b/"}))
      local ro = folder:scope{read_only = true}
      print(pcall(ro.scope, ro, {read_only = false}))
      print(pcall(ro.get("c").write, "changed"))
      print(folder.get("c").read().content)
      local lo = folder:scope{ops = {"list"}}
      print(pcall(lo.get, "c"))
      print(pcall(lo.scope, lo, {ops = {"list", "get"}}))]])
    assert.match("^bx\n", out)
    assert.match("\nfalse\tpermission denied: folder%.get: 'a/b/%.%./c' has a '%.' or '%.%.' path segment", out)
    assert.match("\nfalse\t[^\n]*permission denied: folder%.scope: prefix 'b/' does not extend 'a/'", out)
    assert.match("\nfalse\t[^\n]*read_only cannot be turned off", out)
    assert.match("\nfalse\t[^\n]*op 'write' is not allowed %(ops: 'read'%)", out)
    assert.match("\nc\n", out)
    assert.match("\nfalse\t[^\n]*op 'get' is not allowed", out)
    assert.match("\nfalse\t[^\n]*ops: 'get' is not within 'list'", out)
    w:close()
  end)

  it("a narrowed copy of a type whose handler has another name still reaches its module", function()
    local w = world({ { name = "notes", type = "notebook", handler = "files", config = { prefix = "n/" } } })
    w.db:file_write("n/a/x", "deep")
    assert.equal("deep\n", w:ok([[print(notes:scope{prefix = "n/a/"}.read("n/a/x").content)]]))
    w:close()
  end)

  it("prefix enforcement: reads inside work, others raise (scenario 32)", function()
    local w = world({ { name = "files", type = "files", config = { prefix = "notes/", ops = { "read" } } } })
    w.db:file_write("notes/x", "hello")
    w.db:file_write("other", "no")
    assert.equal("hello\n", w:ok([[print(files.read("notes/x").content)]]))
    local _, err = w:run([[files.read("other")]])
    assert.match("permission denied: files.read: 'other' is outside prefix 'notes/'", err)
    _, err = w:run([[files.write("notes/x", "y")]])
    assert.match("permission denied: files.write: op 'write' is not allowed", err)
    _, err = w:run([[files.read("notes/../other")]])
    assert.match("permission denied: files.read: 'notes/%.%./other' has a '%.' or '%.%.' path segment", err)
    w:close()
  end)

  it("delegation: a narrowed grant passed on arrives as a descriptor the parent covers (scenario 33)", function()
    local parent = { prefix = "/data/", ops = { "read" } }
    local w = world({ { name = "files", type = "files", config = parent } })
    w:ok([[
      probe.take({files = files:scope{prefix = "/data/sub/"}})
      probe.take({files = files})
      probe.take({{["$grant"] = "files", scope = {}}})]])
    local sub, same, forged = w.probe[1][1].files, w.probe[2][1].files, w.probe[3][1][1]
    assert.truthy(caps.is_grant(sub) and caps.is_grant(same))
    assert.equal("files", sub.type)
    assert.equal("/data/sub/", sub.scope.prefix)
    assert.truthy(covers(parent, sub.scope), "narrower: allowed")
    assert.truthy(covers(parent, same.scope), "equal: allowed")
    assert.falsy(covers(parent, {}), "unscoped: refused")
    assert.falsy(covers(parent, { prefix = "/other/", ops = { "read" } }), "other prefix: refused")
    assert.falsy(covers(parent, { prefix = "/data/", ops = { "read", "write" } }), "more ops: refused")
    assert.falsy(caps.is_grant(forged), "a table from the sandbox is never a grant")
    w:close()
  end)

  it("arguments holding grants share one byte budget: a table referenced many times cannot blow up the node",
    function()
    local w = world({ { name = "files", type = "files", config = { prefix = "n/" } } })
    local _, err = w:run([[
      local x = {}
      for i = 1, 1000 do x[i] = ("y"):rep(1000) end
      local t = {files}
      for i = 1, 5000 do t[#t + 1] = x end
      probe.take(t)]])
    assert.match("probe%.take: argument 1: more than %d+ bytes", err)
    assert.equal(0, #w.probe)
    w:close()
  end)

  it("help, hidden scope, persistence and injected names (scenario 35)", function()
    local w = world({ { name = "files", type = "files", config = { prefix = "n/" } } })
    local out = w:ok([[
      help(files)
      print(pcall(function() return files.prefix end))
      print(getmetatable(files))
      keep = 41
      files = nil]])
    assert.match("^files: \n  append%(key, text%)", out)
    assert.match("\n  edit%(key, old, new", out)
    assert.match("\nfalse\t[^\n]*has no method 'prefix'\nnil\n", out)
    assert.equal("42\ttrue\n", w:ok([[print(keep + 1, files ~= nil)]]))
    w:close()
  end)
end)

describe("files", function()
  it("reads slices, writes versions, appends, edits and searches", function()
    local w = world({ { name = "files", type = "files", config = { prefix = "n/" } } })
    local out = w:ok([[
      local r = files.write("n/a", "one\ntwo\nthree")
      print(r.version, r.created, r.changed)
      print(files.write("n/a", "one\ntwo\nthree").changed)
      local s = files.read("n/a", {offset = 1, limit = 1})
      print(s.content, s.total_lines)
      print(files.read("n/a", {offset = -1}).content)
      print(files.append("n/a", "\nfour").version)
      print(files.edit("n/a", "two", "TWO").version)
      print(files.edit("n/a", "nope", "x"))
      files.write("n/b", "x x")
      print(files.edit("n/b", "x", "y"))
      print(files.edit("n/b", "x", "y", true).replacements, files.read("n/b").content)
      print(#files.search("n/"), files.read("n/missing"))]])
    assert.equal("1\ttrue\ttrue\nfalse\ntwo\t3\nthree\n2\n3\n"
      .. "nil\tedit: text not found in 'n/a'\n"
      .. "nil\tedit: text occurs 2 times in 'n/b'; pass replace_all = true or more context\n"
      .. "2\ty y\n2\tnil\tunknown file 'n/missing'\n", out)
    assert.equal("one\nTWO\nthree\nfour", w.db:file_get("n/a").content)
    w:close()
  end)
end)

describe("fs_dir", function()
  local function fill(db)
    db:file_write("d/readme.md", "# hi\nline two\nTODO: x\nend")
    db:file_write("d/src/a.lua", "local a = 1\n-- TODO: more")
    db:file_write("d/src/deep/b.lua", "return 2")
    db:file_write("outside.md", "TODO: secret")
  end

  it("lists, gets file handles with relative keys, and refuses escapes", function()
    local w = world({ { name = "folder", type = "fs_dir", config = { prefix = "d/" } } })
    fill(w.db)
    local out = w:ok([[
      print(#folder.list(), folder.list("src/")[1].key)
      local f = folder.get("readme.md")
      print(tostring(f), f.key(), f.head(1), f.tail(1))
      print(f.read({offset = 1, limit = 2}).content)
      print(f.append("\nmore").version, f.edit("more", "MORE").version)
      print(f.write("new").changed, folder.get("d/readme.md").read().content)
      print(pcall(folder.get, "../outside.md"))
      print(pcall(folder.get, "/etc/passwd"))
      print(folder.get("nofile").read())]])
    assert.match("^3\td/src/a%.lua\n", out)
    assert.match("\ngrant d/readme%.md\td/readme%.md\t# hi\tend\n", out)
    assert.match("\nline two\nTODO: x\n", out)
    assert.match("\n2\t3\ntrue\tnew\n", out)
    assert.match("\nfalse\tpermission denied: folder%.get: 'd/%.%./outside%.md' has a '%.' or '%.%.' path segment\n",
      out)
    assert.match("\nfalse\tpermission denied: folder%.get: '/etc/passwd' is outside prefix 'd/'\n", out)
    assert.match("\nnil\tunknown file 'd/nofile'\n", out)
    w:close()
  end)

  it("greps with context, globs with * ** ?, renders a tree", function()
    local w = world({ { name = "folder", type = "fs_dir", config = { prefix = "d/", read_only = true } } })
    fill(w.db)
    local out = w:ok([[
      local g = folder.grep("TODO", nil, 10, 1)
      for _, f in ipairs(g) do
        for _, m in ipairs(f.matches) do print(f.key, m.line, m.text, #m.before, #m.after) end
      end
      print(table.concat(folder.glob("*.md"), ","))
      print(table.concat(folder.glob("src/*.lua"), ","))
      print(table.concat(folder.glob("**/*.lua"), ","))
      print(table.concat(folder.glob("src/**/b.?ua"), ","))
      print(folder.tree())
      print(folder.grep("(", nil))
      print(pcall(folder.get("readme.md").write, "x"))]])
    assert.match("^d/readme%.md\t2\tTODO: x\t1\t1\nd/src/a%.lua\t1\t%-%- TODO: more\t1\t0\n", out)
    assert.falsy(out:find("outside"), "grep stays inside the prefix")
    assert.match("\nd/readme%.md\nd/src/a%.lua\nd/src/a%.lua,d/src/deep/b%.lua\nd/src/deep/b%.lua\n", out)
    assert.match("\nd/\n├── readme%.md\n└── src/\n    ├── a%.lua\n    └── deep/\n        └── b%.lua\n", out)
    assert.match("\nnil\tgrep: bad pattern", out)
    assert.match("op 'write' is not allowed %(ops: 'read'%)", out)
    w:close()
  end)
end)

describe("channels and schemas", function()
  it("creates, sends, reads, subscribes, closes (owner only) and filters list by names", function()
    local w = world({ { name = "channels", type = "channels", config = { names = { "t:*" } } },
      { name = "schemas", type = "schemas", config = { names = { "s*" } } } })
    assert(w.db:schema_upsert("sig", { fields = { n = "number" } }))
    assert(w.db:schema_upsert("other", { fields = { x = "string" } }))
    w.db:channel_create("u:hidden")
    w.db:channel_create("t:foreign")
    local out = w:ok([[
      print(channels.create("t:a").created, channels.create("t:a").created)
      print(channels.send("t:a", {n = 1}).channel, #channels.read("t:a"))
      print(table.concat(channels.list(), ","))
      print(channels.get("t:a").owner ~= nil, channels.get("t:a").closed)
      print(channels.subscribe("t:a").channel)
      print(channels.create("t:typed", "sig").created, channels.schema("t:typed").fields.n)
      print(channels.send("t:typed", {n = "no"}))
      print(channels.close("t:foreign"))
      print(channels.close("t:a").name, channels.get("t:a").closed)
      print(channels.send("t:a", {n = 2}))
      print(pcall(channels.send, "u:hidden", {}))
      print(table.concat(schemas.list(), ","), schemas.get("sig").definition.fields.n)
      print(pcall(schemas.get, "other"))]])
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("true\tfalse", lines[1])
    assert.equal("t:a\t1", lines[2])
    assert.equal("t:a,t:foreign", lines[3])
    assert.equal("true\tfalse", lines[4])
    assert.equal("t:a", lines[5])
    assert.equal("true\tnumber", lines[6])
    assert.match("^nil\t", lines[7])
    assert.equal("nil\tonly the channel owner can close it", lines[8])
    assert.match("^t:a\ttrue$", lines[9])
    assert.match("^nil\t.*closed", lines[10])
    assert.match("^false\t.*'u:hidden' matches none of names 't:%*'", lines[11])
    assert.equal("sig\tnumber", lines[12])
    assert.match("^false\t.*permission denied: schemas%.get", lines[13])
    local handlers = w.db:handler_list({ process = w.process.id })
    local found = false
    for _, h in ipairs(handlers) do if h.channel == "t:a" or h.channel_name == "t:a" then found = true end end
    assert.truthy(found, "subscribe made a handler for the calling process")
    w:close()
  end)
end)

describe("me", function()
  it("knows itself, writes its streams and hands out its own folders and files", function()
    local w = world({ { name = "me", type = "me", config = {} } })
    local pid, rid = w.process.id, w.run_row.id
    w.db:send("io:stdin:p", { text = "typed" })
    local out = w:ok([[
      local i = me.info()
      print(i.process, i.run_id ~= nil)
      print(me.stdout("out!"), me.stdin()[1])
      local pdir = me.process()
      print(pdir.get("notes").write("n").key)
      print(me.run().get("step").write("s").key)
      print(me.tmp().write("t").key, me.scratch().append("a").key, me.log().key())
      print(pcall(pdir.get, "../other/x"))
      print(me.read("notes"))]])
    assert.match("^p\ttrue\ntrue\ttyped\n", out)
    local function has(x) assert.truthy(out:find(x, 1, true), x .. " in " .. out) end
    has("\n/proc/" .. pid .. "/notes\n")
    has("\n/proc/" .. pid .. "/runs/" .. rid .. "/step\n")
    has("\n/proc/" .. pid .. "/tmp\t/proc/" .. pid .. "/scratch\t/proc/" .. pid .. "/log\n")
    assert.match("\nfalse\tpermission denied: me%.process%.get: [^\n]*path segment\n", out)
    assert.match("\nn\n$", out)
    assert.equal("out!", w.db:messages("io:stdout:p", { limit = 1 })[1].payload.text)
    w:close()
  end)
end)

describe("secrets, cogent, alerts, resources, history", function()
  it("secrets come from .secrets.json, scoped by key patterns", function()
    local w = world({ { name = "secrets", type = "secrets", config = { keys = { "api_*" } } } })
    local f = assert(io.open(w.dir .. "/.secrets.json", "w"))
    f:write('{"api_one": "s3cret", "api_obj": {"k": 1}, "db_pass": "no"}')
    f:close()
    local out = w:ok([[
      print(secrets.get("api_one").value, secrets.get("api_obj").value.k)
      print(secrets.get("api_missing"))
      print(pcall(secrets.get, "db_pass"))]])
    assert.match("^s3cret\t1\nnil\tno secret 'api_missing'\nfalse\t[^\n]*'db_pass' matches none of keys 'api_%*'",
      out)
    w:close()
  end)

  it("cogent names itself after its folder and reads its profile", function()
    local w = world({ { name = "cogent", type = "cogent", config = {} } })
    local base = w.dir:match("([^/]+)$")
    local out = w:ok([[print(cogent.name()) print((cogent.profile():match("^[^\n]+")))]])
    assert.equal(base .. "\n# " .. base .. "\n", out)
    w.db:file_write("mnt/boot/whoami/profile.md", "I am p's cogent.")
    assert.equal("I am p's cogent.\n", w:ok([[print(cogent.profile())]]))
    w:close()
  end)

  it("alerts write a row and a message on system:alerts", function()
    local w = world({ { name = "alerts", type = "alerts", config = {} } })
    local out = w:ok([[
      print(alerts.warning("disk", "almost full", {pct = 91}).severity)
      print(alerts.error("boom", "it broke").severity)
      print(alerts.warning("", "x"))]])
    assert.equal("warning\ncritical\nnil\talert_type must be a non-empty string\n", out)
    local rows = w.db:alert_list({})
    assert.equal(2, #rows)
    local msgs = w.db:messages("system:alerts", { limit = 10 })
    assert.equal(2, #msgs)
    assert.equal("p", msgs[1].payload.source)
    w:close()
  end)

  it("resources report used and remaining", function()
    local w = world({ { name = "resources", type = "resources", config = {} } })
    assert(w.db:resource_upsert({ name = "gpu", resource_type = "pool", capacity = 2 }))
    local out = w:ok([[
      local r = resources.check()
      print(#r.resources, r.resources[1].name, r.resources[1].capacity, r.resources[1].remaining ~= nil, r.available)]])
    assert.match("^1\tgpu\t2", out)
    w:close()
  end)

  it("history lists runs by process, queries and failures, within process_ids", function()
    local w = world({ { name = "history", type = "history", config = {} } })
    local db = w.db
    local q = db:process_upsert({ name = "worker-1", mode = "one_shot", executor = "lua", content = "" })
    local r1 = assert(db:dispatch(q.id))
    db:run_finish(r1.id, { status = "failed", error = "bad" })
    local out = w:ok([[
      print(#history.process("worker-1"), history.process("worker-1")[1].status)
      local q = history.query{process_name = "work*"}
      print(#q, q[1].process_name, q[1].error)
      print(#history.query{status = "running"}, #history.failed{since = "1h"})
      print(history.query{since = "yesterday"})
      print(history.process("nobody"))]])
    assert.match("^1\tfailed\n1\tworker%-1\tbad\n1\t1\nnil\tsince must be", out)
    assert.match("\nnil\tunknown process 'nobody'\n", out)
    w:close()
    local w2 = world({ { name = "history", type = "history", config = { process_ids = {} } } })
    out = w2:ok([[print(#history.query{}) print(pcall(history.process, "p"))]])
    assert.match("^0\nfalse\tpermission denied: history%.process: 'p' is outside process_ids", out)
    w2:close()
  end)
end)

describe("web_fetch and http against a loopback server", function()
  local pipe, pid, base
  local function start()
    if base then return end
    pipe = assert(io.popen("echo $$; exec node " .. core.root .. "/tests/e2e/tiny_web.js", "r"))
    pid = tonumber(pipe:read("l"))
    local port = (pipe:read("l") or ""):match("^listening (%d+)$")
    assert(port, "tiny_web.js did not start (is node installed?)")
    base = "http://127.0.0.1:" .. port
  end

  it("fetches and extracts inside the domains, follows redirects only inside, caps size", function()
    start()
    local w = world({ { name = "web", type = "web_fetch", config = { domains = { "127.0.0.1" } } } })
    local out = w:ok(string.format([[
      local base = %q
      local r = web.fetch(base .. "/page")
      print(r.status, r.url == base .. "/page", #r.body > 50)
      local t = web.extract_text(base .. "/in")
      print(t.title, t.url == base .. "/page", (t.text:gsub("\n", "|")))
      print(web.fetch(base .. "/out"))
      print(web.fetch(base .. "/loop"))
      print(web.fetch(base .. "/big"))
      print(web.fetch("ftp://127.0.0.1/x"))
      print(pcall(web.fetch, "http://localhost:1/"))]], base))
    assert.match("^200\ttrue\ttrue\nTiny & Page\ttrue\tHello|World <3\n", out)
    assert.match("\nnil\t[^\n]*host 'outside%.invalid' is not within domains '127%.0%.0%.1'\n", out)
    assert.match("\nnil\tmore than 5 redirects", out)
    assert.match("\nnil\tresponse from [^\n]* is larger than 5242880 bytes\n", out)
    assert.match("\nfalse\t[^\n]*permission denied: web%.fetch: host 'localhost' is not within domains", out)
    w:close()
  end)

  it("http requests are checked against hosts (in C) and methods", function()
    start()
    local w = world({ { name = "http", type = "http",
      config = { hosts = { "127.0.0.1" }, methods = { "GET", "POST" } } } })
    local out = w:ok(string.format([[
      local base = %q
      local r = http.request{method = "POST", url = base .. "/echo", body = "hi", headers = {["x-test"] = "v"}}
      local e = json.decode(r.body)
      print(r.status, r.headers["x-tiny"], e.method, e.body, e.header)
      print(pcall(http.request, {method = "DELETE", url = base .. "/echo"}))
      print(pcall(http.request, {url = "http://example.com/"}))
      print(pcall(http.request, "nope"))
      print(http.request{url = base .. "/echo", headers = {["x-test"] = "a\r\nx-evil: 1"}})
      print(http.request{url = base .. "/nothing"}.status)]], base))
    assert.match("^200\tyes\tPOST\thi\tv\n", out)
    assert.match("\nfalse\t[^\n]*permission denied: http%.request: 'DELETE' is not within methods", out)
    assert.match("\nfalse\t[^\n]*permission denied: http%.request: host 'example%.com' is not within hosts", out)
    assert.match("\nfalse\t[^\n]*argument 1 must be a table whose field 'url'", out)
    assert.match("\nnil\trequest: headers must map token names to strings without line breaks\n", out)
    assert.match("\n404\n$", out)
    w:close()
    core.sys.kill(pid)
    pipe:close()
  end)
end)

describe("prompt readability through grants", function()
  local function readable(grants, key) return prompt.readable(grants, key) end
  it("files (read), fs_dir (get) and file (key) grants make references readable", function()
    assert.truthy(readable({ { type = "files", config = { prefix = "a/", ops = { "read" } } } }, "a/x"))
    assert.falsy(readable({ { type = "files", config = { prefix = "a/", ops = { "write" } } } }, "a/x"))
    assert.truthy(readable({ { type = "fs_dir", config = { prefix = "mnt/boot/", read_only = true } } }, "mnt/boot/x"))
    assert.falsy(readable({ { type = "fs_dir", config = { prefix = "mnt/boot/", ops = { "list" } } } }, "mnt/boot/x"))
    assert.falsy(readable({ { type = "fs_dir", config = { prefix = "mnt/boot/" } } }, "mnt/boot/../secret"))
    assert.truthy(readable({ { type = "file", config = { key = "k.md", ops = { "read" } } } }, "k.md"))
    assert.falsy(readable({ { type = "file", config = { key = "k.md" } } }, "k.mdx"))
    assert.falsy(readable({ { type = "channels", config = {} } }, "a/x"))
  end)
end)

describe("procs.spawn placement and idle fields", function()
  it("stores required_tags and idle_timeout_ms; a bad value is one clear error and writes nothing", function()
    local w = world({ { name = "procs", type = "procs", config = {} } })
    local out = w:ok([[
      assert(procs.spawn({ name = "g", content = "", required_tags = { "gpu", "fast" } }))
      assert(procs.spawn({ name = "d", content = "", mode = "daemon", idle_timeout_ms = 5000 }))
      assert(procs.spawn({ name = "any", content = "", required_tags = {} }))
      for _, p in ipairs(procs.list()) do
        if p.name == "g" then print(table.concat(p.required_tags, ",")) end
      end]])
    assert.equal("gpu,fast", (out:gsub("%s+$", "")))
    assert.same({ "gpu", "fast" }, w.db:process_get("g").required_tags)
    assert.equal(5000, w.db:process_get("d").idle_timeout_ms)
    assert.equal("[]", json.encode(w.db:process_get("any").required_tags))
    local bad = {
      { "required_tags = 'gpu'", "spawn: required_tags must be a list of non-empty strings" },
      { "required_tags = { 'gpu', '' }", "spawn: required_tags must be a list of non-empty strings" },
      { "required_tags = { 'gpu', 7 }", "spawn: required_tags must be a list of non-empty strings" },
      { "required_tags = { gpu = true }", "spawn: required_tags must be a list of non-empty strings" },
      { "mode = 'daemon', idle_timeout_ms = 0", "spawn: idle_timeout_ms must be a positive integer (ms)" },
      { "mode = 'daemon', idle_timeout_ms = 1.5", "spawn: idle_timeout_ms must be a positive integer (ms)" },
      { "mode = 'daemon', idle_timeout_ms = '10'", "spawn: idle_timeout_ms must be a positive integer (ms)" },
      { "idle_timeout_ms = 100", "spawn: idle_timeout_ms is for daemons (mode='daemon')" },
    }
    local before = #w.db:channel_list()
    for _, case in ipairs(bad) do
      local msg = w:ok("local h, err = procs.spawn({ name = 'bad', content = '', " .. case[1] .. " }) print(h, err)")
      assert.equal("nil\t" .. case[2], (msg:gsub("%s+$", "")), case[1])
      assert.is_nil(w.db:process_get("bad"), case[1])
    end
    assert.equal(before, #w.db:channel_list(), "no channel either")
    w:close()
  end)
end)

describe("procs.spawn delegation", function()
  it("is judged against the grants the run started with, and writes the child and its grants at once", function()
    local w = world({ { name = "files", type = "files", config = { prefix = "data/" } },
      { name = "procs", type = "procs", config = {} } })
    assert(w.db:capability_upsert({ name = "secrets", handler = "secrets" }))
    -- disabled mid-run: the run keeps its authority (its sandbox still holds the grant);
    -- the child's grant is written, and held back while the capability stays disabled
    assert(w.db:capability_upsert({ name = "files", enabled = false }))
    local out = w:ok([[
      local sub = files:scope{prefix = "data/a/"}
      print(assert(procs.spawn{name = "a", content = "", capabilities = {files = sub}}).name)
      print(procs.spawn{name = "b", content = "", capabilities = {secrets = true}})
      print(procs.spawn{name = "c", content = "", capabilities = {nope = true}})
      local wider = {type = "files", scope = {prefix = "x/"}}
      print(procs.spawn{name = "d", content = "", capabilities = {files = wider}})]])
    assert.equal(table.concat({ "a",
      "nil\tspawn: Cannot delegate 'secrets': this process holds no 'secrets' grant",
      "nil\tspawn: Cannot delegate 'nope': unknown or disabled capability 'nope'",
      "nil\tspawn: Cannot delegate 'files': prefix 'x/' does not extend 'data/'", "" }, "\n"), out)
    local gs = w.db:grants("a")
    assert.equal(1, #gs)
    assert.same({ "files", "files", "data/a/" }, { gs[1].name, gs[1].capability, gs[1].config.prefix })
    for _, name in ipairs({ "b", "c", "d" }) do assert.is_nil(w.db:process_get(name), name) end
    assert.equal(0, #caps.grants(w.db, w.db:process_get("a")))
    assert(w.db:capability_upsert({ name = "files", enabled = true }))
    assert.equal(1, #caps.grants(w.db, w.db:process_get("a")))
    w:close()
  end)
end)
