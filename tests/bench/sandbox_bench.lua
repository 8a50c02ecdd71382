-- make bench: sandbox figures (printed, never asserted): creation + a trivial run,
-- a run in a live sandbox, and one capability call from sandbox code (a trivial
-- dispatch, and files.read of a small file through the real store); handler
-- predicates (core.sandbox.predicate).

local core = require "cogos.core"
local caps = require "cogos.caps"

local now = core.sys.monotonic_ms

local function line(name, us, n)
  io.write(string.format("%-52s %8.2f us/op (n=%d)\n", name, us, n))
end

-- Best of `rounds` timings of fn(n), in us per op: the figure a quiet machine gives.
local function best(rounds, n, fn)
  local min = math.huge
  for _ = 1, rounds do
    local t0 = now()
    fn(n)
    local us = (now() - t0) * 1000 / n
    if us < min then min = us end
  end
  return min
end

local function creation(n)
  line("sandbox new + trivial run_code + close", best(5, n, function(k)
    for _ = 1, k do
      local sb = core.sandbox.new({ memory = 8 << 20, instructions = 1000000 })
      sb:run("x = 1 + 1")
      sb:close()
    end
  end), n)
  local grants = { { name = "files", type = "files", scope = { prefix = "notes/" },
    methods = { read = { op = "read", target = 1 }, write = { op = "write", target = 1 } } } }
  line("sandbox new (1 grant) + trivial run_code + close", best(5, n, function(k)
    for _ = 1, k do
      local sb = core.sandbox.new({ memory = 8 << 20, instructions = 1000000, grants = grants,
        dispatch = function() end })
      sb:run("x = 1 + 1")
      sb:close()
    end
  end), n)
  local sb = core.sandbox.new({ memory = 8 << 20, instructions = 1 << 50 })
  line("trivial run_code in a live sandbox", best(5, n, function(k)
    for _ = 1, k do sb:run("x = 1 + 1") end
  end), n)
  sb:close()
end

-- One call's cost: a run making n calls minus a run with the same loop and no call.
local function per_call(sb, call, n)
  local loop = "for i = 1, %d do %s end"
  local base = best(5, n, function(k) assert(sb:run(string.format(loop, k, "local _ = i")) ~= nil) end)
  local with = best(5, n, function(k)
    local _, err = sb:run(string.format(loop, k, call))
    assert(err == nil, err)
  end)
  return with - base
end

local function calls(n)
  local sb = core.sandbox.new({ memory = 8 << 20, instructions = 1 << 50, deadline_ms = 600000,
    grants = { { name = "open", methods = { echo = { op = "echo" } } } },
    dispatch = function(_, _, ...) return ... end })
  line("capability call, trivial dispatch (echo(i))", per_call(sb, "open.echo(i)", n), n)
  sb:close()

  local dir = io.popen("mktemp -d /tmp/cogos-sbbench.XXXXXX"):read("l")
  local db = assert(core.store.open(dir .. "/cogos.db"))
  db:migrate()
  assert(db:file_write("notes/small.md", "a small note\n", { source = "bench" }))
  local mod = assert(caps.load("files"))
  local grant = { name = "files", type = "files", config = { prefix = "notes/" }, module = mod,
    description = mod.description }
  local ctx = { db = db, grant = { name = "files", type = "files", config = grant.config } }
  sb = core.sandbox.new({ memory = 8 << 20, instructions = 1 << 50, deadline_ms = 600000,
    grants = caps.sandbox_grants({ grant }),
    dispatch = function(_, method, ...) return mod.methods[method].fn(ctx, ...) end })
  local _, err = sb:run("assert(files.read('notes/small.md').content == 'a small note\\n')")
  assert(err == nil, err)
  line("capability call, files.read of a small file (store)",
    per_call(sb, "files.read('notes/small.md')", n), n)
  sb:close()
  db:close()
  core.sys.rm_rf(dir)
end

local function predicates(n)
  local payload = '{"priority": 5, "text": "hello world", "tags": ["a", "b"]}'
  local pred = core.sandbox.predicate
  line("handler predicate (payload.priority > 3)", best(5, n, function(k)
    for _ = 1, k do pred("payload.priority > 3", payload) end
  end), n)
  line("handler predicate using the string library", best(5, n, function(k)
    for _ = 1, k do pred("payload.text:find('wor') ~= nil", payload) end
  end), n)
end

io.write("cogos sandbox bench (" .. core.version .. ")\n")
creation(20000)
calls(20000)
predicates(100000)
