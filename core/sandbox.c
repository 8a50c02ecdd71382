/* sandbox.c — untrusted Lua: one capped lua_State per sandbox, run in a hooked coroutine.
 *
 * Layout of one sandbox:
 *   - a node-side full userdata (struct sandbox) owning the sandbox state S,
 *     the grants (cap.h), the per-call output buffer and the limits; its user
 *     value holds dispatch();
 *   - S, made by lua_newstate with a capped allocator; its extra space points
 *     back at the struct (threads copy it); its registry keeps the pristine
 *     library (never reachable from sandbox code) and the grant userdata;
 *   - per run(): fresh copies of the library tables, the grants, `event` and
 *     opts.globals are set in S's globals (user globals persist), the code is
 *     loaded in text mode and resumed as a new thread T of S.
 *
 * Limits. A count hook charges the instruction budget and checks the
 * deadline. A kill sets sb->stop and re-arms the hook on every line and
 * instruction (Redis); pcall, xpcall, coroutine.resume/wrap/close and load
 * are our own and re-raise once stopped, so nothing in the sandbox catches a
 * kill. Two consequences of raising from a hook are handled on purpose: a
 * message handler would run with hooks off, so xpcall calls its handler only
 * after unwinding; a thread killed by the hook keeps hooks off, so its
 * to-be-closed variables are never run after a kill. __gc metamethods run
 * with hooks off too, so setmetatable refuses them.
 * On the run thread (never in a user coroutine) the hook also yields; sb:run
 * then lets sched run other work (sched_yield_ready) or resumes at once.
 * Allocation failures are kills too ("memory limit exceeded").
 *
 * Capability calls park (cap.h) when every thread from the caller out to
 * sb:run can yield: our coroutine.resume/wrap pass the yield up, sb:run makes
 * the call on the node's coroutine with lua_pcallk (dispatch may yield to
 * sched there) and resumes the chain, which carries the results back down.
 *
 * C loops whose length the code chooses (table.insert/remove/move,
 * string.rep of nothing) are charged to the budget before they run, and
 * json.encode refuses values whose text would outgrow the memory limit.
 */
#include "sandbox.h"
#include "cap.h"
#include "json.h"
#include "lcore.h"
#include "sched.h"

#include <lauxlib.h>
#include <lualib.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SANDBOX_MT "cogos.sandbox"
#define SANDBOX_CO_COUNT 1000      /* hook period in user coroutines (they yield on their own) */
#define SANDBOX_RESERVE (64 * 1024) /* memory lent to S to report an error after a kill */
#define SANDBOX_ERR_MAX 4096        /* bytes of an error message kept */

enum { STOP_NONE, STOP_BUDGET, STOP_DEADLINE, STOP_MEMORY, STOP_EXIT };

static const char *const stop_msg[] = {
  NULL, "instruction budget exhausted", "deadline exceeded", "memory limit exceeded", NULL,
};

static const char stop_key[4];   /* registry of S: the interned kill messages */
static const char exit_token = 0; /* the error value of exit() */
static const char lib_key = 0;    /* registry of S: name -> pristine builtin */
static const char grants_key = 0; /* registry of S: name -> grant userdata */

/* Slots of sb:run() on the node's stack; cap.c finds dispatch at RUN_DISPATCH. */
enum { RUN_SB = 1, RUN_CODE, RUN_OPTS, RUN_DISPATCH, RUN_EVENT, RUN_GLOBALS, RUN_NAME, RUN_TOP = RUN_NAME };

typedef struct sandbox {
  lua_State *S;  /* NULL once closed */
  lua_State *co; /* the thread running the code, during run() */
  cap_set caps;
  size_t mem, mem_limit, mem_max;
  long long instr_used, instr_budget;
  uint64_t deadline; /* monotonic ns */
  int slice;
  int stop;    /* STOP_* */
  int forced;  /* the hook yielded, not the code */
  int running; /* inside run(), possibly parked in sched */
  int node_yields; /* the node's coroutine can yield to sched during this run */
  int park_ok;     /* the threads resuming the running one can all yield (cap.h) */
  size_t out_max;
  char *out; /* per-call output: print() up to out_max, then notes and the error */
  size_t out_len, out_size;
  int out_cut;
  char err[SANDBOX_ERR_MAX + 4];
} sandbox;

static sandbox *sandbox_of (lua_State *L) {
  return *(sandbox **)lua_getextraspace(L);
}

static uint64_t sandbox_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* {====================================================== allocator */

static void *sandbox_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  sandbox *sb = ud;
  size_t old = ptr ? osize : 0; /* without a block, osize is only a type tag */
  void *p;
  if (nsize == 0) {
    free(ptr);
    sb->mem -= old;
    return NULL;
  }
  if (nsize > old && (sb->mem > sb->mem_limit || nsize - old > sb->mem_limit - sb->mem))
    return NULL;
  p = realloc(ptr, nsize);
  if (p == NULL) {
    if (nsize > old) return NULL;
    p = ptr; /* Lua assumes a shrink cannot fail: keep the bigger block */
  }
  sb->mem = sb->mem - old + nsize;
  return p;
}

