-- The escape corpus: attempts to get out of core.sandbox, each proven contained.
-- Every `it` names what it proves. The node here is the spec runner's own state.

local core = require "cogos.core"

-- A sandbox with small limits; `calls` records what reached dispatch.
local function new(opts)
  opts = opts or {}
  local calls = {}
  local sb = core.sandbox.new({
    memory = opts.memory or 4 * 1024 * 1024,
    instructions = opts.instructions or 2000000,
    deadline_ms = opts.deadline_ms or 5000,
    output = opts.output,
    slice = opts.slice,
    grants = opts.grants,
    dispatch = opts.grants and function(grant, method, ...)
      calls[#calls + 1] = { grant = grant, method = method, args = { ... } }
      if opts.reply then return opts.reply(grant, method, ...) end
      return "ok:" .. method .. ":" .. tostring((...))
    end,
  })
  return sb, calls
end

-- Runs code in a fresh sandbox; returns output, err.
local function run(code, opts)
  local sb = new(opts)
  local out, err = sb:run(code, opts and opts.run)
  sb:close()
  return out, err
end

local FILES = {
  { name = "files", type = "files", description = "notes",
    scope = { prefix = "notes/", ops = { "read", "write" } },
    methods = { read = { op = "read", target = 1 }, write = { op = "write", target = 1 },
      delete = { op = "delete", target = 1 } } },
}

-- The node is intact: its own library is untouched and still works.
local node_format, node_rep = string.format, string.rep
local function node_intact()
  assert.equal(node_format, string.format, "node string.format replaced")
  assert.equal(node_rep, string.rep, "node string.rep replaced")
  assert.equal("x=1", string.format("x=%d", 1))
  assert.equal(nil, rawget(_G, "leaked"), "a sandbox global reached the node")
end

after_each(node_intact)

describe("escape: bytecode", function()
  it("string.dump does not exist, so no bytecode can be produced", function()
    local out = run("print(string.dump, ('').dump)")
    assert.equal("nil\tnil\n", out)
  end)

  it("load refuses binary chunks", function()
    local out, err = run([[
      local f, e = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8")
      print(f, e)]])
    assert.is_nil(err)
    assert.match("^nil\t.*binary chunk", out)
  end)

  it("load refuses reader functions (whose errors lua_load would swallow)", function()
    local _, err = run([[load(function() return "\27Lua" end)]])
    assert.match("only text chunks", err)
  end)

  it("loadfile, dofile and require do not exist", function()
    local out = run("print(loadfile, dofile, require, package)")
    assert.equal("nil\tnil\tnil\tnil\n", out)
  end)

  it("a bytecode string smuggled through event is refused by load", function()
    local bc = string.dump(function() return 1 end)
    local out, err = run("local f, e = load(event) print(f == nil, e)", { run = { event = bc } })
    assert.is_nil(err)
    assert.match("^true\t.*binary chunk", out)
  end)
end)

describe("escape: metatables", function()
  it("the string metatable is out of reach", function()
    local out = run([[print(getmetatable(""), getmetatable("abc"), getmetatable(1), getmetatable(print))]])
    assert.equal("nil\tnil\tnil\tnil\n", out)
  end)

  it("replacing string.format or rawset on string changes neither the node nor the next run", function()
    local sb = new()
    local out, err = sb:run([[
      string.format = function() return "pwned" end
      rawset(string, "rep", function() return "pwned" end)
      print(("%d"):format(1), ("x"):rep(2))]])
    assert.is_nil(err)
    assert.equal("1\txx\n", out, "methods on strings use the pristine library")
    out = sb:run([[print(string.format("%d", 2), string.rep("y", 2))]])
    assert.equal("2\tyy\n", out)
    sb:close()
  end)

  it("library tables are fresh copies per run: rawset on table/math/json does not stick", function()
    local sb = new()
    sb:run([[rawset(table, "sort", 1) math.pi = 3 json.encode = 2 os.time = nil]])
    local out = sb:run([[print(type(table.sort), math.pi > 3.14, type(json.encode), type(os.time))]])
    assert.equal("function\ttrue\tfunction\tfunction\n", out)
    sb:close()
  end)

  it("json's array metatable is protected and cannot gain __gc or __index", function()
    local out, err = run([[
      local a = json.decode("[1]")
      print(getmetatable(a))
      print(pcall(setmetatable, a, {__gc = function() end}))
      setmetatable(a, {__index = function() return "injected" end})]])
    assert.match("^json.array\nfalse\t[^\n]*__gc is not allowed", out)
    assert.match("protected metatable", err)
  end)

  it("setmetatable refuses __gc: finalizers would run with hooks off", function()
    local _, err = run([[setmetatable({}, {__gc = function() while true do end end})]])
    assert.match("__gc is not allowed", err)
  end)

  it("__gc added to a metatable after setmetatable never runs (close returns at once)", function()
    local sb = new()
    local _, err = sb:run([[
      local mt = {}
      keep = setmetatable({}, mt)
      mt.__gc = function() while true do end end]])
    assert.is_nil(err)
    local t0 = core.sys.monotonic_ms()
    sb:close() -- lua_close would run a marked finalizer here, on the node
    assert.truthy(core.sys.monotonic_ms() - t0 < 1000)
  end)

  it("setmetatable on userdata (grants, json.null) is refused", function()
    local _, err = run("setmetatable(files, {})", { grants = FILES })
    assert.match("table expected", err)
    _, err = run("setmetatable(json.null, {})")
    assert.match("table expected", err)
  end)
end)

describe("escape: __close", function()
  it("a __close handler that loops is stopped by the budget", function()
    local _, err = run([[
      do local x <close> = setmetatable({}, {__close = function() while true do end end}) end]])
    assert.equal("instruction budget exhausted", err)
  end)

  it("a __close handler cannot revive a killed run", function()
    local out, err = run([[
      local x <close> = setmetatable({}, {__close = function() print("closed after kill") end})
      while true do end]])
    assert.equal("instruction budget exhausted", err)
    assert.falsy(out:find("closed after kill", 1, true))
  end)
end)

describe("escape: coroutines", function()
  it("yielding from the run thread is an error, not a node-side yield", function()
    local _, err = run("coroutine.yield(1)")
    assert.match("outside a coroutine", err)
  end)

  it("yield across pcall inside a coroutine works and stays inside", function()
    local out, err = run([[
      local co = coroutine.wrap(function() local ok, v = pcall(coroutine.yield, 1) return ok, v end)
      print(co()) print(co("back"))]])
    assert.is_nil(err)
    assert.equal("1\ntrue\tback\n", out)
  end)

  it("yielding inside table.sort and gsub callbacks is refused", function()
    local out, err = run([[
      local co = coroutine.create(function()
        table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end) end)
      print(coroutine.resume(co))
      co = coroutine.create(function() ("abc"):gsub(".", function() coroutine.yield() end) end)
      print(coroutine.resume(co))]])
    assert.is_nil(err)
    local _, n = out:gsub("false\t[^\n]*yield across a C%-call boundary", "")
    assert.equal(2, n, out)
  end)

  it("coroutine.close on the running coroutine is refused", function()
    local out, err = run([[
      local co
      co = coroutine.create(function() return coroutine.close(co) end)
      print(coroutine.resume(co))]])
    assert.is_nil(err)
    assert.match("cannot close a running coroutine", out)
  end)

  it("a kill inside a coroutine inside pcall is not caught", function()
    local out, err = run([[
      print(pcall(coroutine.wrap(function() while true do end end)))
      print("survived")]])
    assert.equal("instruction budget exhausted", err)
    assert.falsy(out:find("survived", 1, true))
  end)

  it("a loop in many short coroutines is still charged", function()
    local _, err = run([[
      while true do coroutine.wrap(function() for i = 1, 50 do end end)() end]])
    assert.equal("instruction budget exhausted", err)
  end)
end)

