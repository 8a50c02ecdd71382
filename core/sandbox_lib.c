/* sandbox_lib.c — the library sandbox code sees, kept pristine in S's registry.
 *
 * Lua's own libraries, stripped (sandbox.h lists what is left), plus our
 * print (captured), help, dir and exit. pcall, xpcall, load and coroutine
 * re-raise a kill instead of catching it (see sandbox_limits.c), and pass a
 * parked capability call (cap.h) up to sb:run when every thread can yield.
 * C loops whose length the code chooses (table.insert/remove/move/sort/
 * unpack, string.byte and rep of nothing, utf8.len) are charged to the budget
 * before they run, pattern
 * matching charges as it goes (sandbox_match.c), and
 * json.encode refuses values whose text would outgrow the memory limit.
 */
#include "sandbox_int.h"
#include "json.h"

#include <lauxlib.h>
#include <lualib.h>

#include <limits.h>
#include <string.h>

const char sandbox_lib_key = 0; /* see sandbox_int.h */
const char sandbox_libsize_key = 0;
const char sandbox_grants_key = 0;

/* {====================================================== base library */

static int l_print (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_of(L);
  int n = lua_gettop(L);
  for (int i = 1; i <= n && !sb->out_cut; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);
    if (i > 1) sandbox_out_add(sb, "\t", 1);
    sandbox_out_add(sb, s, len);
    lua_pop(L, 1);
  }
  sandbox_out_add(sb, "\n", 1);
  return 0;
}

/* load(s [, chunkname [, mode [, env]]]): text only; no reader functions,
 * whose errors lua_load would catch. */
static int l_load (lua_State *L) { /* may raise */
  size_t len;
  const char *s, *name;
  int status;
  if (lua_type(L, 1) != LUA_TSTRING) return luaL_argerror(L, 1, "string expected (only text chunks)");
  s = lua_tolstring(L, 1, &len);
  name = luaL_optstring(L, 2, "=(load)");
  status = luaL_loadbufferx(L, s, len, name, "t");
  if (status == LUA_OK) {
    if (!lua_isnone(L, 4)) {
      lua_pushvalue(L, 4);
      if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    return 1;
  }
  sandbox_recheck(L, sandbox_of(L), status);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

static int l_collectgarbage (lua_State *L) { /* may raise */
  const char *opt = luaL_optstring(L, 1, "collect");
  if (strcmp(opt, "count") != 0)
    return luaL_error(L, "collectgarbage: only \"count\" is allowed in the sandbox");
  lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT) + (lua_Number)lua_gc(L, LUA_GCCOUNTB) / 1024);
  return 1;
}

/* Tables only: the string metatable (shared by all strings) stays out of reach. */
static int l_getmetatable (lua_State *L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) != LUA_TTABLE || !lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__metatable"); /* pushes it only when present */
  return 1;
}

/* Tables only, and no __gc: finalizers run with hooks off, out of the kill's reach. */
static int l_setmetatable (lua_State *L) { /* may raise */
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "setmetatable: __gc is not allowed in the sandbox");
    lua_pop(L, 1);
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

static int finish_pcall (lua_State *L, int status, lua_KContext extra) { /* may raise */
  if (status != LUA_OK && status != LUA_YIELD) {
    sandbox_recheck(L, sandbox_of(L), status);
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

static int l_pcall (lua_State *L) { /* may raise */
  int status;
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1); /* the first result when all goes well */
  lua_insert(L, 1);
  status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
  return finish_pcall(L, status, 0);
}

/* Stack of xpcall while the handler runs: 1 f, 2 handler, 3 true|false, 4 result. */
static int finish_xhandler (lua_State *L, int status, lua_KContext extra) { /* may raise */
  (void)extra;
  if (status != LUA_OK && status != LUA_YIELD) sandbox_recheck(L, sandbox_of(L), status);
  lua_pushboolean(L, 0);
  lua_replace(L, 3);
  return 2;
}

static int finish_xpcall (lua_State *L, int status, lua_KContext extra) { /* may raise */
  if (status != LUA_OK && status != LUA_YIELD) {
    sandbox_recheck(L, sandbox_of(L), status);
    /* The handler sees the error after unwinding: as a message handler it
     * would run inside the raise, where hooks are off. */
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    status = lua_pcallk(L, 1, 1, 0, 0, finish_xhandler);
    return finish_xhandler(L, status, 0);
  }
  return lua_gettop(L) - (int)extra;
}

static int l_xpcall (lua_State *L) { /* may raise */
  int n = lua_gettop(L), status;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2); /* 1 f, 2 handler, 3 true, 4 f, 5.. args */
  status = lua_pcallk(L, n - 2, LUA_MULTRET, 0, 2, finish_xpcall);
  return finish_xpcall(L, status, 2);
}