/* }====================================================== */

/* {====================================================== output */

/* Appends beyond the cap (notes, the error); drops text when malloc fails. */
static void out_raw (sandbox *sb, const char *s, size_t len) {
  if (len > sb->out_size - sb->out_len) {
    size_t size = sb->out_size ? sb->out_size : 256;
    char *p;
    while (size - sb->out_len < len) size *= 2;
    p = realloc(sb->out, size);
    if (p == NULL) return;
    sb->out = p;
    sb->out_size = size;
  }
  memcpy(sb->out + sb->out_len, s, len);
  sb->out_len += len;
}

static void out_add (sandbox *sb, const char *s, size_t len) {
  static const char note[] = "\n[output truncated]\n";
  if (sb->out_cut) return;
  if (len > sb->out_max - sb->out_len) {
    len = sb->out_max - sb->out_len;
    sb->out_cut = 1;
  }
  out_raw(sb, s, len);
  if (sb->out_cut) out_raw(sb, note, sizeof note - 1);
}

static void out_reset (sandbox *sb) {
  sb->out_len = 0;
  sb->out_cut = 0;
  sb->err[0] = '\0';
  if (sb->out_size > 4 * sb->out_max + 65536) { /* don't keep a big buffer around */
    free(sb->out);
    sb->out = NULL;
    sb->out_size = 0;
  }
}

/* }====================================================== */

/* {====================================================== limits */

static void sandbox_hook (lua_State *L, lua_Debug *ar);

/* Puts the hook on co as the current mode wants it: every instruction once
 * stopped; else every slice on the run thread (its forced yields) and more
 * often in user coroutines, whose short lives would escape a long count. Left
 * alone when already right, so a count survives the coroutine's yields. */
static void sandbox_arm (sandbox *sb, lua_State *co) {
  int mask = LUA_MASKCOUNT, count;
  if (sb->stop) {
    mask |= LUA_MASKLINE;
    count = 1;
  } else if (co == sb->co || co == sb->S || sb->slice < SANDBOX_CO_COUNT) {
    count = sb->slice;
  } else {
    count = SANDBOX_CO_COUNT;
  }
  if (lua_gethook(co) != sandbox_hook || lua_gethookmask(co) != mask || lua_gethookcount(co) != count)
    lua_sethook(co, sandbox_hook, mask, count);
}

/* Notes a kill and arms the current thread and the run thread. */
static void sandbox_stop (lua_State *L, sandbox *sb, int why) {
  if (!sb->stop) sb->stop = why;
  sandbox_arm(sb, L);
  if (sb->co && sb->co != L) sandbox_arm(sb, sb->co);
}

static int sandbox_poll (sandbox *sb) {
  if (!sb->stop) {
    if (sb->instr_used >= sb->instr_budget) sb->stop = STOP_BUDGET;
    else if (sandbox_now() >= sb->deadline) sb->stop = STOP_DEADLINE;
  }
  return sb->stop;
}

/* Raises the kill's own value (interned: raising must not allocate). */
static int sandbox_raise_stop (lua_State *L, sandbox *sb) { /* may raise */
  if (sb->stop == STOP_EXIT) lua_pushlightuserdata(L, (void *)&exit_token);
  else lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_key[sb->stop]);
  return lua_error(L);
}

/* After a protected call or resume ended with status: kills stay kills. */
static void sandbox_recheck (lua_State *L, sandbox *sb, int status) { /* may raise */
  if (status == LUA_ERRMEM) sandbox_stop(L, sb, STOP_MEMORY);
  if (sb->stop) {
    sandbox_stop(L, sb, sb->stop);
    sandbox_raise_stop(L, sb);
  }
}

static void sandbox_hook (lua_State *L, lua_Debug *ar) { /* may raise */
  sandbox *sb = sandbox_of(L);
  if (!sb->stop && ar->event == LUA_HOOKCOUNT) sb->instr_used += lua_gethookcount(L);
  sandbox_poll(sb);
  sandbox_recheck(L, sb, LUA_OK);
  /* Only the run thread: in a user coroutine the yield would look like the
   * code's own coroutine.yield. */
  if (L == sb->co && lua_isyieldable(L)) {
    sb->forced = 1;
    lua_yield(L, 0);
  }
}

/* Charges n units of C work chosen by the code, before it runs. */
static void sandbox_charge (lua_State *L, lua_Unsigned n) { /* may raise */
  sandbox *sb = sandbox_of(L);
  lua_Unsigned room = (lua_Unsigned)(sb->instr_budget - sb->instr_used);
  if (sb->instr_used >= sb->instr_budget || n > room) sb->instr_used = sb->instr_budget;
  else sb->instr_used += (long long)n;
  sandbox_poll(sb);
  sandbox_recheck(L, sb, LUA_OK);
}

/* }====================================================== */

/* Whether a capability call from L may park (cap.h): every thread from L out
 * to sb:run can yield, and so can the node's coroutine. */
