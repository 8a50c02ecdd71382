/* sandbox_pred.c — sandbox_predicate (sandbox.h): handler payload predicates, cheap and capped.
 *
 * Predicates run on every send for every predicate handler, so one sandbox
 * state per thread serves them all (the node is single-threaded), with a small
 * cache of compiled predicates keyed by source. Nothing leaks between calls:
 * each call runs its cached function with a fresh environment table holding
 * `payload`; the library behind it (no print, help, dir, exit or load — load
 * would compile against S's shared globals) is read through a C __index that
 * hands each call its own shallow copy of a library table on first use. The
 * budget, deadline and memory cap are reset per call; kills work as in
 * sb:run (sandbox_limits.c).
 */
#include "sandbox_int.h"
#include "json.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRED_INSTRUCTIONS 100000
#define PRED_MEMORY       (1024 * 1024) /* bytes a call may add beyond the decoded payload */
#define PRED_DEADLINE_NS  100000000u    /* 100 ms: a backstop behind the budget */
#define PRED_SLICE        1000          /* hook period: the budget is exact to this */
#define PRED_CACHE        32            /* compiled predicates kept */

typedef struct pred_entry {
  char *src; /* NULL when free */
  size_t len;
  unsigned long long used; /* last use, for eviction */
} pred_entry;

typedef struct pred_state {
  sandbox sb;
  size_t base_mem; /* S's memory once the library is open */
  unsigned long long clock;
  pred_entry cache[PRED_CACHE]; /* function i is at [i + 1] in the cache table */
} pred_state;

static _Thread_local pred_state *pred;

static const char pred_cache_key = 0; /* registry of S: the compiled functions */
static const char pred_mt_key = 0;    /* registry of S: the environments' metatable */

/* Not in a predicate's library. */
static const char *const pred_excluded[] = {"print", "help", "dir", "exit", "load", NULL};

/* env[k] when env lacks k: a library function, or this call's copy of a library table. */
static int l_pred_index (lua_State *L) { /* may raise */
  lua_settop(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), LUA_GNAME) == 0) {
    lua_pushvalue(L, 1);
    return 1;
  }
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TTABLE) {
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 4);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 4);
    lua_rawset(L, 1);
  }
  return 1;
}

/* Protected on a new S: the library, the predicates' library, the cache table. */
static int pred_open_p (lua_State *S) { /* may raise */
  lua_pushcfunction(S, sandbox_open_p);
  lua_pushvalue(S, 1);
  lua_call(S, 1, 0);
  lua_newtable(S);
  lua_rawsetp(S, LUA_REGISTRYINDEX, &pred_cache_key);
  lua_createtable(S, 0, 2); /* the metatable */
  lua_newtable(S);          /* the library behind it */
  lua_rawgetp(S, LUA_REGISTRYINDEX, &sandbox_lib_key);
  lua_pushnil(S);
  while (lua_next(S, -2)) {
    lua_pushvalue(S, -2);
    lua_insert(S, -2);
    lua_rawset(S, -5);
  }
  lua_pop(S, 1);
  for (int i = 0; pred_excluded[i]; i++) {
    lua_pushnil(S);
    lua_setfield(S, -2, pred_excluded[i]);
  }
  lua_pushcclosure(S, l_pred_index, 1);
  lua_setfield(S, -2, "__index");
  lua_pushliteral(S, "locked"); /* getmetatable(_ENV) must not hand out the shared one */
  lua_setfield(S, -2, "__metatable");
  lua_rawsetp(S, LUA_REGISTRYINDEX, &pred_mt_key);
  return 0;
}

static void pred_free (pred_state *p) {
  if (p->sb.S) lua_close(p->sb.S);
  sandbox_pool_free(&p->sb);
  for (int i = 0; i < PRED_CACHE; i++) free(p->cache[i].src);
  free(p->sb.out);
  free(p);
}

