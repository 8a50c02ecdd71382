/* sandbox_copy.c — sandbox_copy (sandbox.h): plain data between two Lua states, capped.
 *
 * Used wherever values cross between the node and a sandbox (sb:run's event
 * and globals, capability arguments and results in cap.c): the two states
 * share nothing, so only data that can be rebuilt on the other side passes.
 */
#include "sandbox.h"
#include "json.h"

#include <lua.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

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
      if (lua_type(c->from, k) == LUA_TSTRING)
        w = snprintf(c->err + n, c->errlen - n, ".%.40s", lua_tostring(c->from, k));
      else if (lua_isinteger(c->from, k))
        w = snprintf(c->err + n, c->errlen - n, "[%lld]", (long long)lua_tointeger(c->from, k));
      else
        w = snprintf(c->err + n, c->errlen - n, "[?]");
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

static int copy_value(copier *c, int idx);

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
  {
    /* made at its final size: growing it would rehash it at every power of two.
     * rawlen is a border, possibly far beyond the entries: only a hint within n. */
    lua_Unsigned n = 0, narr = lua_rawlen(F, idx);
    lua_pushnil(F);
    while (lua_next(F, idx)) {
      lua_pop(F, 1);
      n++;
    }
    if (narr > n) narr = n;
    if (n > INT_MAX) n = narr = INT_MAX;
    lua_createtable(T, (int)narr, (int)(n - narr));
  }
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
    if (lua_isinteger(F, idx))
      lua_pushinteger(T, lua_tointeger(F, idx));
    else
      lua_pushnumber(T, lua_tonumber(F, idx));
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
  snprintf(c->err, c->errlen, "cannot copy a %s",
           t == LUA_TLIGHTUSERDATA ? "light userdata" : lua_typename(F, t));
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