static int sandbox_can_park (lua_State *L) {
  return sandbox_of(L)->park_ok && lua_isyieldable(L);
}

/* {====================================================== base library */

static int l_print (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_of(L);
  int n = lua_gettop(L);
  for (int i = 1; i <= n && !sb->out_cut; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);
    if (i > 1) out_add(sb, "\t", 1);
    out_add(sb, s, len);
    lua_pop(L, 1);
  }
  out_add(sb, "\n", 1);
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
    if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "setmetatable: __gc is not allowed in the sandbox");
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
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lib_key);
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
      lua_rawgetp(L, LUA_REGISTRYINDEX, &lib_key);
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
  lua_rawgetp(L, LUA_REGISTRYINDEX, &grants_key);
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
        lua_pushfstring(L, "table with %d array items; dir(t) lists its string keys",
                        (int)lua_rawlen(L, 1));
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
  out_add(sb, s, len);
  out_add(sb, "\n", 1);
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
  "assert", "error",  "ipairs", "next",   "pairs",    "rawequal", "rawget",
  "rawlen", "rawset", "select", "tonumber", "tostring", "type",   NULL,
};

/* }====================================================== */

/* {====================================================== coroutines */

enum { CO_RESUME, CO_WRAP }; /* which function resumes: coroutine.resume or a wrap */

static int co_step (lua_State *L, lua_State *co, int narg, int kind);

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
  {"resume", l_co_resume},       {"wrap", l_co_wrap},       {"yield", l_co_yield},
  {"isyieldable", l_co_isyieldable}, {"running", l_co_running}, {"close", l_co_close},
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

/* {====================================================== state setup */

/* Opens the library into the registry and leaves the globals empty. */
static int sandbox_open_p (lua_State *S) { /* may raise */
  sandbox *sb = lua_touserdata(S, 1);
  int lib;
  for (int k = STOP_BUDGET; k <= STOP_MEMORY; k++) {
    lua_pushstring(S, stop_msg[k]);
    lua_rawsetp(S, LUA_REGISTRYINDEX, &stop_key[k]);
  }
  lua_newtable(S);
  lib = lua_gettop(S);

  luaL_requiref(S, LUA_GNAME, luaopen_base, 0);
  lua_pop(S, 1);
  for (int i = 0; sandbox_base_kept[i]; i++) {
    lua_getglobal(S, sandbox_base_kept[i]);
    lua_setfield(S, lib, sandbox_base_kept[i]);
  }
  lua_pushliteral(S, LUA_VERSION);
  lua_setfield(S, lib, "_VERSION");
  lua_pushvalue(S, lib);
  luaL_setfuncs(S, sandbox_base, 0);
  lua_pop(S, 1);

  /* string: this very table is the strings' __index; user code gets copies */
  luaL_requiref(S, LUA_STRLIBNAME, luaopen_string, 0);
  lua_pushnil(S);
  lua_setfield(S, -2, "dump");
  lua_getfield(S, -1, "rep");
  lua_pushcclosure(S, l_string_rep, 1);
  lua_setfield(S, -2, "rep");
  lua_setfield(S, lib, "string");

  luaL_requiref(S, LUA_TABLIBNAME, luaopen_table, 0);
  lua_getfield(S, -1, "move");
  lua_pushcclosure(S, l_table_move, 1);
  lua_setfield(S, -2, "move");
  lua_pushcfunction(S, l_table_insert);
  lua_setfield(S, -2, "insert");
  lua_pushcfunction(S, l_table_remove);
  lua_setfield(S, -2, "remove");
  lua_setfield(S, lib, "table");

  luaL_requiref(S, LUA_MATHLIBNAME, luaopen_math, 0);
  lua_setfield(S, lib, "math");
  luaL_requiref(S, LUA_UTF8LIBNAME, luaopen_utf8, 0);
  lua_setfield(S, lib, "utf8");

  luaL_requiref(S, LUA_COLIBNAME, luaopen_coroutine, 0);
  luaL_setfuncs(S, sandbox_co, 0);
  lua_setfield(S, lib, "coroutine");

  luaL_requiref(S, LUA_OSLIBNAME, luaopen_os, 0);
  lua_createtable(S, 0, 3);
  lua_getfield(S, -2, "time");
  lua_setfield(S, -2, "time");
  lua_getfield(S, -2, "date");
  lua_setfield(S, -2, "date");
  lua_getfield(S, -2, "clock");
  lua_setfield(S, -2, "clock");
  lua_setfield(S, lib, "os");
  lua_pop(S, 1);

  json_install(S);
  lua_getglobal(S, "json");
  lua_getfield(S, -1, "encode");
  lua_pushcclosure(S, l_json_encode, 1);
  lua_setfield(S, -2, "encode");
  lua_setfield(S, lib, "json");
  /* C code (decode, array) sets this metatable: a __gc added to it from Lua
   * would be a finalizer, and those run with hooks off. */
  json_push_array_mt(S);
  lua_pushliteral(S, "json.array");
  lua_setfield(S, -2, "__metatable");
  lua_pop(S, 1);

  lua_pushvalue(S, lib);
  lua_rawsetp(S, LUA_REGISTRYINDEX, &lib_key);

  /* Empty the globals: run() fills them. */
  lua_pushglobaltable(S);
  lua_newtable(S); /* the names, not to clear while traversing */
  lua_pushnil(S);
  for (int n = 1; lua_next(S, -3); n++) {
    lua_pop(S, 1);
    lua_pushvalue(S, -1);
    lua_rawseti(S, -3, n);
  }
  for (lua_Integer n = 1; lua_rawgeti(S, -1, n) != LUA_TNIL; n++) {
    lua_pushnil(S);
    lua_rawset(S, -4);
  }
  lua_pop(S, 3);

  lua_createtable(S, 0, sb->caps.n);
  for (int i = 0; i < sb->caps.n; i++) {
    cap_push_grant(S, &sb->caps, i);
    lua_setfield(S, -2, sb->caps.grants[i].name);
  }
  lua_rawsetp(S, LUA_REGISTRYINDEX, &grants_key);
  return 0;
}