static pred_state *pred_get (char *err, size_t errlen) {
  pred_state *p;
  if (pred) return pred;
  p = calloc(1, sizeof *p);
  if (p == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  p->sb.mem_max = p->sb.mem_limit = 4 * PRED_MEMORY; /* the library alone needs far less */
  p->sb.slice = PRED_SLICE;
  p->sb.S = lua_newstate(sandbox_alloc, &p->sb);
  if (p->sb.S == NULL) {
    snprintf(err, errlen, "out of memory");
    pred_free(p);
    return NULL;
  }
  *(sandbox **)lua_getextraspace(p->sb.S) = &p->sb;
  lua_pushcfunction(p->sb.S, pred_open_p);
  lua_pushlightuserdata(p->sb.S, &p->sb);
  if (lua_pcall(p->sb.S, 1, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "cannot open the predicate sandbox");
    pred_free(p);
    return NULL;
  }
  lua_gc(p->sb.S, LUA_GCRESTART); /* sandbox_open_p leaves it stopped */
  lua_gc(p->sb.S, LUA_GCCOLLECT);
  p->base_mem = p->sb.mem;
  pred = p;
  return p;
}

void sandbox_predicate_close (void) {
  if (pred) pred_free(pred);
  pred = NULL;
}

/* Protected on S (1: source as light userdata, 2: its length): pushes the
 * compiled predicate, from the cache or compiled and cached; or nil and the
 * syntax error. */
static int pred_compile_p (lua_State *S) { /* may raise */
  pred_state *p = pred;
  const char *src = lua_touserdata(S, 1);
  size_t len = (size_t)lua_tointeger(S, 2);
  int slot = 0, status;
  lua_rawgetp(S, LUA_REGISTRYINDEX, &pred_cache_key); /* 3 */
  for (int i = 0; i < PRED_CACHE; i++) {
    pred_entry *e = &p->cache[i];
    if (e->src && e->len == len && memcmp(e->src, src, len) == 0) {
      e->used = ++p->clock;
      lua_rawgeti(S, 3, i + 1);
      return 1;
    }
    if (p->cache[slot].src && (!e->src || e->used < p->cache[slot].used)) slot = i;
  }
  /* An expression first ("payload.x > 3"), then a chunk with its own return. */
  lua_pushliteral(S, "return ");
  lua_pushlstring(S, src, len);
  lua_concat(S, 2);
  status = luaL_loadbufferx(S, lua_tostring(S, -1), lua_rawlen(S, -1), "=predicate", "t");
  if (status != LUA_OK) {
    if (status == LUA_ERRMEM) return lua_error(S);
    lua_pop(S, 2);
    status = luaL_loadbufferx(S, src, len, "=predicate", "t");
    if (status == LUA_ERRMEM) return lua_error(S);
    if (status != LUA_OK) {
      lua_pushnil(S);
      lua_insert(S, -2);
      return 2;
    }
  }
  {
    pred_entry *e = &p->cache[slot];
    char *copy = malloc(len + 1);
    if (copy) { /* no room: run it uncached */
      memcpy(copy, src, len);
      copy[len] = '\0';
      free(e->src);
      e->src = copy;
      e->len = len;
      e->used = ++p->clock;
      lua_pushvalue(S, -1);
      lua_rawseti(S, 3, slot + 1);
    }
  }
  return 1;
}

/* Protected on S (1: the function, 2: payload text as light userdata, 3: its
 * length): gives the function a fresh environment with `payload` and calls it. */
static int pred_call_p (lua_State *S) { /* may raise */
  pred_state *p = pred;
  const char *json = lua_touserdata(S, 2);
  size_t len = (size_t)lua_tointeger(S, 3);
  lua_createtable(S, 0, 4); /* 4: the environment */
  /* The payload was accepted by the node already: decode it uncapped, then
   * give the predicate its own allowance on top. */
  p->sb.mem_limit = SIZE_MAX / 2;
  if (!json_decode(S, json, len)) {
    p->sb.mem_limit = p->sb.mem_max;
    lua_pushfstring(S, "payload: %s", lua_tostring(S, -1));
    return lua_error(S);
  }
  p->sb.mem_limit = p->sb.mem + PRED_MEMORY;
  lua_setfield(S, 4, "payload");
  lua_rawgetp(S, LUA_REGISTRYINDEX, &pred_mt_key);
  lua_setmetatable(S, 4);
  lua_pushvalue(S, 1);
  lua_pushvalue(S, 4);
  lua_setupvalue(S, -2, 1); /* _ENV */
  lua_call(S, 0, 1);
  lua_pushboolean(S, lua_toboolean(S, -1));
  return 1;
}

int sandbox_predicate (const char *src, const char *payload_json, size_t len, char *err, size_t errlen) {
  pred_state *p;
  lua_State *S;
  sandbox *sb;
  int status, result = -1;
  char dummy[1];
  if (errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (src == NULL || payload_json == NULL) {
    snprintf(err, errlen, "predicate: %s is missing", src == NULL ? "the source" : "the payload");
    return -1;
  }
  p = pred_get(err, errlen);
  if (p == NULL) return -1;
  sb = &p->sb;
  S = sb->S;
  sb->stop = STOP_NONE;
  sb->instr_used = 0;
  sb->instr_budget = PRED_INSTRUCTIONS;
  sb->deadline = sandbox_now() + PRED_DEADLINE_NS;
  sb->mem_max = sb->mem_limit = p->base_mem + PRED_MEMORY;
  lua_settop(S, 0);
  sandbox_arm(sb, S);

  lua_pushcfunction(S, pred_compile_p);
  lua_pushlightuserdata(S, (void *)src);
  lua_pushinteger(S, (lua_Integer)strlen(src));
  status = lua_pcall(S, 2, 2, 0);
  if (status == LUA_OK && lua_isnil(S, 1)) {
    snprintf(err, errlen, "predicate: %s", lua_tostring(S, 2));
  } else if (status == LUA_OK) {
    lua_settop(S, 1);
    lua_pushcfunction(S, pred_call_p);
    lua_pushvalue(S, 1);
    lua_pushlightuserdata(S, (void *)payload_json);
    lua_pushinteger(S, (lua_Integer)len);
    status = lua_pcall(S, 3, 1, 0);
    if (status == LUA_OK) result = lua_toboolean(S, -1);
    lua_pushnil(S); /* the cached function must not keep this call's environment alive */
    lua_setupvalue(S, 1, 1);
  }
  if (status != LUA_OK) {
    if (status == LUA_ERRMEM && !sb->stop) sb->stop = STOP_MEMORY;
    if (sb->stop == STOP_NONE) {
      if (lua_type(S, -1) == LUA_TSTRING)
        snprintf(err, errlen, "predicate: %s", lua_tostring(S, -1));
      else
        snprintf(err, errlen, "predicate: (error object is a %s value)", luaL_typename(S, -1));
    } else {
      snprintf(err, errlen, "predicate: %s", sandbox_stop_msg[sb->stop]);
    }
  }
  lua_settop(S, 0);
  if (sb->stop == STOP_MEMORY || sb->mem > sb->mem_max) lua_gc(S, LUA_GCCOLLECT); /* a big payload */
  sb->stop = STOP_NONE;
  sb->mem_limit = sb->mem_max;
  sandbox_arm(sb, S); /* back to a count hook after a kill */
  return result;
}
