/* sandbox.c — untrusted Lua: the core.sandbox object (new/run/close/stats) and its run loop.
 *
 * sb:run() sets up S's globals, then resumes the run thread T until it ends.
 * T's forced yields (sandbox_limits.c) let sched run other work when the
 * node's coroutine can yield. Capability calls park (cap.h) when every
 * thread from the caller out to sb:run can yield: our coroutine.resume/wrap
 * (sandbox_lib.c) pass the yield up, sb:run makes the call on the node's
 * coroutine with lua_pcallk (dispatch may yield to sched there) and resumes
 * the chain, which carries the results back down.
 */
#include "sandbox_int.h"
#include "json.h"
#include "lcore.h"
#include "sched.h"

#include <lauxlib.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SANDBOX_MT      "cogos.sandbox"
#define SANDBOX_RESERVE (64 * 1024) /* memory lent to S to report an error after a kill */

/* Slots of sb:run() on the node's stack; cap.c finds dispatch at RUN_DISPATCH. */
enum { RUN_SB = 1, RUN_CODE, RUN_OPTS, RUN_DISPATCH, RUN_EVENT, RUN_GLOBALS, RUN_NAME, RUN_TOP = RUN_NAME };

/* Whether a capability call from L may park (cap.h): every thread from L out
 * to sb:run can yield, and so can the node's coroutine. */
static int sandbox_can_park (lua_State *L) { return sandbox_of(L)->park_ok && lua_isyieldable(L); }

/* {====================================================== setup */

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
  lua_rawgetp(S, LUA_REGISTRYINDEX, &sandbox_grants_key);
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

  lua_rawgetp(S, LUA_REGISTRYINDEX, &sandbox_libsize_key); /* 2 */
  lua_rawgetp(S, LUA_REGISTRYINDEX, &sandbox_lib_key);     /* 3 */
  lua_pushnil(S);
  while (lua_next(S, 3)) {
    lua_pushvalue(S, -2);
    if (lua_istable(S, -2)) { /* a fresh copy, made at its size: changes to it last one call */
      lua_pushvalue(S, -1);
      lua_rawget(S, 2);
      lua_createtable(S, 0, (int)lua_tointeger(S, -1));
      lua_remove(S, -2);
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
  lua_pop(S, 2);
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
  /* new() left the collector stopped: a run that allocates nothing (most
   * one-liners) never pays for a cycle over the fresh library */
  if (!lua_gc(S, LUA_GCISRUNNING)) lua_gc(S, LUA_GCRESTART);
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
    lua_pushstring(S, sandbox_stop_msg[sb->stop]);
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
  if (sb->out_len && sb->out[sb->out_len - 1] != '\n') sandbox_out_raw(sb, "\n", 1);
  sandbox_out_raw(sb, msg, len);
  sandbox_out_raw(sb, "\n", 1);
  return 0;
}

static void sandbox_end (sandbox *sb) {
  if (sb->S) {
    lua_settop(sb->S, 0);
    if (!lua_gc(sb->S, LUA_GCISRUNNING)) lua_gc(sb->S, LUA_GCRESTART); /* setup failed early */
    if (sb->stop == STOP_MEMORY) lua_gc(sb->S, LUA_GCCOLLECT);         /* room for the next call */
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
  if (failed)
    lua_pushstring(L, sb->err);
  else
    lua_pushnil(L);
  return 2;
}

/* A run that cannot start or compile: the message is both output and error. */
static int sandbox_fail (lua_State *L, sandbox *sb, const char *msg) { /* may raise */
  if (msg != sb->err) snprintf(sb->err, sizeof sb->err, "%s", msg);
  sandbox_out_raw(sb, sb->err, strlen(sb->err));
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
        snprintf(sb->err, sizeof sb->err, "%s", sb->stop ? sandbox_stop_msg[sb->stop] : "error");
      sandbox_out_raw(sb, sb->err, strlen(sb->err));
    }
  }
  sandbox_end(sb);
  return sandbox_result(L, sb, failed);
}

static int sandbox_resume_k(lua_State *L, int status, lua_KContext ctx);

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
    if (name[0] != '=' && name[0] != '@')
      lua_pushfstring(L, "=%s", name);
    else
      lua_pushvalue(L, -1);
  }
  lua_replace(L, RUN_NAME);
  lua_settop(L, RUN_TOP);
  /* sandbox_copy looks this up in the node and must not have to create it */
  json_push_array_mt(L);
  lua_pop(L, 1);

  sandbox_out_reset(sb);
  sb->stop = STOP_NONE;
  sb->forced = 0;
  if (sandbox_poll(sb)) return sandbox_fail(L, sb, sandbox_stop_msg[sb->stop]);
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
      return sandbox_fail(L, sb, sandbox_stop_msg[STOP_MEMORY]);
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
  sandbox_pool_free(sb);
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
  if (sb->S)
    lua_pushfstring(L, "sandbox (%p)", (void *)sb);
  else
    lua_pushliteral(L, "sandbox (closed)");
  return 1;
}

static lua_Integer sandbox_limit (lua_State *L, const char *key, lua_Integer def,
                                  lua_Integer min) { /* may raise */
  lua_Integer v = def;
  int isint;
  if (lua_getfield(L, 1, key) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < min) luaL_error(L, "sandbox.new: '%s' must be an integer >= %d", key, (int)min);
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
  if ((uint64_t)deadline_ms > (UINT64_MAX - now) / 1000000u)
    sb->deadline = UINT64_MAX;
  else
    sb->deadline = now + (uint64_t)deadline_ms * 1000000u;
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

/* core.sandbox.predicate(src, payload_json) -> boolean | nil, err (sandbox_predicate). */
static int l_sandbox_predicate (lua_State *L) { /* may raise */
  size_t len;
  const char *src = luaL_checkstring(L, 1);
  const char *json = luaL_checklstring(L, 2, &len);
  char err[512];
  int r = sandbox_predicate(src, json, len, err, sizeof err);
  if (r < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, r);
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
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_sandbox_new);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, l_sandbox_predicate);
  lua_setfield(L, -2, "predicate");
  cap_luaopen(L); /* narrow, covers, allows, GRANT (cap.h) */
  return 1;
}

/* }====================================================== */