/* Per run(), protected on S: fills the globals, loads the code onto a new
 * thread. Returns the thread, or nil and the syntax error. Reads of the node
 * never raise (sandbox_copy's contract; everything else was checked). */
static int sandbox_setup_p (lua_State *S) { /* may raise */
  sandbox *sb = lua_touserdata(S, 1);
  lua_State *N = sb->caps.node, *T;
  const char *code;
  size_t len;
  char err[256];
  int status;
  lua_settop(S, 0);
  lua_pushglobaltable(S); /* 1 */

  if (lua_istable(N, RUN_GLOBALS)) {
    lua_pushnil(N);
    while (lua_next(N, RUN_GLOBALS)) {
      size_t klen;
      const char *k = lua_tolstring(N, -2, &klen); /* a string: checked by run() */
      lua_pushlstring(S, k, klen);
      if (!sandbox_copy(N, -1, S, sb->mem_max, err, sizeof err)) {
        lua_pushfstring(S, "globals.%s: %s", k, err);
        lua_pop(N, 2);
        return lua_error(S);
      }
      lua_rawset(S, 1);
      lua_pop(N, 1);
    }
  }

  /* Then the grants, event and builtins, each winning over what came before. */
  lua_rawgetp(S, LUA_REGISTRYINDEX, &grants_key);
  lua_pushnil(S);
  while (lua_next(S, -2)) {
    lua_pushvalue(S, -2);
    lua_insert(S, -2);
    lua_rawset(S, 1);
  }
  lua_pop(S, 1);

  lua_pushliteral(S, "event");
  if (!sandbox_copy(N, RUN_EVENT, S, sb->mem_max, err, sizeof err)) {
    lua_pushfstring(S, "event: %s", err);
    return lua_error(S);
  }
  lua_rawset(S, 1);

  lua_rawgetp(S, LUA_REGISTRYINDEX, &lib_key);
  lua_pushnil(S);
  while (lua_next(S, -2)) {
    lua_pushvalue(S, -2);
    if (lua_istable(S, -2)) { /* a fresh copy: changes to it last one call */
      lua_newtable(S);
      lua_pushnil(S);
      while (lua_next(S, -4)) {
        lua_pushvalue(S, -2);
        lua_insert(S, -2);
        lua_rawset(S, -4);
      }
      lua_remove(S, -3);
    } else {
      lua_insert(S, -2);
    }
    lua_rawset(S, 1);
  }
  lua_pop(S, 1);
  lua_pushliteral(S, LUA_GNAME);
  lua_pushvalue(S, 1);
  lua_rawset(S, 1);

  code = lua_tolstring(N, RUN_CODE, &len);
  status = luaL_loadbufferx(S, code, len, lua_tostring(N, RUN_NAME), "t");
  if (status != LUA_OK) {
    if (status == LUA_ERRMEM) {
      sb->stop = STOP_MEMORY;
      return lua_error(S);
    }
    lua_pushnil(S);
    lua_insert(S, -2);
    return 2;
  }
  T = lua_newthread(S);
  lua_insert(S, -2);
  lua_xmove(S, T, 1);
  sb->co = T;
  sandbox_arm(sb, T);
  return 1;
}

/* }====================================================== */

/* {====================================================== running */

/* Protected on S, with the reserve lent: error text and traceback after a failed run. */
static int tostring_p (lua_State *S) { /* may raise */
  luaL_tolstring(S, 1, NULL);
  return 1;
}