static int l_exit (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_of(L);
  sandbox_stop(L, sb, STOP_EXIT);
  return sandbox_raise_stop(L, sb);
}

/* Sorted string keys of the table at idx, as a JSON array. */
static void push_keys (lua_State *L, int idx) { /* may raise */
  lua_Integer n = 0;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, ++n);
      }
    }
  }
  sandbox_charge(L, (lua_Unsigned)n * 8u); /* the sort below runs in C */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_lib_key);
  lua_getfield(L, -1, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -4);
  lua_call(L, 1, 0); /* strings only: no Lua code runs */
  lua_pop(L, 2);
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
}

/* dir(x): a grant's methods, a table's string keys, the string methods, or the globals. */
static int l_dir (lua_State *L) { /* may raise */
  const cap_grant *g = cap_to_grant(L, 1);
  if (g) {
    cap_push_dir(L, g);
    return 1;
  }
  switch (lua_type(L, 1)) {
  case LUA_TNONE:
  case LUA_TNIL:
    lua_pushglobaltable(L);
    break;
  case LUA_TSTRING:
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_lib_key);
    lua_getfield(L, -1, "string");
    break;
  default:
    lua_pushvalue(L, 1);
    break;
  }
  push_keys(L, -1);
  return 1;
}

static void help_general (lua_State *L) { /* may raise */
  luaL_Buffer b;
  int keys;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_grants_key);
  push_keys(L, -1);
  keys = lua_gettop(L);
  luaL_buffinit(L, &b); /* the buffer's box sits on top: add values right above it */
  luaL_addstring(&b, "Lua 5.4 sandbox. Builtins: print, json (encode, decode, null, array, is_array), "
                     "help(x), dir(x), exit(), event, and the string, table, math, utf8, coroutine "
                     "libraries, os.time/date/clock.\nGrants: ");
  if (lua_rawlen(L, keys) == 0) luaL_addstring(&b, "none");
  for (lua_Integer i = 1; lua_rawgeti(L, keys, i) == LUA_TSTRING; i++) {
    if (i > 1) {
      lua_pop(L, 1);
      luaL_addstring(&b, ", ");
      lua_rawgeti(L, keys, i);
    }
    luaL_addvalue(&b);
  }
  lua_pop(L, 1);
  luaL_addstring(&b, ". help(<grant>) lists its methods.");
  luaL_pushresult(&b);
  lua_replace(L, keys - 1);
  lua_settop(L, keys - 1);
}

