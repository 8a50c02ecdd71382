-- make bench: capabilities (figures printed, never asserted).
--   the scope algebra from Lua (core.sandbox.narrow / covers), grant:scope in a
--   sandbox, and calls through cogos.caps.dispatcher against a real store:
--   files.read of a small file, fs_dir.get (a sub-grant) then read through it.

local core = require "cogos.core"
local caps = require "cogos.caps"

local now = core.sys.monotonic_ms

local function line(what, us)
  print(string.format("%-58s %8.2f µs/op", what, us))
end

local function per_op(n, fn)
  local t0 = now()
  fn(n)
  return (now() - t0) * 1000 / n
end

local P = { prefix = "a/", ops = { "read", "write" }, names = { "io:*" } }
local C = { prefix = "a/b/", ops = { "read" }, names = { "io:x*" } }
line("core.sandbox.narrow (3 keys)", per_op(100000, function(n)
  for _ = 1, n do core.sandbox.narrow(P, C) end
end))
line("core.sandbox.covers (3 keys)", per_op(100000, function(n)
  for _ = 1, n do core.sandbox.covers(P, C) end
end))

local dir = io.popen("mktemp -d /tmp/cogos-bench-caps.XXXXXX"):read("l")
local db = assert(core.store.open(dir .. "/cogos.db"))
db:migrate()
local p = db:process_upsert({ name = "bench", mode = "one_shot", executor = "lua", content = "" })
for _, t in ipairs({ "files", "fs_dir" }) do db:capability_upsert({ name = t, handler = t }) end
db:grant_add(p.id, { capability = "files", name = "files", config = { prefix = "n/" } })
db:grant_add(p.id, { capability = "fs_dir", name = "folder", config = { prefix = "n/" } })
db:file_write("n/small.md", "a small note\n")
local list = caps.grants(db, p)
local sb = core.sandbox.new({ instructions = 1000000000, memory = 64 * 1024 * 1024, deadline_ms = 600000,
  grants = caps.sandbox_grants(list), dispatch = caps.dispatcher(list, { db = db, process = p }) })

local function in_sandbox(what, n, body)
  local t0 = now()
  local _, err = sb:run("for i = 1, " .. n .. " do " .. body .. " end")
  assert(not err, err)
  line(what, (now() - t0) * 1000 / n)
end

in_sandbox("files.read of a small file (sandbox -> dispatcher -> store)", 20000, "files.read('n/small.md')")
in_sandbox("grant:scope{prefix} (a narrowed copy)", 10000, "files:scope{prefix = 'n/a/'}")
in_sandbox("fs_dir.get (a sub-grant) + read through it", 5000, "folder.get('small.md').read()")

sb:close()
db:close()
core.sys.rm_rf(dir)