static int sandbox_report_p (lua_State *S) { /* may raise */
  sandbox *sb = lua_touserdata(S, 1);
  int status = (int)lua_tointeger(S, 2);
  lua_State *T = sb->co;
  size_t len;
  const char *msg;
  if (sb->stop) {
    lua_pushstring(S, stop_msg[sb->stop]);
  } else if (status == LUA_YIELD) {
    lua_pushliteral(S, "attempt to yield from outside a coroutine");
  } else {
    lua_xmove(T, S, 1); /* the error value */
    if (lua_type(S, -1) != LUA_TSTRING && lua_type(S, -1) != LUA_TNUMBER) {
      int ok = 0;
      if (luaL_getmetafield(S, -1, "__tostring") != LUA_TNIL) {
        lua_pop(S, 1);
        lua_pushcfunction(S, tostring_p);
        lua_pushvalue(S, -2);
        ok = lua_pcall(S, 1, 1, 0) == LUA_OK && lua_type(S, -1) == LUA_TSTRING;
        if (!ok) lua_pop(S, 1);
      }
      if (!ok) lua_pushfstring(S, "(error object is a %s value)", luaL_typename(S, -1));
    }
  }
  msg = lua_tolstring(S, -1, &len);
  if (len > SANDBOX_ERR_MAX) {
    memcpy(sb->err, msg, SANDBOX_ERR_MAX);
    memcpy(sb->err + SANDBOX_ERR_MAX, "...", 4);
  } else {
    memcpy(sb->err, msg, len + 1);
  }
  luaL_traceback(S, T, sb->err, 0);
  msg = lua_tolstring(S, -1, &len);
  if (sb->out_len && sb->out[sb->out_len - 1] != '\n') out_raw(sb, "\n", 1);
  out_raw(sb, msg, len);
  out_raw(sb, "\n", 1);
  return 0;
}

static void sandbox_end (sandbox *sb) {
  if (sb->S) {
    lua_settop(sb->S, 0);
    if (sb->stop == STOP_MEMORY) lua_gc(sb->S, LUA_GCCOLLECT); /* room for the next call */
  }
  sb->co = NULL;
  sb->caps.node = NULL;
  sb->caps.parked = CAP_PARK_NONE;
  sb->running = 0;
  sb->park_ok = 0;
  sb->mem_limit = sb->mem_max;
}

/* Pushes output, err: the end of every run(). */
static int sandbox_result (lua_State *L, sandbox *sb, int failed) { /* may raise */
  lua_settop(L, RUN_TOP);
  lua_pushlstring(L, sb->out ? sb->out : "", sb->out_len);
  if (failed) lua_pushstring(L, sb->err);
  else lua_pushnil(L);
  return 2;
}

/* A run that cannot start or compile: the message is both output and error. */
static int sandbox_fail (lua_State *L, sandbox *sb, const char *msg) { /* may raise */
  if (msg != sb->err) snprintf(sb->err, sizeof sb->err, "%s", msg);
  out_raw(sb, sb->err, strlen(sb->err));
  sandbox_end(sb);
  return sandbox_result(L, sb, 1);
}

static int sandbox_finish (lua_State *L, sandbox *sb, int status) { /* may raise */
  lua_State *S = sb->S;
  int failed;
  if (status == LUA_ERRMEM && !sb->stop) sb->stop = STOP_MEMORY;
  failed = status != LUA_OK && sb->stop != STOP_EXIT;
  if (failed) {
    sb->mem_limit = sb->mem_max + SANDBOX_RESERVE;
    lua_pushcfunction(S, sandbox_report_p);
    lua_pushlightuserdata(S, sb);
    lua_pushinteger(S, status);
    if (lua_pcall(S, 2, 0, 0) != LUA_OK) {
      if (sb->err[0] == '\0')
        snprintf(sb->err, sizeof sb->err, "%s", sb->stop ? stop_msg[sb->stop] : "error");
      out_raw(sb, sb->err, strlen(sb->err));
    }
  }
  sandbox_end(sb);
  return sandbox_result(L, sb, failed);
}

static int sandbox_resume_k (lua_State *L, int status, lua_KContext ctx);

/* A parked capability call has been made after the node's coroutine yielded:
 * hand its outcome to the sandbox and go on. */
static int sandbox_called_k (lua_State *L, int status, lua_KContext ctx) { /* may raise */
  sandbox *sb = lua_touserdata(L, RUN_SB);
  cap_parked_end(&sb->caps, status);
  return sandbox_resume_k(L, LUA_OK, ctx);
}

/* Resumes the run thread until it ends. Its forced yields let sched run other
 * work when the node's coroutine can yield; its parked capability calls are
 * made here, where dispatch may yield that coroutine. */
static int sandbox_resume_k (lua_State *L, int status, lua_KContext ctx) { /* may raise */
  sandbox *sb = lua_touserdata(L, RUN_SB);
  (void)ctx;
  for (;;) {
    int nres;
    sb->forced = 0;
    sb->park_ok = sb->node_yields;
    status = lua_resume(sb->co, L, 0, &nres);
    sb->park_ok = 0;
    if (status == LUA_YIELD && sb->caps.parked == CAP_PARK_CALL) {
      lua_pop(sb->co, nres);
      status = lua_pcallk(L, cap_parked_nargs(&sb->caps), LUA_MULTRET, sb->caps.park_base + 1, 0,
                          sandbox_called_k);
      cap_parked_end(&sb->caps, status); /* no yield: loop, not recurse */
      continue;
    }
    if (status != LUA_YIELD || !sb->forced) return sandbox_finish(L, sb, status);
    lua_pop(sb->co, nres);
    if (sb->node_yields) return sched_yield_ready(L, 0, sandbox_resume_k);
  }
}

