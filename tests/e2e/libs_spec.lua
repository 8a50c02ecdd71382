-- libcurl and libedit are opened on first use (core/http_lib.c, core/term.c), not
-- linked: a cogos process that only uses the store never maps them nor their
-- dependencies (libcrypto, libssl, gnutls, libtinfo...), the first HTTP request maps
-- libcurl, the first history call libedit; and a library that cannot be loaded makes
-- the operation that needed it fail with one clear error.

local core = require "cogos.core"
local harness = require "harness"

local shquote, slurp = harness.shquote, harness.slurp

-- Runs `cogos lua` on code with args in env (and optional LD_LIBRARY_PATH); returns
-- code and stdout as a table of "key: value" lines.
local function child(w, code, args, env)
  local path = w.dir .. "/child.lua"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, err = w.dir .. "/child.out", w.dir .. "/child.err"
  local cmd = string.format("%s %s lua %s %s >%s 2>%s", env or "", shquote(harness.bin), shquote(path),
    table.concat(args, " "), shquote(out), shquote(err))
  local _, _, rc = os.execute(cmd)
  local res = {}
  for line in slurp(out):gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+): ?(.*)$")
    if k then res[k] = v end
  end
  assert(rc == 0, "child exited " .. tostring(rc) .. ": " .. slurp(err) .. slurp(out))
  return res
end

-- Prints which of the optional libraries (and their heaviest dependencies) are mapped.
local MAPPED = [[
local function mapped()
  local seen = {}
  for l in io.lines("/proc/self/maps") do
    local name = l:match("/(lib[%w_%-]+)%.so[%.%d]*$")
    if name then seen[name] = true end
  end
  local out = {}
  for _, lib in ipairs({ "libcurl", "libcrypto", "libssl", "libgnutls", "libedit", "libtinfo" }) do
    if seen[lib] then out[#out + 1] = lib end
  end
  return table.concat(out, " ")
end
local core = require "cogos.core"
]]

describe("optional libraries", function()
  local w
  before_each(function() w = harness.world() end)
  after_each(function() w:close() end)

  it("are mapped only once a request or the line editor needs them", function()
    local pidfile, portfile = w.dir .. "/web.pid", w.dir .. "/web.port"
    os.execute(string.format("node %s/tests/e2e/tiny_web.js >%s 2>&1 & echo $! >%s", core.root,
      shquote(portfile), shquote(pidfile)))
    w.pids[#w.pids + 1] = tonumber(harness.wait(function() return slurp(pidfile):match("%d+") end, 5000,
      "tiny_web pid"))
    local port = harness.wait(function() return slurp(portfile):match("listening (%d+)") end, 10000,
      "tiny_web to listen")
    local res = child(w, MAPPED .. [[
local dir, url = ...
print("start: " .. mapped())
local db = assert(core.store.open(dir .. "/cogos.db"))
db:migrate()
local p = assert(db:process_upsert({ name = "d", mode = "daemon" }))
db:channel_create("in")
assert(db:handler_add(p.id, "in"))
for i = 1, 100 do assert(db:send("in", { i = i })) end
assert(db:file_write("notes/a", "x"))
db:close()
print("store: " .. mapped())
local r, err = core.http.request{ url = url .. "/echo", body = "ping" }
print("status: " .. tostring(r and r.status or err))
print("http: " .. mapped())
core.term.history_add("ls")
assert(core.term.history_save(dir .. "/history"))
print("term: " .. mapped())
]], { shquote(w.dir), shquote("http://127.0.0.1:" .. port) })
    assert.equal("", res.start, "nothing optional mapped at startup")
    assert.equal("", res.store, "nothing optional mapped after store work")
    assert.equal("200", res.status)
    assert.match("libcurl", res.http)
    assert.falsy(res.http:find("libedit"), "libedit not mapped by HTTP: " .. res.http)
    assert.match("libedit", res.term)
  end)

  it("that cannot be loaded fail the operation with one clear error", function()
    -- Empty files named like the libraries come first in the search path: dlopen
    -- finds them and fails ("file too short"), as with a broken install.
    local libdir = w.dir .. "/libs"
    assert(core.sys.mkdir_p(libdir))
    for _, so in ipairs({ "libcurl.so.4", "libedit.so.2" }) do assert(io.open(libdir .. "/" .. so, "w")):close() end
    local res = child(w, MAPPED .. [[
local dir = ...
local r, err = core.http.request{ url = "http://127.0.0.1:1/" }
print("http: " .. tostring(r) .. " " .. err)
local r2, err2 = core.http.request{ url = "http://127.0.0.1:1/" }
print("again: " .. tostring(err2 == err))
local ok, herr = core.term.history_load(dir .. "/none")
print("history_load: " .. tostring(ok) .. " " .. herr)
print("readline: " .. select(2, pcall(core.term.readline, "> ")))
print("history_add: " .. select(2, pcall(core.term.history_add, "ls")))
print("maps: " .. mapped())
]], { shquote(w.dir) }, "LD_LIBRARY_PATH=" .. shquote(libdir))
    assert.match("^nil http: cannot load libcurl%.so%.4: .*libcurl%.so%.4: file too short$", res.http)
    assert.equal("true", res.again, "the same error on a later request")
    assert.match("^nil term: cannot load libedit%.so%.2: .*file too short$", res.history_load)
    assert.match("term: cannot load libedit%.so%.2: .*file too short$", res.readline)
    assert.match("term: cannot load libedit%.so%.2: .*file too short$", res.history_add)
    assert.equal("", res.maps)
  end)
end)
