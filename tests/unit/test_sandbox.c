/* test_sandbox.c — the sandbox: library, limits, kills, coroutines, grants, sandbox_copy. */
#include "json.h"
#include "lcore.h"
#include "sandbox.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdlib.h>

/* check(cond, what) for Lua snippets: counts like CHECK, reports the Lua line. */
static const char *helpers =
    "function has(s, sub) return type(s) == 'string' and s:find(sub, 1, true) ~= nil end\n"
    "function q(s) return string.format('%q', tostring(s)) end\n";

static lua_State *new_node (void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "sandbox", sandbox_luaopen, 1);
  luaL_requiref(L, "json", json_luaopen, 1);
  luaL_requiref(L, "sched", sched_luaopen, 1);
  luaL_requiref(L, "loop", loop_luaopen, 1);
  lua_pop(L, 4);
  lua_register(L, "check", unit_lua_check);
  if (luaL_dostring(L, helpers) != LUA_OK) fprintf(stderr, "helpers: %s\n", lua_tostring(L, -1));
  return L;
}

/* Runs a chunk named "node" on L; a Lua error counts as a failure. */
static void lua_run (lua_State *L, const char *code) {
  if (luaL_loadbufferx(L, code, strlen(code), "=node", "t") != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL %s: Lua error: %s\n", unit_current, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static void run_in_node (const char *code) {
  lua_State *L = new_node();
  lua_run(L, code);
  lua_run(L, "check(1 + 1 == 2, 'the node survives')");
  lua_close(L);
}

TEST(test_print) {
  run_in_node("local sb = sandbox.new{}\n"
              "local out, err = sb:run(\"print('a', 1, 2.5, nil, true) print()\")\n"
              "check(out == 'a\\t1\\t2.5\\tnil\\ttrue\\n\\n', q(out)) check(err == nil)\n"
              "out = sb:run(\"print(setmetatable({}, {__tostring = function() return 'T' end}))\")\n"
              "check(out == 'T\\n', q(out))\n"
              "out = sb:run('x = 1')\n"
              "check(out == '', q(out))\n"
              "local small = sandbox.new{output = 100}\n"
              "out, err = small:run(\"for i = 1, 100 do print('xxxxxxxxx') end\")\n"
              "check(err == nil, err)\n"
              "check(out:sub(1, 100) == string.rep('xxxxxxxxx\\n', 10), q(out))\n"
              "local _, n = out:gsub('%[output truncated%]', '')\n"
              "check(n == 1 and #out < 130, q(out))\n"
              "out = small:run(\"print('again')\")\n"
              "check(out == 'again\\n', 'the buffer is per call: ' .. q(out))\n"
              "out, err = small:run(\"print(string.rep('y', 150)) error('late')\")\n"
              "check(has(out, '[output truncated]') and has(out, 'late') and has(err, 'late'), q(out))\n"
              "sb:close() small:close()\n");
}

TEST(test_persistence) {
  run_in_node(
      "local sb = sandbox.new{grants = {{name = 'files', methods = {read = {}}}},\n"
      "                       dispatch = function() return 'r' end}\n"
      "local out, err = sb:run('x = 41 function f() return x + 1 end')\n"
      "check(err == nil, err)\n"
      "out = sb:run('print(f())')\n"
      "check(out == '42\\n', q(out))\n"
      "sb:run([[print = nil json = 5 files = nil string = nil table.insert = nil exit = 1\n"
      "         event = 'x' _G = nil help = 'h' coroutine = nil]])\n"
      "out, err = sb:run([[print(type(json), type(files), type(string), type(table.insert),\n"
      "                          type(exit), event, type(_G), type(help), type(coroutine.wrap))]])\n"
      "check(out == 'table\\tuserdata\\ttable\\tfunction\\tfunction\\tnil\\ttable\\tfunction\\tfunction\\n',\n"
      "      q(out) .. q(err))\n"
      "out, err = sb:run('local f = files files = nil print(f.read()) files = 5 print(f:read())')\n"
      "check(out == 'r\\nr\\n', q(out) .. q(err))\n"
      "out = sb:run('print(type(files))')\n"
      "check(out == 'userdata\\n', q(out))\n"
      "out = sb:run('function print() end')\n"
      "out = sb:run('print(1)')\n"
      "check(out == '1\\n', q(out))\n");
}

TEST(test_stripped_library) {
  run_in_node(
      "local sb = sandbox.new{}\n"
      "local out = sb:run([[local t = {} for k in pairs(_G) do t[#t + 1] = k end table.sort(t)\n"
      "                    print(table.concat(t, ' '))]])\n"
      "check(out == '_G _VERSION assert collectgarbage coroutine dir error exit getmetatable help '\n"
      "  .. 'ipairs json load math next os pairs pcall print rawequal rawget rawlen rawset select '\n"
      "  .. 'setmetatable string table tonumber tostring type utf8 xpcall\\n', q(out))\n"
      "out = sb:run([[print(io, debug, package, require, dofile, loadfile, string.dump, ('').dump,\n"
      "                     os.execute, os.getenv, os.exit, os.remove, warn, newproxy)]])\n"
      "check(out == string.rep('nil\\t', 13) .. 'nil\\n', q(out))\n"
      "out = sb:run([[local t = {} for k in pairs(os) do t[#t + 1] = k end table.sort(t)\n"
      "               print(table.concat(t, ' '), type(os.time()), type(os.clock()), type(os.date()))]])\n"
      "check(out == 'clock date time\\tnumber\\tnumber\\tstring\\n', q(out))\n"
      "local bin = string.dump(function() return 1 end)\n"
      "out = sb:run('local f, e = load(bin) print(f, e)', {globals = {bin = bin}})\n"
      "check(has(out, 'nil') and has(out, 'binary'), q(out))\n"
      "out = sb:run([[print(load('\\27Lua\\84\\0'))]])\n"
      "check(has(out, 'binary'), q(out))\n"
      "out = sb:run('print(load(bin, \"b\", \"b\"))', {globals = {bin = bin}})\n"
      "check(has(out, 'binary'), 'mode b is ignored: ' .. q(out))\n"
      "local _, err = sb:run(bin)\n"
      "check(has(err, 'binary'), q(err))\n"
      "out = sb:run([[print(load('return 1 + 1')(), load('return x', 'c', 't', {x = 5})())]])\n"
      "check(out == '2\\t5\\n', q(out))\n"
      "out = sb:run([[print(load('return +'))]])\n"
      "check(has(out, 'nil') and has(out, 'unexpected'), q(out))\n"
      "out, err = sb:run([[load(function() return nil end)]])\n"
      "check(has(err, 'only text chunks'), q(err))\n"
      "out = sb:run([[print(math.type(collectgarbage('count')))]])\n"
      "check(out == 'float\\n', q(out))\n"
      "out, err = sb:run('collectgarbage()')\n"
      "check(has(err, 'only \"count\"'), q(err))\n"
      "out, err = sb:run('collectgarbage(\"step\")')\n"
      "check(has(err, 'only \"count\"'), q(err))\n"
      "out = sb:run([[print(math.random(1, 1), utf8.char(72, 105), table.concat({1, 2}, ','),\n"
      "                     select('#', table.unpack({1, 2, 3})), ('%d'):format(7), rawlen({1}))]])\n"
      "check(out == '1\\tHi\\t1,2\\t3\\t7\\t1\\n', q(out))\n"
      "out = sb:run([[local t = {} table.insert(t, 'a') table.insert(t, 1, 'b') table.insert(t, 3, 'c')\n"
      "               local r = table.remove(t, 1) print(r, table.concat(t, ','), table.remove(t), #t,\n"
      "               table.remove({}), table.concat(table.move({1, 2, 3}, 1, 3, 2), ','))]])\n"
      "check(out == 'b\\ta,c\\tc\\t1\\tnil\\t1,1,2,3\\n', q(out))\n"
      "out, err = sb:run('table.insert({}, 5, 1)')\n"
      "check(has(err, 'position out of bounds'), q(err))\n"
      "out = sb:run([[print(string.rep('ab', 3, '-'), string.rep('', 10), ('x'):rep(2))]])\n"
      "check(out == 'ab-ab-ab\\t\\txx\\n', q(out))\n");
}

TEST(test_metatables) {
  run_in_node(
      "local sb = sandbox.new{grants = {{name = 'files', methods = {read = {}}}},\n"
      "                       dispatch = function() end}\n"
      "local out, err = sb:run('print(getmetatable(\"\"), getmetatable(\"abc\"), getmetatable(files), getmetatable(1))')\n"
      "check(out == 'nil\\tnil\\tnil\\tnil\\n', q(out))\n"
      "out = sb:run([[string.upper = function() return 'pwned' end string.len = nil\n"
      "               print(('abc'):upper(), ('abc'):len())]])\n"
      "check(out == 'ABC\\t3\\n', 'string methods come from the pristine table: ' .. q(out))\n"
      "out = sb:run('print(string.upper(\"x\"), type(string.len))')\n"
      "check(out == 'X\\tfunction\\n', q(out))\n"
      "out, err = sb:run('setmetatable(\"\", {})')\n"
      "check(has(err, 'table expected'), q(err))\n"
      "out, err = sb:run('setmetatable(files, {})')\n"
      "check(has(err, 'table expected'), q(err))\n"
      "out, err = sb:run('setmetatable({}, {__gc = function() end})')\n"
      "check(has(err, '__gc is not allowed'), q(err))\n"
      "out, err = sb:run('setmetatable({}, {__gc = true})')\n"
      "check(has(err, '__gc is not allowed'), q(err))\n"
      "out = sb:run([[local mt = {} local t = setmetatable({}, mt) mt.__gc = function() while true do end end\n"
      "               t = nil print(collectgarbage('count') > 0)]])\n"
      "check(out == 'true\\n', q(out))\n"
      "out = sb:run([[local t = setmetatable({}, {__metatable = 'no', __index = function(_, k) return k .. '!' end})\n"
      "               print(getmetatable(t), t.x, pcall(setmetatable, t, {}))]])\n"
      "check(has(out, 'no\\tx!\\tfalse') and has(out, 'protected'), q(out))\n"
      "out = sb:run([[local a = json.array({}) print(getmetatable(a), pcall(setmetatable, a, nil))]])\n"
      "check(has(out, 'json.array\\tfalse'), q(out))\n"
      "check(('abc'):upper() == 'ABC' and getmetatable('').__index == string, 'the node is untouched')\n"
      "local other = sandbox.new{}\n"
      "out = other:run('print((\"abc\"):upper())')\n"
      "check(out == 'ABC\\n', q(out))\n");
}

TEST(test_memory_limit) {
  run_in_node(
      "local sb = sandbox.new{memory = 1024 * 1024}\n"
      "local out, err = sb:run('local s = \"x\" while true do s = s .. s end')\n"
      "check(err == 'memory limit exceeded', q(err))\n"
      "check(has(out, 'memory limit exceeded'), q(out))\n"
      "out, err = sb:run('local t = {} for i = 1, 1e8 do t[i] = i end')\n"
      "check(err == 'memory limit exceeded', q(err))\n"
      "out, err = sb:run('local t = {} for i = 1, 1e8 do t[i .. \"\"] = i end')\n"
      "check(err == 'memory limit exceeded', q(err))\n"
      "out, err = sb:run('print(pcall(string.rep, \"x\", 1e8)) print(\"after\")')\n"
      "check(err == 'memory limit exceeded' and not has(out, 'after'), q(out))\n"
      "out, err = sb:run([[local t = {} while true do pcall(function() t[#t + 1] = ('y'):rep(1000) .. #t end) end]])\n"
      "check(err == 'memory limit exceeded', q(err))\n"
      "out, err = sb:run([[coroutine.wrap(function() local s = 'x' while true do s = s .. s end end)() print('after')]])\n"
      "check(err == 'memory limit exceeded' and not has(out, 'after'), q(out))\n"
      "out, err = sb:run([[print(coroutine.resume(coroutine.create(function() local s = 'x' while true do s = s .. s end end))) print('after')]])\n"
      "check(err == 'memory limit exceeded' and not has(out, 'after'), q(out))\n"
      "out, err = sb:run([[print(load(('x = 1 '):rep(1e6)))]])\n"
      "check(err == 'memory limit exceeded', q(err))\n"
      "out, err = sb:run([[print(json.decode('[' .. ('1,'):rep(4e5) .. '1]'))]])\n"
      "check(err == 'memory limit exceeded', q(err))\n"
      "out, err = sb:run(\"print('alive')\")\n"
      "check(out == 'alive\\n' and err == nil, q(out) .. q(err))\n"
      "check(sb:stats().memory <= 1024 * 1024, sb:stats().memory)\n"
      "out, err = sb:run('big = {} for i = 1, 2e4 do big[i] = i end')\n"
      "check(err == nil, q(err))\n"
      "out, err = sb:run('local s = (\"x\"):rep(300 * 1024) print(#s)')\n"
      "check(err == 'memory limit exceeded', 'globals hold memory: ' .. q(err))\n"
      "sb:run('big = nil')\n"
      "out, err = sb:run('local s = (\"x\"):rep(300 * 1024) print(#s)')\n"
      "check(out == '307200\\n', q(out) .. q(err))\n"
      "local ok, e = pcall(sandbox.new, {memory = 2000})\n"
      "check(not ok and has(e, 'memory limit too small'), e)\n"
      "sb:close()\n"
      "check(sb:stats().memory == 0, 'the allocator accounts every byte: ' .. sb:stats().memory)\n");
}

TEST(test_instruction_budget) {
  run_in_node(
      "local function killed(code, what)\n"
      "  local sb = sandbox.new{instructions = 1e6}\n"
      "  local out, err = sb:run(code)\n"
      "  check(err == 'instruction budget exhausted', what .. ': ' .. q(err) .. q(out))\n"
      "  check(not has(out, 'after'), what .. ': ' .. q(out))\n"
      "  check(sb:stats().instructions >= 1e6, what)\n"
      "  return sb, out\n"
      "end\n"
      "local sb, out = killed('while true do end', 'loop')\n"
      "check(has(out, 'stack traceback'), q(out))\n"
      "local out2, err = sb:run('print(1)')\n"
      "check(err == 'instruction budget exhausted' and out2 == err, 'the budget is for the whole run')\n"
      "killed('pcall(function() while true do end end) print(\"after\")', 'pcall')\n"
      "killed('for i = 1, 1e9 do pcall(error, i) end print(\"after\")', 'pcall in a loop')\n"
      "killed('xpcall(function() while true do end end, function() while true do end end) print(\"after\")', 'xpcall')\n"
      "killed('print(xpcall(function() while true do end end, print)) print(\"after\")', 'xpcall handler')\n"
      "killed('do local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end end print(\"after\")', '__close')\n"
      "killed('pcall(function() local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end end) print(\"after\")', '__close in pcall')\n"
      "killed('coroutine.wrap(function() pcall(function() while true do end end) end)() print(\"after\")', 'pcall in wrap')\n"
      "killed('print(coroutine.resume(coroutine.create(function() while true do end end))) print(\"after\")', 'resume')\n"
      "killed([[local co = coroutine.create(function() local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end end)\n"
      "         print(coroutine.resume(co)) print(coroutine.close(co)) print('after')]], 'close after kill')\n"
      "killed('local g = coroutine.wrap(function() while true do coroutine.yield() end end) while true do g() end', 'generator')\n"
      "killed('while true do coroutine.wrap(function() for i = 1, 100 do end end)() end', 'short coroutines')\n"
      "killed('string.gsub((\"x\"):rep(10), \".\", function() while true do end end)', 'gsub callback')\n"
      "killed('table.sort({3, 2, 1}, function(a, b) while true do end end)', 'sort comparator')\n"
      "killed('print(tostring(setmetatable({}, {__tostring = function() while true do end end})))', '__tostring')\n"
      "killed('local t = setmetatable({}, {__index = function() while true do end end}) print(t.x)', '__index')\n"
      "killed('table.move({}, 1, math.maxinteger - 1, 2) print(\"after\")', 'table.move')\n"
      "killed('table.insert(setmetatable({}, {__len = function() return 1e15 end}), 1, 1) print(\"after\")', 'table.insert')\n"
      "killed('table.remove(setmetatable({}, {__len = function() return 1e15 end}), 1) print(\"after\")', 'table.remove')\n"
      "killed('while true do load(\"return 1\") end', 'load')\n"
      "local sb = sandbox.new{instructions = 1e6}\n"
      "local t0 = os.clock()\n"
      "local o = sb:run('local t = {\"leaf\"} for i = 1, 40 do t = {t, t} end print(json.encode(t))')\n"
      "check(has(o, 'nil\\tjson.encode: the text would not fit') and os.clock() - t0 < 1, q(o))\n"
      "o = sb:run('print(json.encode({a = {1, 2}, b = \"x\"}), json.encode(json.array({})), json.encode(nil))')\n"
      "check(o == '{\"a\":[1,2],\"b\":\"x\"}\\t[]\\tnull\\n', q(o))\n"
      "t0 = os.clock()\n"
      "local o = sb:run('print(#string.rep(\"\", math.maxinteger), #string.rep(\"\", 1e15, \"\"))')\n"
      "check(o == '0\\t0\\n' and os.clock() - t0 < 1, q(o))\n"
      "local sb2 = sandbox.new{instructions = 1e6}\n"
      "local _, e = sb2:run('error(setmetatable({}, {__tostring = function() while true do end end}))')\n"
      "check(e ~= nil, q(e))\n");
}

TEST(test_deadline) {
  run_in_node(
      "local sb = sandbox.new{deadline_ms = 100, instructions = 1e12}\n"
      "local t0 = os.clock()\n"
      "local out, err = sb:run('while true do end')\n"
      "check(err == 'deadline exceeded', q(err))\n"
      "check(os.clock() - t0 < 2, 'stopped in time')\n"
      "out, err = sb:run('print(1)')\n"
      "check(err == 'deadline exceeded', 'the deadline is for the whole run')\n"
      "sb = sandbox.new{deadline_ms = 100, instructions = 1e12}\n"
      "out, err = sb:run('local g = coroutine.wrap(function() while true do coroutine.yield() end end) while true do g() end')\n"
      "check(err == 'deadline exceeded', q(err))\n"
      "sb = sandbox.new{deadline_ms = 0}\n"
      "out, err = sb:run('print(1)')\n"
      "check(err == 'deadline exceeded', q(err))\n");
}

TEST(test_errors) {
  run_in_node(
      "local sb = sandbox.new{}\n"
      "local out, err = sb:run(\"print('before') error('boom')\")\n"
      "check(err == 'run_code:1: boom', q(err))\n"
      "check(has(out, 'before\\nrun_code:1: boom\\nstack traceback:'), q(out))\n"
      "out, err = sb:run('error({code = 1})')\n"
      "check(err == '(error object is a table value)', q(err))\n"
      "out, err = sb:run(\"error(setmetatable({}, {__tostring = function() return 'custom' end}))\")\n"
      "check(err == 'custom', q(err))\n"
      "out, err = sb:run(\"error(setmetatable({}, {__tostring = function() error('bad') end}))\")\n"
      "check(err == '(error object is a table value)', q(err))\n"
      "out, err = sb:run(\"error(setmetatable({}, {__tostring = function() return 1 end}))\")\n"
      "check(err == '1', q(err))\n"
      "out, err = sb:run('error()')\n"
      "check(err == '(error object is a nil value)', q(err))\n"
      "out, err = sb:run('error(42)')\n"
      "check(err == '42', q(err))\n"
      "out, err = sb:run('error(coroutine.create(print))')\n"
      "check(err == '(error object is a thread value)', q(err))\n"
      "out, err = sb:run('x = = 1')\n"
      "check(has(err, 'run_code:1:') and out == err, q(out))\n"
      "out, err = sb:run(\"error('x')\", {chunkname = 'mine'})\n"
      "check(err == 'mine:1: x', q(err))\n"
      "out, err = sb:run(\"error('x')\", {chunkname = '=other'})\n"
      "check(err == 'other:1: x', q(err))\n"
      "out, err = sb:run('error((\"e\"):rep(10000))')\n"
      "check(#err < 5000 and has(err, '...'), #err)\n"
      "out, err = sb:run('local t = nil; t.x = 1')\n"
      "check(has(err, 'attempt to index a nil value'), q(err))\n"
      "local ok, e = pcall(sb.run, sb, {})\n"
      "check(not ok, 'code must be a string')\n"
      "ok, e = pcall(sb.run, sb, 'x = 1', {event = {f = print}})\n"
      "check(not ok and has(e, 'event: cannot copy a function at $.f'), e)\n"
      "ok, e = pcall(sb.run, sb, 'x = 1', {globals = {[1] = 2}})\n"
      "check(not ok and has(e, 'string keys'), e)\n"
      "ok, e = pcall(sb.run, sb, 'x = 1', {chunkname = 5})\n"
      "check(not ok, e)\n"
      "out, err = sb:run('print(\"still usable\")')\n"
      "check(out == 'still usable\\n', q(out))\n");
}

TEST(test_exit) {
  run_in_node("local sb = sandbox.new{}\n"
              "local out, err = sb:run(\"print('a') exit() print('b')\")\n"
              "check(out == 'a\\n' and err == nil, q(out) .. q(err))\n"
              "out, err = sb:run(\"pcall(exit) print('b')\")\n"
              "check(out == '' and err == nil, q(out) .. q(err))\n"
              "out, err = sb:run(\"xpcall(exit, function() print('handler') end) print('b')\")\n"
              "check(out == '' and err == nil, q(out) .. q(err))\n"
              "out, err = sb:run(\"coroutine.wrap(function() exit() end)() print('b')\")\n"
              "check(out == '' and err == nil, q(out) .. q(err))\n"
              "out, err = sb:run(\"print(coroutine.resume(coroutine.create(exit))) print('b')\")\n"
              "check(out == '' and err == nil, q(out) .. q(err))\n"
              "out, err = sb:run(\"print('next')\")\n"
              "check(out == 'next\\n' and err == nil, q(out) .. q(err))\n");
}

static const char *grants_setup =
    "calls = {}\n"
    "sb = sandbox.new{\n"
    "  grants = {\n"
    "    {name = 'files', type = 'file', description = 'Versioned files.',\n"
    "     scope = {prefix = 'notes/', ops = {'read', 'search'}},\n"
    "     methods = {read = {op = 'read', target = 1, doc = 'read(key) -> {content}'},\n"
    "                write = {op = 'write', target = 1, doc = 'write(key, content)'},\n"
    "                search = {op = 'search', target = 1}}},\n"
    "    {name = 'channels', scope = {names = {'io:*', 'chan?'}, other = 'ignored'},\n"
    "     methods = {send = {op = 'send', target = 1}, list = {}}},\n"
    "    {name = 'open', methods = {echo = {target = 1}, fail = {}, bad = {}, num = {}, fail2 = {}}},\n"
    "    {name = 'locked', scope = {ops = {}, names = {}}, methods = {get = {target = 1}}},\n"
    "  },\n"
    "  dispatch = function(g, m, ...)\n"
    "    calls[#calls + 1] = {g = g, m = m, n = select('#', ...), ...}\n"
    "    if m == 'read' then\n"
    "      local k = ...\n"
    "      if k == 'notes/missing' then return nil, 'not found' end\n"
    "      return {content = 'hi ' .. k, n = 1, f = 1.5, list = json.array({1, 2})}\n"
    "    elseif m == 'echo' then return ...\n"
    "    elseif m == 'fail' then error('boom from node')\n"
    "    elseif m == 'fail2' then error({})\n"
    "    elseif m == 'bad' then return function() end\n"
    "    elseif m == 'num' then return 1, 1.0, math.maxinteger, -0.0\n"
    "    elseif m == 'send' or m == 'list' then return true\n"
    "    end\n"
    "  end,\n"
    "}\n"
    "function ok(code) local out, err = sb:run(code) check(err == nil, q(code) .. ': ' .. q(err)) return out end\n"
    "function fails(code, want)\n"
    "  local out, err = sb:run(code)\n"
    "  check(has(err, want), q(code) .. ': ' .. q(err))\n"
    "  check(not has(out, '<node:') and not has(out, 'in function \\'error\\''), 'no node traceback: ' .. q(out))\n"
    "  return out, err\n"
    "end\n";

TEST(test_grants) {
  lua_State *L = new_node();
  lua_run(L, grants_setup);
  lua_run(
      L,
      "local out = ok('local r = files.read(\"notes/a\") print(r.content, r.n, math.type(r.n), math.type(r.f), json.is_array(r.list))')\n"
      "check(out == 'hi notes/a\\t1\\tinteger\\tfloat\\ttrue\\n', q(out))\n"
      "check(calls[1].g == 'files' and calls[1].m == 'read' and calls[1][1] == 'notes/a' and calls[1].n == 1)\n"
      "out = ok('print(files:read(\"notes/b\").content)')\n"
      "check(out == 'hi notes/b\\n' and calls[2].n == 1, q(out))\n"
      "fails('files.read(\"secret/x\")', \"permission denied: files.read: 'secret/x' is outside prefix 'notes/'\")\n"
      "fails('files.read(\"note\")', 'outside prefix')\n"
      "fails('files.write(\"notes/x\", \"y\")', \"permission denied: files.write: op 'write' is not allowed (ops: 'read', 'search')\")\n"
      "fails('files.search()', 'permission denied: files.search: argument 1 must be a string')\n"
      "fails('files.read(42)', 'argument 1 must be a string')\n"
      "fails('files:read()', 'argument 1 must be a string')\n"
      "check(#calls == 2, 'nothing denied reached the node')\n"
      "ok('assert(channels.send(\"io:discord\", {a = 1}))')\n"
      "ok('assert(channels.send(\"chan1\"))')\n"
      "ok('assert(channels.list())')\n"
      "fails('channels.send(\"chan12\")', \"'chan12' matches none of names 'io:*', 'chan?'\")\n"
      "fails('channels.send(\"io\")', 'matches none')\n"
      "fails('channels.send(\"xio:a\")', 'matches none')\n"
      "fails('locked.get(\"x\")', \"op 'get' is not allowed (ops: none)\")\n"
      "out = ok('local v, e = files.read(\"notes/missing\") print(v, e)')\n"
      "check(out == 'nil\\tnot found\\n', q(out))\n"
      "out = ok('print(pcall(files.write, \"notes/x\"))')\n"
      "check(has(out, 'false\\t') and has(out, 'permission denied'), q(out))\n"
      "out = ok('local a, b, c, d = open.echo(\"k\", {1, {2}, x = json.null}, json.array({}), nil) print(a, b[2][1], b.x == json.null, json.is_array(c), d, select(\"#\", open.echo(1, nil, nil)))')\n"
      "check(out == 'k\\t2\\ttrue\\ttrue\\tnil\\t3\\n', q(out))\n"
      "local last = calls[#calls - 1]\n"
      "check(last.n == 4 and last[2].x == json.null and json.is_array(last[3]) and not json.is_array(last[2]), 'args arrive copied')\n"
      "out = ok('local a, b, c, d = open.num() print(math.type(a), math.type(b), c == math.maxinteger, 1 / d)')\n"
      "check(out == 'integer\\tfloat\\ttrue\\t-inf\\n', q(out))\n"
      "fails('local t = {} t.t = t open.echo(\"k\", t)', 'open.echo: argument 2: cannot copy a table that contains itself at $.t')\n"
      "fails('open.echo(\"k\", print)', 'open.echo: argument 2: cannot copy a function')\n"
      "fails('open.echo(\"k\", {a = {b = coroutine.create(print)}})', 'cannot copy a thread at $.a.b')\n"
      "fails('open.echo(\"k\", {[{}] = 1})', 'cannot copy a table key')\n"
      "fails('open.echo(files)', 'a grant descriptor returned to a sandbox needs its methods')\n"
      "fails('open.bad()', 'open.bad: result 1: cannot copy a function')\n"
      "local o, e = fails('open.fail()', 'boom from node')\n"
      "check(e == 'run_code:1: node:21: boom from node', q(e))\n"
      "fails('open.fail2()', '(error object is a table value)')\n"
      "out = ok('print(pcall(open.fail))')\n"
      "check(has(out, 'false\\tnode:21: boom from node'), q(out))\n"
      "fails('files.nope()', \"files has no method 'nope'\")\n"
      "fails('local x = files[1]', 'files has no method')\n"
      "fails('files.read = 1', 'files is a grant and cannot be changed')\n"
      "fails('for k in pairs(files) do end', 'table expected')\n"
      "out = ok('print(getmetatable(files), tostring(files), type(files.read), files.read == files.read)')\n"
      "check(out == 'nil\\tgrant files\\tfunction\\ttrue\\n', q(out))\n"
      "out = ok('help(files)')\n"
      "check(out == 'files (file): Versioned files.\\n  read(key) -> {content}\\n  search(...)\\n  write(key, content)\\n', q(out))\n"
      "out = ok('print(table.concat(dir(files), \",\"), json.is_array(dir(files)))')\n"
      "check(out == 'read,search,write\\ttrue\\n', q(out))\n"
      "out = ok('help()')\n"
      "check(has(out, 'Grants: channels, files, locked, open.'), q(out))\n"
      "out = ok('help(1) help(1.5) help(\"ab\") help({1, 2}) help(print) help(function() end) help(json.null)')\n"
      "check(out == 'integer\\nfloat\\nstring of 2 bytes; dir(\"\") lists the string methods (s:upper() ...)\\n'\n"
      "  .. 'table with 2 array items; dir(t) lists its string keys\\nbuilt-in function\\nfunction\\njson.null, the JSON null\\n', q(out))\n"
      "out = ok('x1 = 1 local d = dir() print(#d > 30, table.concat(dir({b = 1, a = 2, 3}), \",\"), dir(\"\")[1])')\n"
      "check(out == 'true\\ta,b\\tbyte\\n', q(out))\n"
      "out = ok('local co = coroutine.wrap(function() return files.read(\"notes/co\").content end) print(co())')\n"
      "check(out == 'hi notes/co\\n', q(out))\n"
      "out = ok('local t = {} for i = 1, 3 do t[i] = files.read(\"notes/\" .. i).content end print(table.concat(t, \",\"))')\n"
      "check(out == 'hi notes/1,hi notes/2,hi notes/3\\n', q(out))\n"
      "out = ok('print(open.echo(string.rep(\"z\", 1000)) == string.rep(\"z\", 1000))')\n"
      "check(out == 'true\\n', q(out))\n");
  lua_run(L, "check(1 + 1 == 2, 'the node survives')");
  lua_close(L);
}

TEST(test_grant_setup) {
  run_in_node(
      "local ok, e = pcall(sandbox.new, {grants = {{name = 'files', methods = {}}}})\n"
      "check(not ok and has(e, 'dispatch'), e)\n"
      "ok, e = pcall(sandbox.new, {grants = {{name = 'a'}, {name = 'a'}}, dispatch = print})\n"
      "check(not ok and has(e, \"grant 'a' appears twice\"), e)\n"
      "ok, e = pcall(sandbox.new, {grants = {{name = 'a', scope = {ops = 'read'}}}, dispatch = print})\n"
      "check(not ok and has(e, 'list of strings'), e)\n"
      "ok, e = pcall(sandbox.new, {grants = {{name = 'a', scope = {prefix = 'a\\0b'}}}, dispatch = print})\n"
      "check(not ok and has(e, 'NUL'), e)\n"
      "ok, e = pcall(sandbox.new, {grants = {{name = 'a', methods = {m = {target = 0}}}}, dispatch = print})\n"
      "check(not ok and has(e, 'target'), e)\n"
      "ok, e = pcall(sandbox.new, {grants = {{methods = {}}}, dispatch = print})\n"
      "check(not ok and has(e, 'name'), e)\n"
      "ok, e = pcall(sandbox.new, {memory = -1})\n"
      "check(not ok and has(e, 'memory'), e)\n"
      "ok, e = pcall(sandbox.new, {dispatch = 5})\n"
      "check(not ok and has(e, 'dispatch'), e)\n"
      "local got\n"
      "local sb = sandbox.new{grants = {{name = 'print', methods = {m = {}}}, {name = 'g', methods = {m = {}}}},\n"
      "                       dispatch = function(g, m, ...) got = g return ... end}\n"
      "local out = sb:run('print(\"builtin wins\") g.m()')\n"
      "check(out == 'builtin wins\\n' and got == 'g', q(out))\n");
}

TEST(test_dispatch_reentry) {
  run_in_node(
      "local sb, close_err, run_err, inner\n"
      "sb = sandbox.new{grants = {{name = 'g', methods = {m = {}}}},\n"
      "  dispatch = function()\n"
      "    close_err = select(2, pcall(sb.close, sb))\n"
      "    run_err = select(2, pcall(sb.run, sb, 'x = 1'))\n"
      "    inner = sandbox.new{}:run('print(\"nested\")')\n"
      "    return sb:stats().memory > 0\n"
      "  end}\n"
      "local out, err = sb:run('print(g.m())')\n"
      "check(out == 'true\\n', q(out) .. q(err))\n"
      "check(has(close_err, 'running') and has(run_err, 'already running'), q(close_err) .. q(run_err))\n"
      "check(inner == 'nested\\n', q(inner))\n");
}

TEST(test_event_and_globals) {
  run_in_node("local sb = sandbox.new{}\n"
              "local out = sb:run('print(event.a, event.list[2], json.is_array(event.list), x)',\n"
              "  {event = {a = 1, list = json.array({1, 2})}, globals = {x = 'g'}})\n"
              "check(out == '1\\t2\\ttrue\\tg\\n', q(out))\n"
              "out = sb:run('print(event, x)')\n"
              "check(out == 'nil\\tg\\n', q(out))\n"
              "out = sb:run('print(print == nil)', {globals = {print = 1}})\n"
              "check(out == 'false\\n', 'builtins win over globals: ' .. q(out))\n"
              "out = sb:run('event.a = 2 print(event.a)', {event = {a = 1}})\n"
              "check(out == '2\\n', q(out))\n");
}

TEST(test_coroutines) {
  run_in_node(
      "local sb = sandbox.new{}\n"
      "local out, err = sb:run([[\n"
      "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)\n"
      "print(coroutine.resume(co, 1)) print(coroutine.status(co)) print(coroutine.resume(co, 10))\n"
      "print(coroutine.status(co)) print(coroutine.resume(co))\n"
      "local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)\n"
      "print(gen(), gen(), gen())\n"
      "print(coroutine.isyieldable(), coroutine.wrap(function() return coroutine.isyieldable() end)())\n"
      "local co2 = coroutine.wrap(function() local ok, v = pcall(function() return coroutine.yield(5) + 1 end) return ok, v end)\n"
      "print(co2()) print(co2(41))\n"
      "print(select(2, coroutine.running()), coroutine.wrap(function() return select(2, coroutine.running()) end)())\n"
      "print(coroutine.resume(coroutine.create(function() error('in co') end)))\n"
      "print(pcall(coroutine.wrap(function() error('in wrap') end)))\n"
      "local c3 = coroutine.create(function() local x <close> = setmetatable({}, {__close = function() print('closed') end}) coroutine.yield() end)\n"
      "coroutine.resume(c3) print(coroutine.close(c3)) print(coroutine.status(c3))\n"
      "print(pcall(coroutine.close, coroutine.running()))\n"
      "local c4 = coroutine.create(function() return coroutine.status(coroutine.running()) end)\n"
      "print(coroutine.resume(c4))\n"
      "print(coroutine.wrap(function() return pcall(coroutine.yield, 7) end)())\n"
      "]])\n"
      "check(out == 'true\\t2\\nsuspended\\ntrue\\t20\\ndead\\nfalse\\tcannot resume dead coroutine\\n'\n"
      "  .. '1\\t2\\t3\\nfalse\\ttrue\\n5\\ntrue\\t42\\ntrue\\tfalse\\nfalse\\trun_code:10: in co\\n'\n"
      "  .. 'false\\trun_code:11: in wrap\\nclosed\\ntrue\\ndead\\n'\n"
      "  .. 'false\\tcannot close a running coroutine\\ntrue\\trunning\\n7\\n', q(out) .. q(err))\n"
      "out, err = sb:run('coroutine.yield(1)')\n"
      "check(has(err, 'attempt to yield from outside a coroutine'), q(err))\n"
      "out, err = sb:run('print(pcall(coroutine.yield, 1))')\n"
      "check(has(out, 'false\\t') and has(out, 'attempt to yield from outside a coroutine') and err == nil, q(out))\n"
      "out, err = sb:run('saved = coroutine.create(function() coroutine.yield(1) return 2 end) print(coroutine.resume(saved))')\n"
      "out, err = sb:run('print(coroutine.resume(saved))')\n"
      "check(out == 'true\\t2\\n', 'coroutines persist across runs: ' .. q(out))\n");
}

TEST(test_forced_yield) {
  run_in_node(
      "local sb = sandbox.new{slice = 100, instructions = 1e9}\n"
      "local out, err = sb:run('local s = 0 for i = 1, 100000 do s = s + i end print(s)')\n"
      "check(out == '5000050000\\n', q(out) .. q(err))\n"
      "out, err = sb:run([[local mt = {__index = function(t, k) local x = 0 for i = 1, 1000 do x = x + i end return x end}\n"
      "  local t = setmetatable({}, mt)\n"
      "  print(pcall(function() local s = 0 for i = 1, 100 do s = s + t[i] end return s end))\n"
      "  print(select(2, xpcall(function() local s = 0 for i = 1, 1e4 do s = s + i end error(s) end, function(e) return e end)))]])\n"
      "check(out == 'true\\t50050000\\n50005000\\n', q(out) .. q(err))\n"
      "check(sb:stats().instructions > 100000, sb:stats().instructions)\n"
      /* Under sched: the sandbox yields to other tasks while it runs. */
      "local ticks, done, result = 0, false\n"
      "sched.spawn(function()\n"
      "  local s = sandbox.new{slice = 1000, instructions = 1e9}\n"
      "  result = s:run('local s = 0 for i = 1, 1e7 do s = s + i end print(s)')\n"
      "  done = true\n"
      "end)\n"
      "sched.spawn(function() while not done do ticks = ticks + 1 sched.sleep(1) end end)\n"
      "loop.run()\n"
      "check(done and result == '50000005000000\\n', q(result))\n"
      "check(ticks >= 2, 'other tasks ran meanwhile: ' .. ticks)\n");
}

TEST(test_parked_calls) {
  run_in_node(
      "local ticks, done, out, err, during = 0, false\n"
      "sched.spawn(function()\n"
      "  local sb = sandbox.new{\n"
      "    grants = {{name = 'net', scope = {prefix = 'http'}, methods = {get = {target = 1}, boom = {}}}},\n"
      "    dispatch = function(g, m, url)\n"
      "      sched.sleep(5)\n"
      "      if m == 'boom' then error('node failed', 0) end\n"
      "      return {url = url, status = 200}\n"
      "    end}\n"
      "  out, err = sb:run([[\n"
      "    local r = net.get('http://a') print(r.url, r.status)\n"
      "    local co = coroutine.wrap(function()\n"
      "      local x = net.get('http://b') coroutine.yield(x.url)\n"
      "      local inner = coroutine.create(function() return pcall(net.get, 'http://c') end)\n"
      "      local _, ok, r2 = coroutine.resume(inner)\n"
      "      return ok, r2.url\n"
      "    end)\n"
      "    print(co()) print(co())\n"
      "    print(pcall(net.get, 'ftp://x'))\n"
      "    print(pcall(net.boom))\n"
      "    print(pcall(string.gsub, 'x', 'x', function() return net.get('http://d').url end))\n"
      "    print(select(2, pcall(function() local t = {} for i = 1, 3 do t[i] = net.get('http://' .. i).url end return table.concat(t, ' ') end)))\n"
      "  ]])\n"
      "  done = true\n"
      "end)\n"
      "sched.spawn(function() while not done do ticks = ticks + 1 sched.sleep(1) end end)\n"
      "loop.run()\n"
      "check(done and err == nil, q(err))\n"
      "check(out == 'http://a\\t200\\nhttp://b\\ntrue\\thttp://c\\n'\n"
      "  .. \"false\\tpermission denied: net.get: 'ftp://x' is outside prefix 'http'\\n\"\n"
      "  .. 'false\\tnode failed\\n'\n"
      "  .. 'false\\trun_code:11: node:6: sleep: not inside a sched coroutine\\n'\n"
      "  .. 'http://1 http://2 http://3\\n', q(out))\n"
      "check(ticks >= 5, 'dispatch yielded to other tasks: ' .. ticks)\n"
      /* many parked calls whose dispatch does not yield: a loop, not a recursion */
      "done = false\n"
      "sched.spawn(function()\n"
      "  local sb = sandbox.new{grants = {{name = 'g', methods = {inc = {}}}},\n"
      "                         dispatch = function(_, _, n) return n + 1 end, instructions = 1e9}\n"
      "  out, err = sb:run([[local n = 0 for i = 1, 100000 do n = g.inc(n) end\n"
      "    coroutine.wrap(function() for i = 1, 100000 do n = g.inc(n) end end)()\n"
      "    print(n)]])\n"
      "  done = true\n"
      "end)\n"
      "loop.run()\n"
      "check(done and out == '200000\\n', q(out) .. q(err))\n"
      /* two sandboxes interleaved on one node: forced yields and parked calls */
      "local outs, order = {}, {}\n"
      "for _, name in ipairs({'a', 'b'}) do\n"
      "  sched.spawn(function()\n"
      "    local sb = sandbox.new{slice = 100, instructions = 1e9,\n"
      "      grants = {{name = 'g', methods = {step = {}}}},\n"
      "      dispatch = function(_, _, i) order[#order + 1] = name .. i sched.sleep(1) return i end}\n"
      "    outs[name] = sb:run('local s = 0 for i = 1, 3 do s = s + g.step(i) for j = 1, 1e4 do end end print(who, s)',\n"
      "                        {globals = {who = name}})\n"
      "  end)\n"
      "end\n"
      "loop.run()\n"
      "check(outs.a == 'a\\t6\\n' and outs.b == 'b\\t6\\n', q(outs.a) .. q(outs.b))\n"
      "check(table.concat(order, ' ') == 'a1 b1 a2 b2 a3 b3', table.concat(order, ' '))\n");
}

TEST(test_recursion) {
  run_in_node(
      "local big = sandbox.new{memory = 128 * 1024 * 1024, instructions = 1e9}\n"
      "local out, err = big:run('local function f() return f() + 1 end f()')\n"
      "check(has(err, 'stack overflow'), q(err))\n"
      "big:close()\n"
      "local sb = sandbox.new{memory = 64 * 1024 * 1024, instructions = 1e9}\n"
      "out, err = sb:run('local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x')\n"
      "check(has(err, 'stack overflow'), q(err))\n"
      "out, err = sb:run('local function f(s) return (s:gsub(\".\", f)) end f(\"ab\")')\n"
      "check(has(err, 'stack overflow'), q(err))\n"
      "out, err = sb:run('local t = setmetatable({}, {__tostring = function(t) return tostring(t) end}) print(t)')\n"
      "check(has(err, 'stack overflow'), q(err))\n"
      "out, err = sb:run('local function f() pcall(f) end f() print(\"done\")')\n"
      "check(out == 'done\\n', q(out) .. q(err))\n"
      "out, err = sb:run('local function f() coroutine.wrap(f)() end f()')\n"
      "check(has(err, 'stack overflow'), q(err))\n"
      "local small = sandbox.new{}\n"
      "out, err = small:run('local function f() return f() + 1 end f()')\n"
      "check(err == 'memory limit exceeded' or has(err, 'stack overflow'), q(err))\n"
      "out, err = sb:run('print(\"alive\")')\n"
      "check(out == 'alive\\n', q(out))\n");
}

TEST(test_stats_and_close) {
  run_in_node("local sb = sandbox.new{}\n"
              "local st = sb:stats()\n"
              "check(st.memory > 0 and st.memory < 200000 and st.instructions == 0, st.memory)\n"
              "sb:run('for i = 1, 100000 do end')\n"
              "check(sb:stats().instructions >= 100000, sb:stats().instructions)\n"
              "check(has(tostring(sb), 'sandbox'))\n"
              "sb:close() sb:close()\n"
              "check(sb:stats().memory == 0 and tostring(sb) == 'sandbox (closed)')\n"
              "local ok, e = pcall(sb.run, sb, 'print(1)')\n"
              "check(not ok and has(e, 'sandbox is closed'), e)\n"
              "do local x <close> = sandbox.new{} end\n"
              "for i = 1, 20 do sandbox.new{}:run('x = {} for i = 1, 100 do x[i] = i end') end\n"
              "collectgarbage() collectgarbage()\n");
}

/* sandbox_copy between two plain states. */
TEST(test_copy) {
  lua_State *A = luaL_newstate(), *B = luaL_newstate();
  char err[256];
  int top;
  luaL_openlibs(A);
  luaL_openlibs(B);
  lua_register(A, "check", unit_lua_check);
  json_push_array_mt(B);
  lua_pop(B, 1);

  lua_pushinteger(A, 3);
  lua_pushnumber(A, 3.0);
  lua_pushlightuserdata(A, json_null);
  CHECK(sandbox_copy(A, 1, B, 100, err, sizeof err) && lua_isinteger(B, -1));
  CHECK(sandbox_copy(A, -2, B, 100, err, sizeof err) && !lua_isinteger(B, -1) && lua_tonumber(B, -1) == 3.0);
  CHECK(sandbox_copy(A, -1, B, 100, err, sizeof err) && lua_touserdata(B, -1) == json_null);
  CHECK(lua_gettop(A) == 3 && lua_gettop(B) == 3);
  lua_settop(A, 0);
  lua_settop(B, 0);

  luaL_loadstring(
      A,
      "local mt = ... local s = {1, 2} return {x = s, y = s, a = setmetatable({}, mt), [1] = 'one', [2.5] = true}");
  json_push_array_mt(A);
  lua_call(A, 1, 1);
  CHECK(sandbox_copy(A, 1, B, 1000, err, sizeof err));
  CHECK(lua_gettop(A) == 1 && lua_gettop(B) == 1);
  lua_getfield(B, 1, "a");
  CHECK(lua_getmetatable(B, -1));
  json_push_array_mt(B);
  CHECK(lua_rawequal(B, -1, -2));
  lua_settop(B, 1);
  lua_getfield(B, 1, "x");
  lua_getfield(B, 1, "y");
  CHECK(lua_istable(B, 2) && lua_rawlen(B, 2) == 2 && !lua_getmetatable(B, 2));
  CHECK(lua_geti(B, 1, 1) == LUA_TSTRING);
  lua_settop(B, 0);
  lua_settop(A, 0);

  CHECK(luaL_dostring(A, "local t = {a = {}} t.a.b = {t} return t") == LUA_OK);
  top = lua_gettop(B);
  CHECK(!sandbox_copy(A, 1, B, 1000, err, sizeof err));
  CHECK_STR(err, "cannot copy a table that contains itself at $.a.b[1]");
  CHECK(lua_gettop(A) == 1 && lua_gettop(B) == top);
  lua_settop(A, 0);

  CHECK(luaL_dostring(A, "return {1, {print}}") == LUA_OK);
  CHECK(!sandbox_copy(A, 1, B, 1000, err, sizeof err));
  CHECK_STR(err, "cannot copy a function at $[2][1]");
  lua_settop(A, 0);

  CHECK(luaL_dostring(A, "return string.rep('x', 100)") == LUA_OK);
  CHECK(!sandbox_copy(A, 1, B, 50, err, sizeof err));
  CHECK_STR(err, "more than 50 bytes");
  CHECK(sandbox_copy(A, 1, B, 101, err, sizeof err));
  lua_settop(A, 0);
  lua_settop(B, 0);

  CHECK(luaL_dostring(A, "local t = {} for i = 1, 200 do t = {t} end return t") == LUA_OK);
  CHECK(!sandbox_copy(A, 1, B, 100000, err, sizeof err));
  CHECK(strncmp(err, "tables nested deeper than 200", 29) == 0);
  lua_settop(A, 0);
  CHECK(luaL_dostring(A, "local t = {} for i = 1, 199 do t = {t} end return t") == LUA_OK);
  CHECK(sandbox_copy(A, 1, B, 100000, err, sizeof err));
  lua_settop(A, 0);
  lua_settop(B, 0);

  /* shared subtables are copied each time they appear: the byte cap bounds the blowup */
  CHECK(luaL_dostring(A, "local t = {'leaf'} for i = 1, 60 do t = {t, t} end return t") == LUA_OK);
  CHECK(!sandbox_copy(A, 1, B, 1 << 20, err, sizeof err));
  CHECK(strncmp(err, "more than 1048576 bytes", 23) == 0);
  lua_settop(A, 0);

  lua_pushthread(A);
  CHECK(!sandbox_copy(A, 1, B, 100, err, sizeof err));
  CHECK_STR(err, "cannot copy a thread");
  lua_newuserdatauv(A, 1, 0);
  CHECK(!sandbox_copy(A, -1, B, 100, err, sizeof err));
  CHECK_STR(err, "cannot copy a userdata");
  lua_pushlightuserdata(A, err);
  CHECK(!sandbox_copy(A, -1, B, 100, err, sizeof err));
  CHECK_STR(err, "cannot copy a light userdata");
  CHECK(lua_gettop(A) == 3 && lua_gettop(B) == 0);
  lua_close(A);
  lua_close(B);
}

/* new() leaves the collector stopped until the first setup; it must run from then on,
 * also when the first run never got as far as running code. */
TEST(test_collector_runs) {
  run_in_node("local probe = [[local w = setmetatable({}, {__mode = 'k'}) w[{}] = true\n"
              "  for i = 1, 20000 do local _ = {i, tostring(i)} end print(next(w) == nil)]]\n"
              "local sb = sandbox.new{}\n"
              "check(sb:run(probe) == 'true\\n', 'the first run collects')\n"
              "sb:close()\n"
              "sb = sandbox.new{}\n"
              "local out, err = sb:run('syntax error(')\n"
              "check(err ~= nil, 'a syntax error')\n"
              "check(sb:run(probe) == 'true\\n', 'a run after a failed first run collects')\n"
              "sb:close()\n");
}

TEST(test_patterns) {
  run_in_node(
      "local sb = sandbox.new{instructions = 1000000}\n"
      "local out, err = sb:run([[string.find(string.rep('a', 5000), string.rep('a*', 30) .. 'b')]])\n"
      "check(err == 'instruction budget exhausted', q(err))\n"
      "out, err = sb:run([[print(pcall(string.gsub, string.rep('a', 3000), string.rep('a-', 20) .. 'b', ''))]])\n"
      "check(err == 'instruction budget exhausted', q(err))\n"
      "local slow = sandbox.new{instructions = 1 << 50, deadline_ms = 50}\n"
      "out, err = slow:run([[for _ in string.rep('a', 5000):gmatch(string.rep('a*', 30) .. 'b') do end]])\n"
      "check(err == 'deadline exceeded', q(err))\n"
      "sb:close() sb = sandbox.new{instructions = 1000000} -- the budget is for the sandbox's life\n"
      "out, err = sb:run([[print(('key = val'):match('(%w+)%s*=%s*(%w+)'), ('f(a(b)c)'):find('%b()'),\n"
      "  ('hello world'):gsub('o', {o = '0'}), ('THE (quick) fox'):find('%f[%a]%a+', 5))\n"
      "  local g = ('a1b2'):gmatch('%a(%d)') print(coroutine.wrap(function() return g() end)(), g(), g())]])\n"
      "check(err == nil and out == 'key\\t2\\thell0 w0rld\\t6\\t10\\n1\\t2\\n', q(out) .. q(err))\n"
      "out, err = sb:run([[string.match('x', string.rep('(', 33) .. 'x' .. string.rep(')', 33))]])\n"
      "check(err and err:find('too many captures', 1, true), q(err))\n"
      "out, err = sb:run([[string.match(string.rep('a', 300), string.rep('a?', 300))]])\n"
      "check(err and err:find('pattern too complex', 1, true), q(err))\n"
      "local used = sb:stats().instructions\n"
      "sb:run([[local s = string.rep('ab ', 10000) s:gsub('%w+', 'x')]])\n"
      "check(sb:stats().instructions - used > 10000, 'pattern work is charged')\n"
      "sb:close() slow:close()\n");
}

/* pred(src, payload): sandbox_predicate's result; its message in pred_err. */
static char pred_err[512];
static int pred (const char *src, const char *payload) {
  return sandbox_predicate(src, payload, strlen(payload), pred_err, sizeof pred_err);
}

TEST(test_predicate) {
  const char *p = "{\"priority\": 5, \"tags\": [\"a\", \"b\"], \"who\": {\"name\": \"ann\"}, \"n\": null}";
  CHECK(pred("payload.priority > 3", p) == 1);
  CHECK(pred("payload.priority > 7", p) == 0);
  CHECK(pred("payload.who.name == 'ann' and #payload.tags == 2", p) == 1);
  CHECK(pred("payload.n == json.null", p) == 1);
  CHECK(pred("payload.missing", p) == 0);
  CHECK(pred("0", p) == 1); /* Lua truth: only nil and false are false */
  CHECK(pred("local t = 0 for _, v in ipairs(payload.tags) do t = t + #v end return t == 2", p) == 1);
  CHECK(pred("if payload.priority > 3 then return true end", p) == 1);
  CHECK(pred("x = 1", p) == 0); /* a chunk without return: nil */
  CHECK(pred("string.upper(payload.who.name) == 'ANN' and math.max(1, 2) == 2", p) == 1);
  CHECK(pred("payload.who.name:find('n') == 2", p) == 1);
  CHECK(pred("payload", "[]") == 1);

  CHECK(pred("payload.priority >", p) == -1);
  CHECK(strncmp(pred_err, "predicate: predicate:1: syntax error", 36) == 0);
  CHECK(pred("payload.nothing.deeper", p) == -1);
  CHECK(strstr(pred_err, "predicate:1: attempt to index a nil value") != NULL);
  CHECK(pred("error({})", p) == -1);
  CHECK_STR(pred_err, "predicate: (error object is a table value)");
  CHECK(pred("true", "{bad") == -1);
  CHECK(strncmp(pred_err, "predicate: payload: ", 20) == 0);
  CHECK(sandbox_predicate(NULL, p, strlen(p), pred_err, sizeof pred_err) == -1);
  CHECK(sandbox_predicate("true", "{}", 2, NULL, 0) == 1);
  CHECK(sandbox_predicate("x(", "{}", 2, NULL, 0) == -1);

  /* no print, help, dir, exit or load; no grants */
  CHECK(pred("print == nil and help == nil and dir == nil and exit == nil and load == nil", p) == 1);
  CHECK(pred("io == nil and os.execute == nil and require == nil and debug == nil", p) == 1);
  CHECK(pred("_G == _ENV and _G.payload.priority == 5", p) == 1);
  CHECK(pred("getmetatable(_ENV) == 'locked'", p) == 1);
  CHECK(pred("setmetatable(_ENV, {})", p) == -1);
  CHECK(strstr(pred_err, "protected metatable") != NULL);

  /* limits, and the state stays usable after each kill */
  CHECK(pred("while true do end", p) == -1);
  CHECK_STR(pred_err, "predicate: instruction budget exhausted");
  CHECK(pred("pcall(function() while true do end end) return true", p) == -1);
  CHECK_STR(pred_err, "predicate: instruction budget exhausted");
  CHECK(pred("payload.priority == 5", p) == 1);
  CHECK(pred("local t = {} for i = 1, 20 do t[i] = string.rep('x', 100000) .. i end", p) == -1);
  CHECK_STR(pred_err, "predicate: memory limit exceeded");
  CHECK(pred("#string.rep('x', 400000) == 400000", p) == 1); /* well under 1 MiB is fine */
  CHECK(pred("payload.priority == 5", p) == 1);
  CHECK(pred("local function f() return f() + 1 end return f()", p) == -1);
  CHECK(strstr(pred_err, "stack overflow") != NULL || strstr(pred_err, "memory limit") != NULL);
  /* a big payload is not charged to the predicate's allowance */
  {
    size_t n = 3 * 1024 * 1024;
    char *big = malloc(n + 16);
    memcpy(big, "{\"s\": \"", 7);
    memset(big + 7, 'y', n);
    memcpy(big + 7 + n, "\"}", 3);
    CHECK(pred("#payload.s == 3145728", big) == 1);
    free(big);
  }

  /* nothing leaks from one call to the next */
  CHECK(pred("leak = 1 string.leak = 1 payload.leak = 1 math.pi = 3 return true", p) == 1);
  CHECK(pred("leak == nil and string.leak == nil and payload.leak == nil and math.pi > 3.14", p) == 1);
  CHECK(pred("rawset(string, 'leak', 1) rawset(_ENV, 'leak', 1) return true", p) == 1);
  CHECK(pred("leak == nil and string.leak == nil and rawget(_ENV, 'leak') == nil", p) == 1);
  CHECK(pred("string.upper = function() return 'X' end return ('a'):upper() == 'A'", p) == 1);
  CHECK(pred("string.upper('a') == 'A'", p) == 1);
  CHECK(pred("tostring = nil pairs = nil return true", p) == 1);
  CHECK(pred("tostring(1) == '1' and pairs ~= nil", p) == 1);
  /* the same source twice (cached): still a fresh environment each time */
  CHECK(pred("n = (n or 0) + 1 return n == 1", p) == 1);
  CHECK(pred("n = (n or 0) + 1 return n == 1", p) == 1);
  /* more sources than the cache holds: evicted ones compile again */
  for (int i = 0; i < 80; i++) {
    char src[64];
    snprintf(src, sizeof src, "payload.priority == %d", i % 40);
    CHECK(pred(src, p) == (i % 40 == 5));
  }

  /* a fresh state after close */
  sandbox_predicate_close();
  CHECK(pred("payload.priority == 5", p) == 1);
  sandbox_predicate_close();
  sandbox_predicate_close();
}

#define RUN_IF(name) \
  if (argc < 2 || strcmp(argv[1], #name) == 0) RUN(name)

int main (int argc, char **argv) {
  RUN_IF(test_print);
  RUN_IF(test_persistence);
  RUN_IF(test_stripped_library);
  RUN_IF(test_metatables);
  RUN_IF(test_memory_limit);
  RUN_IF(test_instruction_budget);
  RUN_IF(test_deadline);
  RUN_IF(test_errors);
  RUN_IF(test_exit);
  RUN_IF(test_grants);
  RUN_IF(test_grant_setup);
  RUN_IF(test_dispatch_reentry);
  RUN_IF(test_event_and_globals);
  RUN_IF(test_coroutines);
  RUN_IF(test_forced_yield);
  RUN_IF(test_parked_calls);
  RUN_IF(test_recursion);
  RUN_IF(test_stats_and_close);
  RUN_IF(test_copy);
  RUN_IF(test_collector_runs);
  RUN_IF(test_patterns);
  RUN_IF(test_predicate);
  return unit_report();
}