static sandbox *sandbox_check (lua_State *L) { /* may raise */
  sandbox *sb = luaL_checkudata(L, 1, SANDBOX_MT);
  if (sb->S == NULL) luaL_error(L, "sandbox is closed");
  return sb;
}

/* Pushes opts[key] (nil without opts). */
static int sandbox_opt (lua_State *L, const char *key) { /* may raise */
  if (lua_istable(L, RUN_OPTS)) return lua_getfield(L, RUN_OPTS, key);
  lua_pushnil(L);
  return LUA_TNIL;
}

static int l_sandbox_run (lua_State *L) { /* may raise */
  sandbox *sb = sandbox_check(L);
  lua_State *S = sb->S;
  int status, t;
  luaL_checkstring(L, RUN_CODE);
  if (!lua_isnoneornil(L, RUN_OPTS)) luaL_checktype(L, RUN_OPTS, LUA_TTABLE);
  if (sb->running) return luaL_error(L, "sandbox is already running");
  lua_settop(L, RUN_OPTS);
  luaL_checkstack(L, LUA_MINSTACK + RUN_TOP, "sandbox.run");
  lua_getiuservalue(L, RUN_SB, 1); /* RUN_DISPATCH */
  sandbox_opt(L, "event");         /* RUN_EVENT */
  t = sandbox_opt(L, "globals");   /* RUN_GLOBALS */
  if (t != LUA_TNIL) {
    luaL_argcheck(L, t == LUA_TTABLE, RUN_OPTS, "globals must be a table");
    lua_pushnil(L);
    while (lua_next(L, RUN_GLOBALS)) {
      lua_pop(L, 1);
      luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, RUN_OPTS, "globals must have string keys");
    }
  }
  t = sandbox_opt(L, "chunkname"); /* RUN_NAME */
  if (t == LUA_TNIL) {
    lua_pushliteral(L, "=run_code");
  } else {
    const char *name;
    luaL_argcheck(L, t == LUA_TSTRING, RUN_OPTS, "chunkname must be a string");
    name = lua_tostring(L, -1);
    if (name[0] != '=' && name[0] != '@') lua_pushfstring(L, "=%s", name);
    else lua_pushvalue(L, -1);
  }
  lua_replace(L, RUN_NAME);
  lua_settop(L, RUN_TOP);
  /* sandbox_copy looks this up in the node and must not have to create it */
  json_push_array_mt(L);
  lua_pop(L, 1);

  out_reset(sb);
  sb->stop = STOP_NONE;
  sb->forced = 0;
  if (sandbox_poll(sb)) return sandbox_fail(L, sb, stop_msg[sb->stop]);
  sb->running = 1;
  sb->caps.node = L;
  sb->caps.dispatch = RUN_DISPATCH;
  sb->caps.max_bytes = sb->mem_max;
  sb->node_yields = sched_can_yield(L);
  sandbox_arm(sb, S);
  lua_pushcfunction(S, sandbox_setup_p);
  lua_pushlightuserdata(S, sb);
  status = lua_pcall(S, 1, 2, 0);
  lua_settop(L, RUN_TOP);
  if (status != LUA_OK) {
    if (status == LUA_ERRMEM || sb->stop == STOP_MEMORY) {
      sb->stop = STOP_MEMORY;
      return sandbox_fail(L, sb, stop_msg[STOP_MEMORY]);
    }
    snprintf(sb->err, sizeof sb->err, "%s", lua_isstring(S, -1) ? lua_tostring(S, -1) : "setup failed");
    sandbox_end(sb);
    return luaL_error(L, "sandbox.run: %s", sb->err);
  }
  if (lua_isnil(S, 1)) {
    snprintf(sb->err, sizeof sb->err, "%s", lua_tostring(S, 2));
    return sandbox_fail(L, sb, sb->err);
  }
  lua_settop(S, 1); /* the run thread stays anchored here */
  return sandbox_resume_k(L, LUA_OK, 0);
}

/* }====================================================== */

/* {====================================================== the sandbox object */

static void sandbox_free (sandbox *sb) {
  if (sb->S) lua_close(sb->S);
  sb->S = NULL;
  sb->co = NULL;
  cap_set_free(&sb->caps);
  free(sb->out);
  sb->out = NULL;
  sb->out_len = sb->out_size = 0;
}

static int l_sandbox_gc (lua_State *L) {
  sandbox_free(luaL_checkudata(L, 1, SANDBOX_MT));
  return 0;
}

static int l_sandbox_close (lua_State *L) { /* may raise */
  sandbox *sb = luaL_checkudata(L, 1, SANDBOX_MT);
  if (sb->running) return luaL_error(L, "sandbox is running");
  sandbox_free(sb);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1); /* let dispatch go */
  return 0;
}

static int l_sandbox_stats (lua_State *L) { /* may raise */
  sandbox *sb = luaL_checkudata(L, 1, SANDBOX_MT);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)sb->mem);
  lua_setfield(L, -2, "memory");
  lua_pushinteger(L, (lua_Integer)sb->instr_used);
  lua_setfield(L, -2, "instructions");
  return 1;
}