describe("escape: error objects", function()
  it("an error object whose __tostring loops ends the run with a plain message", function()
    local _, err = run([[error(setmetatable({}, {__tostring = function() while true do end end}))]])
    assert.truthy(err == "(error object is a table value)" or err == "instruction budget exhausted", err)
  end)

  it("a huge error message is capped", function()
    local _, err = run([[error(string.rep("x", 1000000))]])
    assert.truthy(#err <= 4096 + 100, #err)
  end)

  it("a __tostring returning a huge string is capped", function()
    local _, err = run([[error(setmetatable({}, {__tostring = function() return string.rep("y", 2000000) end}))]])
    assert.truthy(err and #err <= 4096 + 100)
  end)

  it("an error in xpcall's handler is contained", function()
    local out, err = run([[print(xpcall(error, function() error("again") end, "first"))]])
    assert.is_nil(err)
    assert.match("^false", out)
  end)

  it("a looping xpcall handler is stopped by the budget", function()
    local _, err = run([[xpcall(error, function() while true do end end)]])
    assert.equal("instruction budget exhausted", err)
  end)
end)

describe("escape: memory bombs", function()
  local M = { memory = 2 * 1024 * 1024 }

  it("string.rep past the cap", function()
    local _, err = run([[local s = string.rep("x", 1 << 30)]], M)
    assert.equal("memory limit exceeded", err)
  end)

  it("s .. s doubling", function()
    local _, err = run([[local s = "x" while true do s = s .. s end]], M)
    assert.equal("memory limit exceeded", err)
  end)

  it("table.concat of a growing list", function()
    local _, err = run([[
      local t = {} for i = 1, 64 do t[i] = string.rep("z", 65536) end
      local all = {} while true do all[#all + 1] = table.concat(t) end]], M)
    assert.equal("memory limit exceeded", err)
  end)

  it("nested tables", function()
    local _, err = run([[local t = {} while true do t = {t, {}, {}} end]], M)
    assert.equal("memory limit exceeded", err)
  end)

  it("json.encode of shared subtables refuses instead of building terabytes in C", function()
    local out, err = run([[
      local t = {"leaf"} for i = 1, 40 do t = {t, t} end
      print(json.encode(t))]], M)
    assert.is_nil(err)
    assert.match("^nil\tjson.encode: the text would not fit", out)
  end)

  it("string.rep of nothing a huge number of times costs nothing", function()
    local out, err = run([[print(#string.rep("", math.maxinteger), #string.rep("", 1e15, ""))]], M)
    assert.is_nil(err)
    assert.equal("0\t0\n", out)
  end)

  it("memory exhaustion inside pcall is not caught, and the sandbox is usable after", function()
    local sb = new(M)
    local out, err = sb:run([[print(pcall(string.rep, "x", 1 << 30)) print("after")]])
    assert.equal("memory limit exceeded", err)
    assert.falsy(out:find("after", 1, true))
    out, err = sb:run("print('again')")
    assert.is_nil(err)
    assert.equal("again\n", out)
    sb:close()
  end)
end)

describe("escape: CPU bombs", function()
  it("while true", function()
    assert.equal("instruction budget exhausted", select(2, run("while true do end")))
  end)

  it("pcall-wrapped loops cannot swallow the kill", function()
    local out, err = run([[
      for i = 1, 3 do pcall(function() while true do end end) end
      print("after")]])
    assert.equal("instruction budget exhausted", err)
    assert.falsy(out:find("after", 1, true))
  end)

  it("the deadline stops code whose budget is huge", function()
    local t0 = core.sys.monotonic_ms()
    local _, err = run("while true do end", { instructions = 1 << 50, deadline_ms = 100 })
    assert.equal("deadline exceeded", err)
    assert.truthy(core.sys.monotonic_ms() - t0 < 2000)
  end)

  it("a catastrophic string pattern is stopped by the budget", function()
    local t0 = core.sys.monotonic_ms()
    local _, err = run([[string.find(string.rep("a", 5000), string.rep("a*", 30) .. "b")]])
    assert.equal("instruction budget exhausted", err)
    assert.truthy(core.sys.monotonic_ms() - t0 < 2000)
  end)

  it("catastrophic patterns through match, gmatch, gsub and a string method are stopped too", function()
    for _, call in ipairs({ "s:match(p)", "for _ in s:gmatch(p) do end", "s:gsub(p, '')",
                            "string.match(s, p)" }) do
      local _, err = run([[local s, p = string.rep("a", 3000), string.rep("a*", 30) .. "b" ]] .. call)
      assert.equal("instruction budget exhausted", err, call)
    end
  end)

  it("table.sort of a big table in a loop is charged n log n, not one instruction", function()
    local t0 = core.sys.monotonic_ms()
    local _, err = run([[local t = {} for i = 1, 100000 do t[i] = i end
      while true do table.sort(t) end]], { memory = 16 * 1024 * 1024 })
    assert.equal("instruction budget exhausted", err)
    assert.truthy(core.sys.monotonic_ms() - t0 < 3000, "killed by the budget, long before the deadline")
  end)

  it("C work behind single instructions (concatenation, upper, rep) is charged by the bytes it makes", function()
    for _, op in ipairs({ "s .. 'y'", "s:upper()", "string.rep(s, 2)", "table.concat({s, s})" }) do
      local t0 = core.sys.monotonic_ms()
      local _, err = run("local s = string.rep('x', 1 << 20) while true do local u = " .. op .. " end",
        { memory = 16 * 1024 * 1024 })
      assert.equal("instruction budget exhausted", err, op)
      assert.truthy(core.sys.monotonic_ms() - t0 < 3000, op)
    end
  end)

  it("C loops over every byte or value (byte, unpack, utf8.len, plain find) are charged", function()
    local setup = "local s = string.rep('x', 4 << 20) local t = {} for i = 1, 200000 do t[i] = i end "
    for _, op in ipairs({ "string.byte(s, 1, 500000)", "table.unpack(t)", "utf8.len(s)",
                          "s:find('zz', 1, true)", "s:find('y')" }) do
      local t0 = core.sys.monotonic_ms()
      local _, err = run(setup .. "while true do local _ = " .. op .. " end",
        { memory = 32 * 1024 * 1024, instructions = 20000000 })
      assert.equal("instruction budget exhausted", err, op)
      assert.truthy(core.sys.monotonic_ms() - t0 < 3000, op)
    end
  end)

  it("the deadline is checked between allocations too, not only every slice of instructions", function()
    local t0 = core.sys.monotonic_ms()
    local _, err = run("local s = string.rep('x', 4 << 20) while true do local u = s .. 'y' end",
      { memory = 32 * 1024 * 1024, instructions = 1 << 50, deadline_ms = 200, slice = 1 << 30 })
    assert.equal("deadline exceeded", err)
    assert.truthy(core.sys.monotonic_ms() - t0 < 800, core.sys.monotonic_ms() - t0)
  end)

  it("table.insert/remove/move on huge ranges are charged before they run", function()
    local _, err = run([[table.move({}, 1, math.maxinteger - 1, 2)]])
    assert.equal("instruction budget exhausted", err)
    _, err = run([[local t = setmetatable({}, {__len = function() return 1 << 40 end}) table.insert(t, 1, 0)]])
    assert.equal("instruction budget exhausted", err)
  end)
end)

describe("escape: deep recursion", function()
  it("__index recursion ends in a contained stack overflow", function()
    local _, err = run([[local t = setmetatable({}, {}) getmetatable(t).__index = function(s, k) return s[k] end
      return t.x]])
    assert.match("stack overflow", err)
  end)

  it("__tostring calling tostring on itself", function()
    local _, err = run([[local t t = setmetatable({}, {__tostring = function() return tostring(t) end})
      print(t)]])
    assert.match("stack overflow", err)
  end)

  it("nested pcall recursion returns, it does not crash the node", function()
    local out, err = run([[local function f() return pcall(f) end print(f())]])
    assert.is_nil(err)
    assert.match("false\t[^\n]*stack overflow\n$", out)
  end)

  it("__concat and __lt recursion", function()
    local _, err = run([[local mt = {} mt.__concat = function(a, b) return a .. b end
      local x = setmetatable({}, mt) return x .. x]])
    assert.match("stack overflow", err)
    _, err = run([[local mt = {} mt.__lt = function(a, b) return a < b end
      local x = setmetatable({}, mt) return x < x]])
    assert.match("stack overflow", err)
  end)

  it("gsub callbacks recursing into gsub", function()
    local _, err = run([[local function f(s) return (s:gsub(".", f)) end f("ab")]])
    assert.match("stack overflow", err)
  end)
end)

describe("escape: capability misuse", function()
  it("a saved method still checks scope after the global is replaced", function()
    local out, err, calls
    local sb
    sb, calls = new({ grants = FILES })
    out, err = sb:run([[local r = files.read files = {read = function() return "forged" end}
      print(r("notes/a")) print(pcall(r, "secret/x"))]])
    assert.is_nil(err)
    assert.match("^ok:read:notes/a\nfalse\t.*permission denied: files.read: 'secret/x' is outside prefix", out)
    assert.equal(1, #calls)
    sb:close()
  end)

  it("a forged table with the grant's fields reaches nothing", function()
    local sb, calls = new({ grants = FILES })
    local out = sb:run([[
      local fake = setmetatable({read = files.read}, {__index = function() return "scope" end})
      print(pcall(fake.read, fake, "notes/a"))
      print(pcall(function() return fake:read("notes/a") end))]])
    assert.equal(0, #calls, "a table self is not the grant: its target is the table")
    assert.match("permission denied", out)
    sb:close()
  end)

  it("functions, userdata, threads and cycles cannot be passed to dispatch", function()
    local sb, calls = new({ grants = FILES })
    local out = sb:run([[
      print(pcall(files.write, "notes/a", print))
      print(pcall(files.write, "notes/a", {deep = {f = string.len}}))
      print(pcall(files.write, "notes/a", coroutine.create(print)))
      local t = {} t.t = t print(pcall(files.write, "notes/a", t))]])
    assert.equal(0, #calls)
    local _, n = out:gsub("false\t[^\n]*cannot copy", "")
    assert.equal(4, n, out)
    sb:close()
  end)

  it("a grant passed as an argument reaches the node as a plain descriptor, not the userdata", function()
    local sb, calls = new({ grants = FILES })
    local _, err = sb:run([[files.write("notes/a", files)]])
    assert.is_nil(err)
    assert.equal(1, #calls)
    local d = calls[1].args[2]
    assert.equal("table", type(d))
    assert.equal("files", d.name)
    sb:close()
  end)

  it("the scope cannot be read or changed from the sandbox", function()
    local out = run([[
      print(getmetatable(files))
      print(pcall(function() return files.config end))
      print(pcall(function() return files.prefix end))
      print(pcall(function() files.read = print end))
      print(pcall(next, files))
      print(tostring(files))]], { grants = FILES })
    assert.match("^nil\nfalse\t[^\n]*has no method 'config'\nfalse\t[^\n]*has no method 'prefix'\n" ..
      "false\t[^\n]*cannot be changed\nfalse\t[^\n]*table expected[^\n]*\ngrant files\n$", out)
  end)

  it("an op outside scope.ops is denied before dispatch", function()
    local sb, calls = new({ grants = FILES })
    local _, err = sb:run([[files.delete("notes/a")]])
    assert.match("permission denied: files.delete", err)
    assert.equal(0, #calls)
    sb:close()
  end)

  it("results are copies: the sandbox changing them changes nothing in the node", function()
    local node_table = { list = { 1, 2 } }
    local sb = new({ grants = FILES, reply = function() return node_table end })
    local _, err = sb:run([[local r = files.read("notes/a") r.list[1] = "changed" r.new = true]])
    assert.is_nil(err)
    assert.same({ list = { 1, 2 } }, node_table)
    sb:close()
  end)

  it("a dispatch returning a function is refused, the function never reaches the sandbox", function()
    local sb = new({ grants = FILES, reply = function() return os.execute end })
    local _, err = sb:run([[local f = files.read("notes/a")]])
    assert.match("cannot copy a function", err)
    sb:close()
  end)
end)

describe("escape: scope forging", function()
  local function denied(target)
    local sb, calls = new({ grants = FILES })
    local out = sb:run("print(pcall(files.read, target))", { globals = { target = target } })
    sb:close()
    return out, calls
  end

  it("targets outside the prefix, lookalikes and case variants are denied", function()
    for _, t in ipairs({ "../notes/x", "note", "notes", "Notes/x", "n\u{3BF}tes/x", "\u{FF4E}otes/x",
                         " notes/x", "/notes/x", "x\0notes/", "" }) do
      local out, calls = denied(t)
      assert.match("^false\t[^\n]*permission denied", out, t)
      assert.equal(0, #calls, t)
    end
  end)

  it("nil, numbers, tables and missing targets are denied", function()
    for _, code in ipairs({ "files.read()", "files.read(nil)", "files.read(1)",
                            "files.read({'notes/x'})", "files.read(json.null)" }) do
      local sb, calls = new({ grants = FILES })
      local _, err = sb:run(code)
      assert.match("permission denied", err, code)
      assert.equal(0, #calls, code)
      sb:close()
    end
  end)

  it("'notes/../x' and dot segments never reach dispatch (nothing could resolve them to 'x')", function()
    for _, t in ipairs({ "notes/../x", "notes/./x", "notes/..", "notes/a/../../x" }) do
      local sb, calls = new({ grants = FILES })
      local _, err = sb:run("files.read(target)", { globals = { target = t } })
      assert.match("permission denied: files.read: '[^']*' has a '.' or '..' path segment", err, t)
      assert.equal(0, #calls, t)
      sb:close()
    end
  end)
end)

describe("escape: environment", function()
  it("os, io, debug and package escapes do not exist", function()
    local out = run([[print(os.getenv, os.exit, os.execute, os.remove, os.rename, io, debug, package,
      collectgarbage("count") > 0, pcall(collectgarbage, "collect"))]])
    assert.match("^nil\tnil\tnil\tnil\tnil\tnil\tnil\tnil\ttrue\tfalse", out)
  end)

  it("_ENV replacement lasts one chunk; the next run has its builtins back", function()
    local sb = new()
    local _, err = sb:run([[_ENV = {}]])
    assert.is_nil(err)
    local out = sb:run([[print(type(print), type(string))]])
    assert.equal("function\ttable\n", out)
    sb:close()
  end)

  it("globals that shadow builtins, grants or event are replaced on the next run", function()
    local sb = new({ grants = FILES })
    sb:run([[print = function() end files = {read = function() return "forged" end}
      event = "forged" json = {} _G.pcall = nil]], { event = { n = 1 } })
    local out, err = sb:run([[print(tostring(files), event.n, type(json.encode), type(pcall))]],
      { event = { n = 2 } })
    assert.is_nil(err)
    assert.equal("grant files\t2\tfunction\tfunction\n", out)
    sb:close()
  end)

  it("event and globals are copies: changes in the sandbox do not reach the node", function()
    local ev = { a = { 1 } }
    local out, err = run([[event.a[1] = 99 event.b = true leaked = 1 print(event.a[1])]], { run = { event = ev } })
    assert.is_nil(err)
    assert.equal("99\n", out)
    assert.same({ a = { 1 } }, ev)
  end)

  it("node functions cannot be injected through globals or event", function()
    local sb = new()
    assert.error(function() sb:run("x()", { globals = { x = os.execute } }) end, "cannot copy a function")
    assert.error(function() sb:run("event.f()", { event = { f = io.open } }) end, "cannot copy a function")
    local out = sb:run("print(x, event)")
    assert.equal("nil\tnil\n", out, "nothing of the refused runs was set")
    sb:close()
  end)
end)

describe("escape: the allowlist", function()
  -- Every name sandbox code can reach at the top of a run, one level into library
  -- tables. Anything added to the sandbox must be added here on purpose.
  local ALLOWED = table.concat({
    "_G _VERSION assert collectgarbage coroutine.close coroutine.create coroutine.isyieldable",
    "coroutine.resume coroutine.running coroutine.status coroutine.wrap coroutine.yield dir error exit",
    "getmetatable help ipairs json.array json.decode json.encode json.is_array json.null load",
    "math.abs math.acos math.asin math.atan math.atan2 math.ceil math.cos math.cosh math.deg math.exp",
    "math.floor math.fmod math.frexp math.huge math.ldexp math.log math.log10 math.max math.maxinteger",
    "math.min math.mininteger math.modf math.pi math.pow math.rad math.random math.randomseed math.sin",
    "math.sinh math.sqrt math.tan math.tanh math.tointeger math.type math.ult next os.clock os.date",
    "os.time pairs pcall print rawequal rawget rawlen rawset select setmetatable string.byte",
    "string.char string.find string.format string.gmatch string.gsub string.len string.lower",
    "string.match string.pack string.packsize string.rep string.reverse string.sub string.unpack",
    "string.upper table.concat table.insert table.move table.pack table.remove table.sort table.unpack",
    "tonumber tostring type utf8.char utf8.charpattern utf8.codepoint utf8.codes utf8.len utf8.offset",
    "xpcall",
  }, " ")

  it("_ENV holds exactly the allowlisted names, nothing more, nothing less", function()
    local out, err = run([[
      local t = {}
      for k, v in pairs(_G) do
        if type(v) == "table" and k ~= "_G" then
          for k2 in pairs(v) do t[#t + 1] = k .. "." .. k2 end
        else
          t[#t + 1] = k
        end
      end
      table.sort(t)
      print(table.concat(t, " "))]])
    assert.is_nil(err)
    assert.equal(ALLOWED .. "\n", out)
  end)
end)

describe("escape: the node's state", function()
  it("two sandboxes share no globals and no library tables", function()
    local a, b = new(), new()
    a:run([[shared = "a" rawset(string, "x", 1)]])
    local out = b:run([[print(shared, string.x, ("").x)]])
    assert.equal("nil\tnil\tnil\n", out)
    a:close()
    b:close()
  end)

  it("sb:run returns only strings, never a sandbox value", function()
    local sb = new()
    local out, err = sb:run([[return {}, print, coroutine.create(print)]])
    assert.equal("string", type(out))
    assert.is_nil(err)
    assert.equal(2, select("#", sb:run("return 1, 2, 3")))
    sb:close()
  end)

  it("dir and help expose names, not the registry or pristine library", function()
    local out, err = run([[local d = dir("") d[1] = "x" print(type(d), #dir() >= 0)
      help() help(files)]], { grants = FILES })
    assert.is_nil(err)
    assert.match("^table\ttrue\n", out)
    assert.falsy(out:find("notes/", 1, true), "the scope is not printed")
  end)
end)

describe("escape: the budgeted pattern matcher keeps Lua's semantics", function()
  -- Each case is run by the node's own string library and by the sandbox's; results
  -- (values, or the error) must be identical.
  local CASES = [==[
    local R = {}
    local subjects = { "", "hello world", "  key = value  ", "a,b,,c", "THE (quick) fox",
      "x = [[a]] y = [[b]]", "aaa", "2024-01-31T10:20:30Z", "f(a(b)c)d", "\0a\0b", "caf\195\169",
      "one two  three", "%d+", "[]^$", "THE (quick) brown fox" }
    local patterns = { "", "o", "l+", "l*", "l-", "l?", "^h", "d$", "^$", "%a+", "%A+", "%d+", "%s*(%S+)%s*",
      "(%w+)=(%w+)", "(%w+)%s*=%s*(%w+)", "()ll()", "%b()", "%f[%w]%w+", "%f[%a]", "[aeiou]", "[^aeiou ]+",
      "[%a_][%w_]*", "[a-c]+", "[]]", "[^]]", "%[%[(.-)%]%]", "(a*(.)%2)", "(.)%1", "x*$", ".-",
      "(%d+)-(%d+)-(%d+)", "[%z]", "%z", "%c", "%p+", "%x+", "%u%l*", "%g+", "^(%s*).-(%s*)$",
      "[+-]?%d+", "[%-]", "%.", ".", "(", ")", "%", "[a", "%b", "%f", "(()", "%1", "(a)%2", "%g",
      "((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))", "[%", "a**" }
    local function pack(ok, ...)
      local t = { ok and "ok" or "err", n = select("#", ...) }
      for i = 1, t.n do local v = select(i, ...) t[#t + 1] = v == nil and "nil" or tostring(v) end
      return table.concat(t, "|")
    end
    for _, s in ipairs(subjects) do
      for _, p in ipairs(patterns) do
        R[#R + 1] = pack(pcall(string.find, s, p))
        R[#R + 1] = pack(pcall(string.find, s, p, 3))
        R[#R + 1] = pack(pcall(string.find, s, p, -4, true))
        R[#R + 1] = pack(pcall(string.match, s, p))
        R[#R + 1] = pack(pcall(string.match, s, p, -3))
        R[#R + 1] = pack(pcall(string.gsub, s, p, "<%0>"))
        R[#R + 1] = pack(pcall(string.gsub, s, p, "%1", 2))
        R[#R + 1] = pack(pcall(string.gsub, s, p, { hello = "HI", o = 0, a = false }))
        R[#R + 1] = pack(pcall(string.gsub, s, p, function(a, b) return b and a .. b or nil end))
        R[#R + 1] = pack(pcall(function()
          local out = {}
          for a, b in s:gmatch(p) do out[#out + 1] = tostring(a) .. "/" .. tostring(b) end
          return table.concat(out, ",")
        end))
        R[#R + 1] = pack(pcall(function()
          local out = {}
          for a in s:gmatch(p, 4) do out[#out + 1] = tostring(a) end
          return table.concat(out, ",")
        end))
      end
    end
    R[#R + 1] = pack(pcall(string.gsub, "abc", "%w", "%2"))
    R[#R + 1] = pack(pcall(string.gsub, "abc", "%w", "%x"))
    R[#R + 1] = pack(pcall(string.gsub, "abc", "%w", "%"))
    R[#R + 1] = pack(pcall(string.gsub, "abc", "%w", {a = {}}))
    R[#R + 1] = pack(pcall(string.gsub, "abc", "%w"))
    R[#R + 1] = pack(pcall(string.gsub, "abc", "", "-"))
    R[#R + 1] = pack(pcall(string.gsub, "abc", "^", "-"))
    R[#R + 1] = pack(pcall(string.gsub, "hello world", "(o)", "[%1]", 0))
    R[#R + 1] = pack(pcall(string.gsub, "abc", ".", {a = 1, b = 2.5}))
    R[#R + 1] = pack(pcall(string.find, "abc", "b", 10))
    R[#R + 1] = pack(pcall(string.find, "abc", "", 4))
    R[#R + 1] = pack(pcall(string.find, "abc", "", 5))
    R[#R + 1] = pack(pcall(string.find, "a.b", ".", 1, true))
    R[#R + 1] = pack(pcall(string.find, "a\0b.c", "\0b.", 1))
    R[#R + 1] = pack(pcall(string.match, "  x", "()x()"))
    R[#R + 1] = pack(pcall(string.find, 123, 2))
    R[#R + 1] = pack(pcall(string.match))
    R[#R + 1] = pack(pcall(string.rep("(", 40) .. string.rep(")", 40)))
    R[#R + 1] = pack(pcall(string.match, "x", string.rep("(", 33) .. "x" .. string.rep(")", 33)))
    R[#R + 1] = pack(pcall(string.match, string.rep("a", 300), string.rep("a?", 300)))
    R[#R + 1] = pack(pcall(string.gsub, "hello", "l", "%0%0"))
    return table.concat(R, "\n")
  ]==]

  it("find, match, gmatch and gsub agree with the node's string library on the corpus", function()
    local want = assert(load(CASES, "=cases", "t"))()
    local sb = new({ instructions = 1 << 40, memory = 64 << 20, output = 16 << 20 })
    local out, err = sb:run("print((function() " .. CASES .. " end)())", { chunkname = "=cases" })
    sb:close()
    assert.is_nil(err)
    local lines_want, lines_got = {}, {}
    for l in (want .. "\n"):gmatch("(.-)\n") do lines_want[#lines_want + 1] = l end
    for l in out:gmatch("(.-)\n") do lines_got[#lines_got + 1] = l end
    assert.truthy(#lines_want > 9000, #lines_want)
    for i = 1, #lines_want do assert.equal(lines_want[i], lines_got[i], "case " .. i) end
    assert.equal(#lines_want, #lines_got)
  end)

  it("ordinary pattern work is charged but cheap: a 1 MB gsub fits a normal budget", function()
    local out, err = run([[local s = string.rep("ab ", 350000) local r, n = s:gsub("%w+", "x") print(#r, n)]],
      { memory = 16 * 1024 * 1024, instructions = 10000000 })
    assert.is_nil(err)
    assert.equal("700000\t350000\n", out)
  end)

  it("a pattern loop inside pcall cannot swallow the kill", function()
    local out, err = run([[print(pcall(string.find, string.rep("a", 5000), string.rep("a*", 30) .. "b"))
      print("after")]])
    assert.equal("instruction budget exhausted", err)
    assert.falsy(out:find("after", 1, true))
  end)
end)

describe("escape: handler predicates", function()
  local pred = core.sandbox.predicate

  it("evaluate expressions and chunks over payload", function()
    assert.equal(true, pred("payload.priority > 3", '{"priority": 5}'))
    assert.equal(false, pred("payload.priority > 3", '{"priority": 1}'))
    assert.equal(true, pred("if payload.x then return true end", '{"x": 1}'))
  end)

  it("errors, kills and bad JSON come back as nil, err", function()
    local v, err = pred("payload.a.b", "{}")
    assert.is_nil(v)
    assert.match("^predicate: predicate:1: attempt to index a nil value", err)
    assert.same({ nil, "predicate: instruction budget exhausted" }, { pred("while true do end", "{}") })
    v, err = pred("string.find(string.rep('a', 3000), string.rep('a*', 30) .. 'b')", "{}")
    assert.is_nil(v)
    assert.equal("predicate: instruction budget exhausted", err)
    assert.match("^predicate: payload: ", select(2, pred("true", "{oops")))
  end)

  it("nothing one predicate does is seen by the next", function()
    assert.equal(true, pred("leaked = 1 string.format = nil rawset(table, 'x', 1) return true", "{}"))
    assert.equal(true, pred("leaked == nil and string.format ~= nil and table.x == nil", "{}"))
    assert.equal(true, pred("print == nil and load == nil and exit == nil", "{}"))
  end)
end)

describe("escape: copies sized by their entries", function()
  it("a table whose border lies far beyond its entries is copied at its real size", function()
    local sb, calls = new({ grants = FILES })
    local out, err = sb:run([[
      -- a constructor puts every key in the hash part, where # searches by doubling
      local parts = {} for i = 0, 30 do parts[#parts + 1] = "[" .. (1 << i) .. "]=" .. i end
      local t = load("return {" .. table.concat(parts, ",") .. "}")()
      print(#t == 1 << 30)
      files.write("notes/a", t)]])
    assert.is_nil(err)
    assert.equal("true\n", out, "the border is 2^30 with 31 entries")
    local got, n = calls[1].args[2], 0
    for _ in pairs(got) do n = n + 1 end
    assert.equal(31, n)
    assert.equal(30, got[1 << 30])
    assert.truthy(collectgarbage("count") < 512 * 1024, "the node did not allocate 2^30 slots")
    sb:close()
  end)
end)