/* help(x): prints a grant's description and methods, or what kind of value x is. */
static int l_help (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_of(L);
  const cap_grant *g = cap_to_grant(L, 1);
  size_t len;
  const char *s;
  if (g) {
    cap_push_help(L, g);
  } else {
    switch (lua_type(L, 1)) {
    case LUA_TNONE:
    case LUA_TNIL:
      help_general(L);
      break;
    case LUA_TTABLE:
      lua_pushfstring(L, "table with %d array items; dir(t) lists its string keys", (int)lua_rawlen(L, 1));
      break;
    case LUA_TSTRING:
      lua_pushfstring(L, "string of %d bytes; dir(\"\") lists the string methods (s:upper() ...)",
                      (int)lua_rawlen(L, 1));
      break;
    case LUA_TNUMBER:
      lua_pushstring(L, lua_isinteger(L, 1) ? "integer" : "float");
      break;
    case LUA_TFUNCTION:
      lua_pushstring(L, lua_iscfunction(L, 1) ? "built-in function" : "function");
      break;
    case LUA_TTHREAD:
      lua_pushliteral(L, "coroutine");
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, 1) == json_null) {
        lua_pushliteral(L, "json.null, the JSON null");
        break;
      }
      /* fall through */
    default:
      lua_pushstring(L, luaL_typename(L, 1));
      break;
    }
  }
  s = lua_tolstring(L, -1, &len);
  sandbox_out_add(sb, s, len);
  sandbox_out_add(sb, "\n", 1);
  return 0;
}

static const luaL_Reg sandbox_base[] = {
    {"print", l_print},
    {"load", l_load},
    {"collectgarbage", l_collectgarbage},
    {"getmetatable", l_getmetatable},
    {"setmetatable", l_setmetatable},
    {"pcall", l_pcall},
    {"xpcall", l_xpcall},
    {"exit", l_exit},
    {"help", l_help},
    {"dir", l_dir},
    {NULL, NULL},
};

/* Kept from Lua's base library as they are. */
static const char *const sandbox_base_kept[] = {
    "assert", "error",  "ipairs", "next",     "pairs",    "rawequal", "rawget",
    "rawlen", "rawset", "select", "tonumber", "tostring", "type",     NULL,
};

/* }====================================================== */

/* {====================================================== coroutines */

enum { CO_RESUME, CO_WRAP }; /* which function resumes: coroutine.resume or a wrap */

static int co_step(lua_State *L, lua_State *co, int narg, int kind);

/* A capability call parked in co was passed up and made: resume co for it. */
static int co_step_k (lua_State *L, int status, lua_KContext kind) { /* may raise */
  lua_State *co = lua_tothread(L, kind == CO_RESUME ? 1 : lua_upvalueindex(1));
  (void)status;
  return co_step(L, co, 0, (int)kind);
}

/* The end of a resume: results, or the error, as coroutine.resume or wrap give them. */
static int co_done (lua_State *L, lua_State *co, int status, int nres, int kind) { /* may raise */
  sandbox *sb = sandbox_of(L);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      return luaL_error(L, "too many results to resume");
    }
    lua_xmove(co, L, nres);
    if (kind == CO_WRAP) return nres;
    lua_pushboolean(L, 1);
    lua_insert(L, -(nres + 1));
    return nres + 1;
  }
  sandbox_recheck(L, sb, status);
  if (kind == CO_RESUME) {
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
  }
  status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD) { /* it died: close its variables, as wrap does */
    sandbox_arm(sb, co);
    status = lua_resetthread(co); /* leaves the (possibly new) error on co's top */
    sandbox_recheck(L, sb, status);
  }
  lua_xmove(co, L, 1);
  if (lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* Resumes co with narg values from L. A capability call parked in co yields
 * L in turn (cap.h), when L can. Kills propagate. */
static int co_step (lua_State *L, lua_State *co, int narg, int kind) { /* may raise */
  sandbox *sb = sandbox_of(L);
  int status, nres, park_ok = sb->park_ok;
  if (!lua_checkstack(co, narg)) return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, narg);
  sandbox_arm(sb, co);
  sb->park_ok = park_ok && lua_isyieldable(L);
  status = lua_resume(co, L, narg, &nres);
  sb->park_ok = park_ok;
  if (status == LUA_YIELD && sb->caps.parked == CAP_PARK_CALL) {
    lua_pop(co, nres);
    return lua_yieldk(L, 0, kind, co_step_k);
  }
  return co_done(L, co, status, nres, kind);
}

static lua_State *co_check (lua_State *L, int idx) { /* may raise */
  lua_State *co = lua_tothread(L, idx);
  luaL_argexpected(L, co, idx, "coroutine");
  return co;
}