static int l_sandbox_tostring (lua_State *L) {
  sandbox *sb = luaL_checkudata(L, 1, SANDBOX_MT);
  if (sb->S) lua_pushfstring(L, "sandbox (%p)", (void *)sb);
  else lua_pushliteral(L, "sandbox (closed)");
  return 1;
}

static lua_Integer sandbox_limit (lua_State *L, const char *key, lua_Integer def,
                                  lua_Integer min) { /* may raise */
  lua_Integer v = def;
  int isint;
  if (lua_getfield(L, 1, key) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < min)
      luaL_error(L, "sandbox.new: '%s' must be an integer >= %d", key, (int)min);
  }
  lua_pop(L, 1);
  return v;
}

static int l_sandbox_new (lua_State *L) { /* may raise */
  lua_Integer memory, instructions, deadline_ms, output, slice;
  sandbox *sb;
  uint64_t now = sandbox_now();
  int status;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  memory = sandbox_limit(L, "memory", 8 * 1024 * 1024, 1);
  instructions = sandbox_limit(L, "instructions", 10000000, 1);
  deadline_ms = sandbox_limit(L, "deadline_ms", 30000, 0);
  output = sandbox_limit(L, "output", 64 * 1024, 0);
  slice = sandbox_limit(L, "slice", 10000, 1);
  if ((lua_Unsigned)memory > SIZE_MAX / 2) memory = (lua_Integer)(SIZE_MAX / 2);
  if ((lua_Unsigned)output > SIZE_MAX / 4) output = (lua_Integer)(SIZE_MAX / 4);
  if (slice > INT_MAX) slice = INT_MAX;
  lua_getfield(L, 1, "dispatch"); /* 2 */
  if (!lua_isnil(L, 2)) luaL_argcheck(L, lua_isfunction(L, 2), 1, "dispatch must be a function");
  lua_getfield(L, 1, "grants"); /* 3 */

  sb = lua_newuserdatauv(L, sizeof *sb, 1); /* 4 */
  memset(sb, 0, sizeof *sb);
  luaL_setmetatable(L, SANDBOX_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 4, 1);
  sb->mem_max = sb->mem_limit = (size_t)memory;
  sb->instr_budget = instructions;
  sb->slice = (int)slice;
  sb->out_max = (size_t)output;
  if ((uint64_t)deadline_ms > (UINT64_MAX - now) / 1000000u) sb->deadline = UINT64_MAX;
  else sb->deadline = now + (uint64_t)deadline_ms * 1000000u;
  cap_set_parse(L, 3, &sb->caps); /* a raise leaves the rest to __gc */
  sb->caps.can_park = sandbox_can_park;
  if (sb->caps.n > 0 && lua_isnil(L, 2)) luaL_error(L, "sandbox.new: grants need a dispatch function");

  sb->S = lua_newstate(sandbox_alloc, sb);
  if (sb->S == NULL) luaL_error(L, "sandbox.new: memory limit too small for a Lua state");
  *(sandbox **)lua_getextraspace(sb->S) = sb;
  lua_pushcfunction(sb->S, sandbox_open_p);
  lua_pushlightuserdata(sb->S, sb);
  status = lua_pcall(sb->S, 1, 0, 0);
  if (status != LUA_OK) {
    snprintf(sb->err, sizeof sb->err, "%s",
             status == LUA_ERRMEM ? "memory limit too small for the library" : lua_tostring(sb->S, -1));
    sandbox_free(sb);
    luaL_error(L, "sandbox.new: %s", sb->err);
  }
  return 1;
}

int sandbox_luaopen (lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", l_sandbox_gc},
    {"__close", l_sandbox_close},
    {"__tostring", l_sandbox_tostring},
    {NULL, NULL},
  };
  static const luaL_Reg methods[] = {
    {"run", l_sandbox_run},
    {"close", l_sandbox_close},
    {"stats", l_sandbox_stats},
    {NULL, NULL},
  };
  if (luaL_newmetatable(L, SANDBOX_MT)) {
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_sandbox_new);
  lua_setfield(L, -2, "new");
  return 1;
}

/* }====================================================== */

/* {====================================================== sandbox_copy */

typedef struct copier {
  lua_State *from, *to;
  size_t left, max;
  int depth;
  int arraymt;                      /* index of from's array metatable, 0 when not needed */
  const void *path[JSON_MAX_DEPTH]; /* tables being copied, outermost first */
  int keys[JSON_MAX_DEPTH];         /* index on from of the key being copied at each level */
  char *err;
  size_t errlen;
} copier;

