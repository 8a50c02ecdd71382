/* test_json.c — the JSON codec: mapping, numbers, strings, errors, limits. */
#include "json.h"
#include "lcore.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>

/* check(cond, what) for Lua snippets: counts like CHECK, reports the Lua line. */
static lua_State *new_state (void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "json", json_luaopen, 1);
  lua_pop(L, 1);
  lua_register(L, "check", unit_lua_check);
  return L;
}

static void lua_run (lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL %s: Lua error: %s\n", unit_current, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static const char *helpers =
    "function enc(v, o) local s, e = json.encode(v, o); return s or e end\n"
    "function dec_err(s) local v, e = json.decode(s); check(v == nil, 'expected an error for ' .. s); return e end\n"
    "function same(a, b)\n"
    "  if a == b then return true end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return false end\n"
    "  if next(a) == nil and json.is_array(a) ~= json.is_array(b) then return false end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return math.type(a) == math.type(b)\n"
    "end\n";

TEST(test_scalars) {
  lua_State *L = new_state();
  lua_run(L, helpers);
  lua_run(
      L,
      "check(enc(nil) == 'null') check(enc(true) == 'true') check(enc(false) == 'false')\n"
      "check(enc(json.null) == 'null')\n"
      "check(enc(1) == '1') check(enc(-42) == '-42') check(enc(0) == '0')\n"
      "check(enc(math.maxinteger) == '9223372036854775807')\n"
      "check(enc(math.mininteger) == '-9223372036854775808')\n"
      "check(enc(1.0) == '1.0', enc(1.0)) check(enc(-0.0) == '-0.0') check(enc(2^53) == '9007199254740992.0')\n"
      "check(enc(0.1) == '0.1', enc(0.1)) check(enc(1.5) == '1.5') check(enc(1e300) == '1e+300')\n"
      "local third = 1/3; check(json.decode(enc(third)) == third)\n"
      "check(enc(0.1 + 0.2) == '0.30000000000000004', enc(0.1 + 0.2))\n"
      "check(enc(0/0):find('cannot encode NaN at %$') ~= nil, enc(0/0))\n"
      "check(enc(1/0) == 'cannot encode inf at $') check(enc(-1/0) == 'cannot encode -inf at $')\n"
      "check(enc({x = {1, 1/0}}) == 'cannot encode inf at $.x[2]', enc({x = {1, 1/0}}))\n");
  lua_close(L);
}

TEST(test_numbers_decode) {
  lua_State *L = new_state();
  lua_run(L, helpers);
  lua_run(
      L,
      "check(math.type(json.decode('1')) == 'integer') check(json.decode('-7') == -7)\n"
      "check(math.type(json.decode('1.0')) == 'float') check(math.type(json.decode('1e2')) == 'float')\n"
      "check(json.decode('1E2') == 100.0) check(json.decode('-2.5e-3') == -0.0025)\n"
      "check(json.decode('9223372036854775807') == math.maxinteger)\n"
      "check(json.decode('-9223372036854775808') == math.mininteger)\n"
      "check(math.type(json.decode('-9223372036854775808')) == 'integer')\n"
      "local big = json.decode('9223372036854775808'); check(math.type(big) == 'float' and big == 2^63)\n"
      "check(math.type(json.decode('-9223372036854775809')) == 'float')\n"
      "check(math.type(json.decode('123456789012345678901234567890')) == 'float')\n"
      "check(json.decode(' 0 ') == 0)\n"
      "check(dec_err('01') == 'bad JSON at line 1 col 1: invalid number (leading zero)', dec_err('01'))\n"
      "check(dec_err('-') ~= nil) check(dec_err('1.') ~= nil) check(dec_err('.5') ~= nil)\n"
      "check(dec_err('1e') ~= nil) check(dec_err('+1') ~= nil)\n"
      "check(dec_err('1e400') == 'bad JSON at line 1 col 1: number out of range', dec_err('1e400'))\n"
      "local s = '[' .. string.rep('1', 100) .. '.5]'; check(json.decode(s)[1] > 1e99)\n"
      "for _, v in ipairs{0, 1, -1, 123456789, 2^31, 2^63 - 1024, math.pi, -math.pi, 1e-300, 5e-324, 1.7976931348623157e308} do\n"
      "  local back = json.decode(enc(v)); check(back == v and math.type(back) == math.type(v), tostring(v))\n"
      "end\n");
  lua_close(L);
}

TEST(test_strings) {
  lua_State *L = new_state();
  lua_run(L, helpers);
  lua_run(
      L,
      "check(enc('a\"b\\\\c') == '\"a\\\\\"b\\\\\\\\c\"')\n"
      "check(enc('\\n\\t\\r\\b\\f') == [[\"\\n\\t\\r\\b\\f\"]])\n"
      "check(enc('\\0\\1\\31') == [[\"\\u0000\\u0001\\u001f\"]], enc('\\0\\1\\31'))\n"
      "check(enc('/') == '\"/\"') check(enc('\\127') == '\"\\127\"')\n"
      "check(enc('h\\u{e9}llo \\u{1F600}') == '\"h\\u{e9}llo \\u{1F600}\"')\n"
      "check(enc('\\xff') == 'cannot encode a string that is not valid UTF-8 at $')\n"
      "check(enc({k = 'ok\\xc3'}) == 'cannot encode a string that is not valid UTF-8 at $.k')\n"
      "check(enc('\\xed\\xa0\\x80'):find('not valid UTF') ~= nil)\n" /* encoded surrogate */
      "check(enc('\\xc0\\x80'):find('not valid UTF') ~= nil)\n"      /* overlong NUL */
      "check(json.decode([[\"\\u00e9\\u20ac\\ud83d\\ude00\"]]) == '\\u{e9}\\u{20ac}\\u{1F600}')\n"
      "check(json.decode([[\"a\\/b\\\"c\\\\d\\n\"]]) == 'a/b\"c\\\\d\\n')\n"
      "check(json.decode([[\"\\u0000\"]]) == '\\0')\n"
      "check(json.decode('\"\\u{1F600}\"') == '\\u{1F600}')\n"
      "check(dec_err([[\"\\ud83d\"]]) == 'bad JSON at line 1 col 2: lone surrogate in \\\\u escape', dec_err([[\"\\ud83d\"]]))\n"
      "check(dec_err([[\"\\ude00x\"]]):find('lone surrogate') ~= nil)\n"
      "check(dec_err([[\"\\ud83d\\u0041\"]]):find('lone surrogate') ~= nil)\n"
      "check(dec_err([[\"\\x\"]]) == 'bad JSON at line 1 col 2: invalid escape in string')\n"
      "check(dec_err([[\"\\u12\"]]):find('bad \\\\u escape') ~= nil)\n"
      "check(dec_err('\"a\\nb\"'):find('control character') ~= nil)\n"
      "check(dec_err('\"\\xff\"'):find('invalid UTF%-8') ~= nil)\n"
      "check(dec_err('\"abc') == 'bad JSON at line 1 col 1: unterminated string')\n"
      "local long = string.rep('x\\\\n', 400); check(json.decode('\"' .. long .. '\"') == string.rep('x\\n', 400))\n"
      "local all = {} for i = 0, 127 do all[#all + 1] = string.char(i) end all = table.concat(all)\n"
      "check(json.decode(enc(all)) == all)\n");
  lua_close(L);
}

TEST(test_tables) {
  lua_State *L = new_state();
  lua_run(L, helpers);
  lua_run(
      L,
      "check(enc({}) == '{}') check(enc(json.array()) == '[]') check(enc(json.array({})) == '[]')\n"
      "check(enc({1, 2, 3}) == '[1,2,3]') check(enc({'a', {true}}) == '[\"a\",[true]]')\n"
      "check(enc({b = 1, a = 2, c = {z = 1, y = 2}}) == '{\"a\":2,\"b\":1,\"c\":{\"y\":2,\"z\":1}}')\n"
      "check(enc({[1] = 1, [3] = 3}) == '{\"1\":1,\"3\":3}')\n"
      "check(enc({1, 2, x = 3}) == '{\"1\":1,\"2\":2,\"x\":3}')\n"
      "check(enc({[2] = 'b'}) == '{\"2\":\"b\"}') check(enc({[-1] = 0}) == '{\"-1\":0}')\n"
      "check(enc({[1] = 'a', ['1'] = 'b'}):find('duplicate key') ~= nil)\n"
      "check(enc({[true] = 1}) == 'cannot encode a boolean key at $')\n"
      "check(enc({a = {[1.5] = 1}}) == 'cannot encode a non-integer number key at $.a')\n"
      "check(enc({a = {1, function() end}}) == 'cannot encode a function at $.a[2]', enc({a = {1, function() end}}))\n"
      "check(enc({['a b'] = {io.stdout}}) == 'cannot encode a userdata at $[\"a b\"][1]', enc({['a b'] = {io.stdout}}))\n"
      "check(enc(coroutine.create(print)) == 'cannot encode a thread at $')\n"
      "local arr = json.array({1, nil, 3}); check(enc(arr) == '[1,null,3]' or enc(arr) == '[1]')\n"
      "check(enc(json.array({n = 1})) == '[]')\n"
      "check(enc({a = json.null}) == '{\"a\":null}')\n"
      "local cyc = {}; cyc.self = cyc; check(enc(cyc):find('nested deeper than 200') ~= nil, enc(cyc))\n"
      "local keys = {} for i = 1, 500 do keys['k' .. i] = i end\n"
      "local s = enc(keys); local t = json.decode(s); check(same(t, keys))\n"
      "check(s == enc(t))\n"
      "local prev for k in s:gmatch('\"(k%d+)\"') do if prev then check(prev < k) end prev = k end\n"
      "check(enc({a = {1, {b = json.array()}, {}}, z = 'x'}, {pretty = true}) ==\n"
      "  '{\\n  \"a\": [\\n    1,\\n    {\\n      \"b\": []\\n    },\\n    {}\\n  ],\\n  \"z\": \"x\"\\n}')\n"
      "check(enc({}, {pretty = true}) == '{}')\n");
  lua_close(L);
}

TEST(test_decode_structure) {
  lua_State *L = new_state();
  lua_run(L, helpers);
  lua_run(
      L,
      "local a = json.decode('[]'); check(json.is_array(a) and next(a) == nil)\n"
      "local o = json.decode('{}'); check(not json.is_array(o) and next(o) == nil)\n"
      "check(enc(json.decode('{\"a\":[],\"b\":{}}')) == '{\"a\":[],\"b\":{}}')\n"
      "local v = json.decode(' { \"a\" : [1, 2.5, \"x\", true, false, null, {\"b\": null}] } ')\n"
      "check(v.a[1] == 1 and v.a[2] == 2.5 and v.a[3] == 'x' and v.a[4] == true and v.a[5] == false)\n"
      "check(v.a[6] == json.null and v.a[7].b == json.null and #v.a == 7)\n"
      "check(json.decode('{\"k\":1,\"k\":2}').k == 2)\n"
      "check(json.decode('null') == json.null) check(json.decode('\"s\"') == 's')\n"
      "check(dec_err('{\"a\" 1}') == \"bad JSON at line 1 col 6: expected ':'\", dec_err('{\"a\" 1}'))\n"
      "check(dec_err('{\\n  \"a\": 1,\\n  \"b\" 2}') == \"bad JSON at line 3 col 7: expected ':'\")\n"
      "check(dec_err('[1 2]') == \"bad JSON at line 1 col 4: expected ',' or ']'\")\n"
      "check(dec_err('{\"a\":1 \"b\":2}') == \"bad JSON at line 1 col 8: expected ',' or '}'\")\n"
      "check(dec_err('{a:1}') == 'bad JSON at line 1 col 2: expected a string key')\n"
      "check(dec_err('[1,]') == 'bad JSON at line 1 col 4: expected a value')\n"
      "check(dec_err('{\"a\":1,}') == 'bad JSON at line 1 col 8: expected a string key')\n"
      "check(dec_err('') == 'bad JSON at line 1 col 1: unexpected end of input')\n"
      "check(dec_err('[') == 'bad JSON at line 1 col 2: unexpected end of input')\n"
      "check(dec_err('{} x') == 'bad JSON at line 1 col 4: unexpected text after the value')\n"
      "check(dec_err('[1] [2]') ~= nil) check(dec_err('tru') ~= nil) check(dec_err('nul') ~= nil)\n"
      "check(dec_err('True') ~= nil) check(dec_err('NaN') ~= nil) check(dec_err('\\'a\\'') ~= nil)\n"
      "check(json.decode(string.rep('[', 200) .. string.rep(']', 200)) ~= nil)\n"
      "check(dec_err(string.rep('[', 201) .. string.rep(']', 201)):find('nesting too deep') ~= nil)\n"
      "check(dec_err(string.rep('{\"a\":', 201) .. '1' .. string.rep('}', 201)):find('nesting too deep') ~= nil)\n"
      "local deep = {} local cur = deep for i = 1, 199 do cur[1] = {} cur = cur[1] end\n"
      "check(json.decode(enc(deep)) ~= nil)\n"
      "local v2 = {n = 1, f = 1.0, s = 'x', a = {1, 2, {3}}, e = json.array(), o = {}, z = json.null,\n"
      "  nested = {deep = {deeper = {true, false}}}}\n"
      "check(same(json.decode(enc(v2)), v2)) check(same(json.decode(enc(v2, {pretty = true})), v2))\n"
      "check(json.array_mt == getmetatable(json.decode('[]')))\n"
      "check(json.is_array({}) == false and json.is_array(1) == false)\n");
  lua_close(L);
}

TEST(test_c_api) {
  lua_State *L = new_state();
  json_buf b = {0};
  char err[128];
  lua_pushinteger(L, 7);
  CHECK(json_encode(L, -1, &b, 0, err, sizeof err) == 0);
  CHECK_STR(b.data, "7");
  lua_pushliteral(L, "x");
  CHECK(json_encode(L, -1, &b, 0, err, sizeof err) == 0); /* appends */
  CHECK_STR(b.data, "7\"x\"");
  lua_pop(L, 2);
  int top = lua_gettop(L);
  CHECK(luaL_dostring(L, "return {a = {print}}") == LUA_OK);
  CHECK(json_encode(L, -1, &b, 0, err, sizeof err) == -1);
  CHECK_STR(err, "cannot encode a function at $.a[1]");
  CHECK(b.len == 4); /* nothing appended on failure */
  CHECK_STR(b.data, "7\"x\"");
  lua_pop(L, 1);
  CHECK(lua_gettop(L) == top);
  json_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0);

  const char *s = "{\"k\": [1, 2]}";
  CHECK(json_decode(L, s, strlen(s)) == 1);
  CHECK(lua_istable(L, -1));
  lua_pop(L, 1);
  CHECK(json_decode(L, s, 5) == 0); /* only a prefix: not NUL-terminated input */
  CHECK_STR(lua_tostring(L, -1), "bad JSON at line 1 col 6: unexpected end of input");
  lua_pop(L, 1);
  CHECK(json_decode(L, "12345", 2) == 1 && lua_tointeger(L, -1) == 12);
  lua_pop(L, 1);
  CHECK(json_decode(L, "1.5e3x", 5) == 1 && lua_tonumber(L, -1) == 1500.0);
  lua_pop(L, 1);
  CHECK(lua_gettop(L) == top);

  /* The array metatable is per state and registry-held. */
  json_push_array_mt(L);
  json_push_array_mt(L);
  CHECK(lua_rawequal(L, -1, -2));
  lua_pop(L, 2);
  lua_close(L);
}

TEST(test_install) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "check", unit_lua_check);
  json_install(L);
  lua_run(
      L,
      "check(type(json) == 'table' and type(json.encode) == 'function' and type(json.decode) == 'function')\n"
      "check(type(json.null) == 'userdata' and type(json.array) == 'function' and type(json.is_array) == 'function')\n"
      "check(json.encode(json.decode('{\"a\":[]}')) == '{\"a\":[]}')\n"
      "check(json.is_array(json.array()))\n");
  /* Encoding in a state whose array metatable was never created. */
  lua_State *L2 = luaL_newstate();
  lua_createtable(L2, 0, 0);
  json_buf b = {0};
  char err[64];
  CHECK(json_encode(L2, -1, &b, 0, err, sizeof err) == 0);
  CHECK_STR(b.data, "{}");
  json_buf_free(&b);
  lua_close(L2);
  lua_close(L);
}

int main (void) {
  RUN(test_scalars);
  RUN(test_numbers_decode);
  RUN(test_strings);
  RUN(test_tables);
  RUN(test_decode_structure);
  RUN(test_c_api);
  RUN(test_install);
  return unit_report();
}