static int l_co_resume (lua_State *L) { /* may raise */
  lua_State *co = co_check(L, 1);
  sandbox *sb = sandbox_of(L);
  sandbox_poll(sb); /* a deadline check per resume */
  sandbox_recheck(L, sb, LUA_OK);
  return co_step(L, co, lua_gettop(L) - 1, CO_RESUME);
}

static int l_co_wrapped (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_of(L);
  sandbox_poll(sb);
  sandbox_recheck(L, sb, LUA_OK);
  return co_step(L, lua_tothread(L, lua_upvalueindex(1)), lua_gettop(L), CO_WRAP);
}

static int l_co_wrap (lua_State *L) { /* may raise */
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, l_co_wrapped, 1);
  return 1;
}

/* The run thread is the sandbox's main thread: it cannot yield. */
static int l_co_yield (lua_State *L) { /* may raise */
  if (L == sandbox_of(L)->co) return luaL_error(L, "attempt to yield from outside a coroutine");
  return lua_yield(L, lua_gettop(L));
}

static int l_co_isyieldable (lua_State *L) { /* may raise */
  lua_State *co = lua_isnone(L, 1) ? L : co_check(L, 1);
  lua_pushboolean(L, co != sandbox_of(L)->co && lua_isyieldable(co));
  return 1;
}

static int l_co_running (lua_State *L) {
  int ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain || L == sandbox_of(L)->co);
  return 2;
}

static const char *co_status (lua_State *L, lua_State *co) {
  lua_Debug ar;
  if (L == co) return "running";
  switch (lua_status(co)) {
  case LUA_YIELD:
    return "suspended";
  case LUA_OK:
    if (lua_getstack(co, 0, &ar)) return "normal";
    return lua_gettop(co) == 0 ? "dead" : "suspended";
  default:
    return "dead";
  }
}

/* Closing runs __close handlers; a thread the hook killed would run them with
 * hooks off, so nothing is closed once stopped. */