/* Writes the message (already in c->err) followed by where: " at $.a[2]". */
static int copy_fail (copier *c) {
  size_t n = strlen(c->err);
  if (c->depth > 0 && n + 5 < c->errlen) {
    n += (size_t)snprintf(c->err + n, c->errlen - n, " at $");
    for (int d = 0; d < c->depth && n < c->errlen; d++) {
      int k = c->keys[d], w;
      if (lua_type(c->from, k) == LUA_TSTRING) w = snprintf(c->err + n, c->errlen - n, ".%.40s", lua_tostring(c->from, k));
      else if (lua_isinteger(c->from, k)) w = snprintf(c->err + n, c->errlen - n, "[%lld]", (long long)lua_tointeger(c->from, k));
      else w = snprintf(c->err + n, c->errlen - n, "[?]");
      if (w < 0) break;
      n += (size_t)w;
    }
  }
  return 0;
}

static int copy_charge (copier *c, size_t n) {
  if (n > c->left) {
    snprintf(c->err, c->errlen, "more than %zu bytes", c->max);
    return copy_fail(c);
  }
  c->left -= n;
  return 1;
}

static int copy_value (copier *c, int idx);

static int copy_table (copier *c, int idx) { /* may raise (in c->to) */
  lua_State *F = c->from, *T = c->to;
  const void *p = lua_topointer(F, idx);
  int isarray = 0;
  if (c->depth >= JSON_MAX_DEPTH) {
    snprintf(c->err, c->errlen, "tables nested deeper than %d", JSON_MAX_DEPTH);
    return copy_fail(c);
  }
  for (int d = 0; d < c->depth; d++)
    if (c->path[d] == p) {
      snprintf(c->err, c->errlen, "cannot copy a table that contains itself");
      return copy_fail(c);
    }
  if (!copy_charge(c, 16)) return 0;
  if (!lua_checkstack(F, 4) || !lua_checkstack(T, 4)) {
    snprintf(c->err, c->errlen, "stack overflow");
    return copy_fail(c);
  }
  if (c->arraymt && lua_getmetatable(F, idx)) {
    isarray = lua_rawequal(F, -1, c->arraymt);
    lua_pop(F, 1);
  }
  lua_createtable(T, 0, 0);
  c->path[c->depth++] = p;
  lua_pushnil(F);
  while (lua_next(F, idx)) {
    int k = lua_gettop(F) - 1, kt = lua_type(F, k);
    c->keys[c->depth - 1] = k;
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
      snprintf(c->err, c->errlen, "cannot copy a %s key", lua_typename(F, kt));
      return copy_fail(c);
    }
    if (!copy_value(c, k) || !copy_value(c, k + 1)) return 0;
    lua_rawset(T, -3);
    lua_pop(F, 1);
  }
  c->depth--;
  if (isarray) {
    json_push_array_mt(T);
    lua_setmetatable(T, -2);
  }
  return 1;
}

static int copy_value (copier *c, int idx) { /* may raise (in c->to) */
  lua_State *F = c->from, *T = c->to;
  int t = lua_type(F, idx);
  switch (t) {
    case LUA_TNIL:
      if (!copy_charge(c, 1)) return 0;
      lua_pushnil(T);
      return 1;
    case LUA_TBOOLEAN:
      if (!copy_charge(c, 1)) return 0;
      lua_pushboolean(T, lua_toboolean(F, idx));
      return 1;
    case LUA_TNUMBER:
      if (!copy_charge(c, 8)) return 0;
      if (lua_isinteger(F, idx)) lua_pushinteger(T, lua_tointeger(F, idx));
      else lua_pushnumber(T, lua_tonumber(F, idx));
      return 1;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(F, idx, &len);
      if (!copy_charge(c, len + 1)) return 0;
      lua_pushlstring(T, s, len);
      return 1;
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(F, idx) == json_null) {
        if (!copy_charge(c, 1)) return 0;
        lua_pushlightuserdata(T, json_null);
        return 1;
      }
      break;
    case LUA_TTABLE:
      return copy_table(c, idx);
    default:
      break;
  }
  snprintf(c->err, c->errlen, "cannot copy a %s", t == LUA_TLIGHTUSERDATA ? "light userdata" : lua_typename(F, t));
  return copy_fail(c);
}

int sandbox_copy (lua_State *from, int idx, lua_State *to, size_t max_bytes, char *err,
                  size_t errlen) { /* may raise (in to, out of memory) */
  copier c;
  int ftop = lua_gettop(from), ttop = lua_gettop(to);
  char dummy[1];
  c.from = from;
  c.to = to;
  c.left = c.max = max_bytes;
  c.depth = 0;
  c.arraymt = 0;
  c.err = errlen ? err : dummy;
  c.errlen = errlen ? errlen : sizeof dummy;
  c.err[0] = '\0';
  if (!lua_checkstack(from, 4) || !lua_checkstack(to, 4)) {
    snprintf(c.err, c.errlen, "stack overflow");
    return 0;
  }
  idx = lua_absindex(from, idx);
  if (lua_type(from, idx) == LUA_TTABLE) { /* exists already in the states we copy between */
    json_push_array_mt(from);
    c.arraymt = lua_gettop(from);
  }
  if (copy_value(&c, idx)) {
    lua_settop(from, ftop);
    return 1;
  }
  lua_settop(from, ftop);
  lua_settop(to, ttop);
  return 0;
}

/* }====================================================== */