static int l_co_close (lua_State *L) { /* may raise */
  lua_State *co = co_check(L, 1);
  sandbox *sb = sandbox_of(L);
  const char *st = co_status(L, co);
  int status;
  if (strcmp(st, "dead") != 0 && strcmp(st, "suspended") != 0)
    return luaL_error(L, "cannot close a %s coroutine", st);
  sandbox_recheck(L, sb, LUA_OK);
  sandbox_arm(sb, co);
  status = lua_resetthread(co);
  sandbox_recheck(L, sb, status);
  if (status == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

static const luaL_Reg sandbox_co[] = {
    {"resume", l_co_resume},
    {"wrap", l_co_wrap},
    {"yield", l_co_yield},
    {"isyieldable", l_co_isyieldable},
    {"running", l_co_running},
    {"close", l_co_close},
    {NULL, NULL},
};

/* }====================================================== */

/* {====================================================== charged C loops */

/* string.rep of an empty string and separator loops n times for nothing. */
static int l_string_rep (lua_State *L) { /* may raise */
  size_t l, lsep;
  luaL_checklstring(L, 1, &l);
  luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &lsep);
  if (l == 0 && lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int l_table_move (lua_State *L) { /* may raise */
  lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
  if (e >= f) sandbox_charge(L, (lua_Unsigned)e - (lua_Unsigned)f + 1u);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* C loops over every byte or value asked for, behind one call: charged first
 * (string.byte and table.unpack push up to a million values, utf8.len decodes
 * the whole string). */
static lua_Integer span (lua_Integer i, lua_Integer j) { return j >= i ? j - i + 1 : 0; }

/* A string position as string.byte reads it: negative from the end. */
static lua_Integer str_pos (lua_Integer pos, lua_Integer len) {
  if (pos >= 0) return pos;
  if (-pos > len) return 0;
  return len + pos + 1;
}

static int call_original (lua_State *L, int nres) { /* may raise */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, nres);
  return nres == LUA_MULTRET ? lua_gettop(L) : nres;
}

static int l_string_byte (lua_State *L) { /* may raise */
  size_t l;
  lua_Integer i, j;
  luaL_checklstring(L, 1, &l);
  i = str_pos(luaL_optinteger(L, 2, 1), (lua_Integer)l);
  j = str_pos(luaL_optinteger(L, 3, i), (lua_Integer)l);
  if (i < 1) i = 1;
  if (j > (lua_Integer)l) j = (lua_Integer)l;
  sandbox_charge(L, (lua_Unsigned)span(i, j));
  return call_original(L, LUA_MULTRET);
}

static int l_table_unpack (lua_State *L) { /* may raise */
  lua_Integer i = luaL_optinteger(L, 2, 1);
  lua_Integer j = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
  if (j >= i && (lua_Unsigned)j - (lua_Unsigned)i < 1000000u) sandbox_charge(L, (lua_Unsigned)span(i, j));
  return call_original(L, LUA_MULTRET); /* more than the stack holds: its own error */
}

static int l_utf8_len (lua_State *L) { /* may raise */
  size_t l;
  luaL_checklstring(L, 1, &l);
  sandbox_charge(L, l / 16u);
  return call_original(L, LUA_MULTRET);
}

/* table.sort runs in C with the default comparator (and reads through a
 * C-only __index chain): charge n log2 n comparisons first. */
static int l_table_sort (lua_State *L) { /* may raise */
  lua_Integer n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  if (n > 1) {
    lua_Unsigned log2 = 1;
    for (lua_Integer k = n; k > 1; k >>= 1) log2++;
    sandbox_charge(L, (lua_Unsigned)n > LUA_MAXINTEGER / log2 ? LUA_MAXINTEGER : (lua_Unsigned)n * log2);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

/* table.insert and table.remove read #t once (a __len may lie) and charge the shift. */
static int l_table_insert (lua_State *L) { /* may raise */
  lua_Integer pos, end;
  luaL_checktype(L, 1, LUA_TTABLE);
  end = (lua_Integer)((lua_Unsigned)luaL_len(L, 1) + 1u); /* first empty slot */
  switch (lua_gettop(L)) {
  case 2:
    pos = end;
    break;
  case 3:
    pos = luaL_checkinteger(L, 2);
    luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)end, 2, "position out of bounds");
    sandbox_charge(L, (lua_Unsigned)end - (lua_Unsigned)pos);
    for (lua_Integer i = end; i > pos; i--) {
      lua_geti(L, 1, i - 1);
      lua_seti(L, 1, i);
    }
    break;
  default:
    return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos);
  return 0;
}

static int l_table_remove (lua_State *L) { /* may raise */
  lua_Integer size, pos;
  luaL_checktype(L, 1, LUA_TTABLE);
  size = luaL_len(L, 1);
  pos = luaL_optinteger(L, 2, size);
  if (pos != size)
    luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2, "position out of bounds");
  lua_geti(L, 1, pos); /* the result */
  if (pos < size) sandbox_charge(L, (lua_Unsigned)size - (lua_Unsigned)pos);
  for (; pos < size; pos++) {
    lua_geti(L, 1, pos + 1);
    lua_seti(L, 1, pos);
  }
  lua_pushnil(L);
  lua_seti(L, 1, pos);
  return 1;
}

/* json.encode builds its text in C memory, outside the cap: a table that
 * shares subtables ({t, t} nested 40 deep) would encode to terabytes with no
 * hook to stop it. Refuse what would not fit in the sandbox's memory. */
static int json_fits (lua_State *L, int idx, int depth, size_t *left) {
  size_t len;
  if (*left < 16) return 0;
  *left -= 16;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    lua_tolstring(L, idx, &len);
    if (len > *left) return 0;
    *left -= len;
    return 1;
  case LUA_TTABLE:
    if (depth >= JSON_MAX_DEPTH || !lua_checkstack(L, 3)) return 1; /* encode reports it */
    *left -= *left < (size_t)depth * 2 ? *left : (size_t)depth * 2; /* indentation */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int top = lua_gettop(L);
      if (!json_fits(L, top - 1, depth + 1, left) || !json_fits(L, top, depth + 1, left)) {
        lua_pop(L, 2);
        return 0;
      }
      lua_pop(L, 1);
    }
    return 1;
  default:
    return 1;
  }
}

static int l_json_encode (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_of(L);
  size_t left = sb->mem_max;
  luaL_checkany(L, 1);
  if (!json_fits(L, 1, 0, &left)) {
    luaL_pushfail(L);
    lua_pushfstring(L, "json.encode: the text would not fit in the sandbox's memory (%d bytes)",
                    (int)(sb->mem_max > INT_MAX ? INT_MAX : sb->mem_max));
    return 2;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* }====================================================== */

/* {====================================================== opening S */

/* The library tables, in the order opened; their field counts are the same in
 * every sandbox, so each thread counts them once (lua_next is not cheap). */
enum { LIB_STRING, LIB_TABLE, LIB_MATH, LIB_UTF8, LIB_COROUTINE, LIB_OS, LIB_JSON, LIB_N };
static const char *const lib_names[LIB_N] = {"string", "table", "math", "utf8", "coroutine", "os", "json"};
static _Thread_local int lib_counts[LIB_N];

/* Pops the library table on top into lib[name] and its field count into sizes[name]. */
static void set_lib (lua_State *S, int lib, int sizes, int which) { /* may raise */
  if (lib_counts[which] == 0) {
    int n = 0;
    lua_pushnil(S);
    while (lua_next(S, -2)) {
      lua_pop(S, 1);
      n++;
    }
    lib_counts[which] = n;
  }
  lua_pushinteger(S, lib_counts[which]);
  lua_setfield(S, sizes, lib_names[which]);
  lua_setfield(S, lib, lib_names[which]);
}

/* Calls luaopen_X and leaves its table on top (no package.loaded: S has no require). */
static void open_lib (lua_State *S, lua_CFunction open) { /* may raise */
  lua_pushcfunction(S, open);
  lua_call(S, 0, 1);
}

/* Opens the library into the registry and leaves the globals empty (and sized
 * for the names run() sets), with the collector stopped. Tables are made at their final size: growing a
 * table rehashes it, and this runs for every new sandbox. */
int sandbox_open_p (lua_State *S) { /* may raise */
  sandbox *sb = lua_touserdata(S, 1);
  int lib, sizes;
  /* Nothing here is garbage: don't trace it while building. The collector
   * stays stopped until the first run has set up (sandbox.c), or S's owner
   * restarts it. */
  lua_gc(S, LUA_GCSTOP);
  sandbox_intern_stops(S);
  lua_createtable(S, 0, 40);
  lib = lua_gettop(S);
  lua_createtable(S, 0, 12); /* name -> number of fields, for run()'s copies */
  sizes = lua_gettop(S);

  /* luaopen_base fills the globals: let it fill a scratch table instead */
  lua_rawgeti(S, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_createtable(S, 0, 32);
  lua_rawseti(S, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  open_lib(S, luaopen_base);
  for (int i = 0; sandbox_base_kept[i]; i++) {
    lua_getfield(S, -1, sandbox_base_kept[i]);
    lua_setfield(S, lib, sandbox_base_kept[i]);
  }
  lua_pop(S, 1);
  lua_createtable(S, 0, 48); /* the real globals: empty, sized for run()'s names */
  lua_rawseti(S, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pop(S, 1); /* the state's own first globals table, unused */
  lua_pushliteral(S, LUA_VERSION);
  lua_setfield(S, lib, "_VERSION");
  lua_pushvalue(S, lib);
  luaL_setfuncs(S, sandbox_base, 0);
  lua_pop(S, 1);

  /* string: this very table is the strings' __index; user code gets copies */
  open_lib(S, luaopen_string);
  lua_pushnil(S);
  lua_setfield(S, -2, "dump");
  lua_getfield(S, -1, "rep");
  lua_pushcclosure(S, l_string_rep, 1);
  lua_setfield(S, -2, "rep");
  lua_getfield(S, -1, "byte");
  lua_pushcclosure(S, l_string_byte, 1);
  lua_setfield(S, -2, "byte");
  sandbox_match_install(S);
  set_lib(S, lib, sizes, LIB_STRING);

  open_lib(S, luaopen_table);
  lua_getfield(S, -1, "move");
  lua_pushcclosure(S, l_table_move, 1);
  lua_setfield(S, -2, "move");
  lua_getfield(S, -1, "sort");
  lua_pushcclosure(S, l_table_sort, 1);
  lua_setfield(S, -2, "sort");
  lua_getfield(S, -1, "unpack");
  lua_pushcclosure(S, l_table_unpack, 1);
  lua_setfield(S, -2, "unpack");
  lua_pushcfunction(S, l_table_insert);
  lua_setfield(S, -2, "insert");
  lua_pushcfunction(S, l_table_remove);
  lua_setfield(S, -2, "remove");
  set_lib(S, lib, sizes, LIB_TABLE);

  open_lib(S, luaopen_math);
  set_lib(S, lib, sizes, LIB_MATH);
  open_lib(S, luaopen_utf8);
  lua_getfield(S, -1, "len");
  lua_pushcclosure(S, l_utf8_len, 1);
  lua_setfield(S, -2, "len");
  set_lib(S, lib, sizes, LIB_UTF8);

  open_lib(S, luaopen_coroutine);
  luaL_setfuncs(S, sandbox_co, 0);
  set_lib(S, lib, sizes, LIB_COROUTINE);

  open_lib(S, luaopen_os);
  lua_createtable(S, 0, 3);
  lua_getfield(S, -2, "time");
  lua_setfield(S, -2, "time");
  lua_getfield(S, -2, "date");
  lua_setfield(S, -2, "date");
  lua_getfield(S, -2, "clock");
  lua_setfield(S, -2, "clock");
  set_lib(S, lib, sizes, LIB_OS);
  lua_pop(S, 1);

  json_install(S);
  lua_getglobal(S, "json");
  lua_getfield(S, -1, "encode");
  lua_pushcclosure(S, l_json_encode, 1);
  lua_setfield(S, -2, "encode");
  set_lib(S, lib, sizes, LIB_JSON);
  lua_pushnil(S);
  lua_setglobal(S, "json");
  /* C code (decode, array) sets this metatable: a __gc added to it from Lua
   * would be a finalizer, and those run with hooks off. */
  json_push_array_mt(S);
  lua_pushliteral(S, "json.array");
  lua_setfield(S, -2, "__metatable");
  lua_pop(S, 1);

  /* package.loaded as requiref would have made it: error messages and
   * tracebacks name functions from it ("bad argument #1 to 'string.rep'") */
  lua_createtable(S, 0, 8);
  lua_pushnil(S);
  while (lua_next(S, sizes)) {
    lua_pop(S, 1);
    lua_pushvalue(S, -1);
    lua_rawget(S, lib);
    lua_pushvalue(S, -2);
    lua_insert(S, -2);
    lua_rawset(S, -4);
  }
  lua_pushvalue(S, lib);
  lua_setfield(S, -2, LUA_GNAME);
  lua_setfield(S, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);

  lua_pushvalue(S, lib);
  lua_rawsetp(S, LUA_REGISTRYINDEX, &sandbox_lib_key);
  lua_pushvalue(S, sizes);
  lua_rawsetp(S, LUA_REGISTRYINDEX, &sandbox_libsize_key);
  lua_pop(S, 2);

  lua_createtable(S, 0, sb->caps.n);
  for (int i = 0; i < sb->caps.n; i++) {
    cap_push_grant(S, &sb->caps, i);
    lua_setfield(S, -2, sb->caps.grants[i].name);
  }
  lua_rawsetp(S, LUA_REGISTRYINDEX, &sandbox_grants_key);
  return 0;
}

/* }====================================================== */
