/* store_valid.c — the channel schema language (cogos-spec §3.2): checking a
 * definition, and validating a payload against it, strictly (every field
 * required, extras rejected), with error paths like a.b[2]. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32 /* registered schemas may refer to each other */

static const char *const primitives[] = {"string", "number", "bool", "list", "dict", NULL};

static int is_primitive (const char *t) {
  for (int i = 0; primitives[i]; i++)
    if (strcmp(t, primitives[i]) == 0) return 1;
  return 0;
}

/* Pushes the field dict of the registered schema `name`; 1, 0 (unknown) or -1. */
static int push_registered (store_t *s, lua_State *L, const char *name, size_t n) {
  store_q *q = store_q_get(s, "SELECT definition FROM schema WHERE name = ?");
  if (q == NULL) return -1;
  store_bind_ltext(s, q, 1, name, n);
  int rc = store_step(s, q);
  int r = rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
  if (rc == STORE_ROW) {
    size_t len;
    const char *v = store_col_text(s, q, 0, &len);
    if (!json_decode(L, v ? v : "{}", v ? len : 2) || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
    lua_getfield(L, -1, "fields");
    lua_remove(L, -2);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  return r;
}

/* {============ definitions */

/* A type name: a primitive, list[T] or a registered schema (self allowed). */
static int check_type_name (store_t *s, lua_State *L, const char *t, const char *self) {
  size_t n = strlen(t);
  if (n > 6 && memcmp(t, "list[", 5) == 0 && t[n - 1] == ']') {
    t += 5;
    n -= 6;
  }
  char name[256];
  if (n >= sizeof name) return store_failf(s, "unknown type '%s'", t);
  memcpy(name, t, n);
  name[n] = '\0';
  if (is_primitive(name) || (self && strcmp(name, self) == 0)) return 0;
  int r = push_registered(s, L, name, n);
  if (r < 0) return -1;
  if (r == 0) return store_failf(s, "unknown type '%s'", name);
  lua_pop(L, 1);
  return 0;
}

static int check_fields (store_t *s, lua_State *L, int fields, const char *self, int depth) {
  if (depth > MAX_DEPTH) return store_failf(s, "schema nested too deeply");
  lua_pushnil(L);
  while (lua_next(L, fields)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return store_failf(s, "schema field names must be strings");
    }
    int r;
    if (lua_type(L, -1) == LUA_TSTRING)
      r = check_type_name(s, L, lua_tostring(L, -1), self);
    else if (lua_istable(L, -1))
      r = check_fields(s, L, lua_gettop(L), self, depth + 1);
    else
      r = store_failf(s, "schema field '%s': a type name or a field table expected", lua_tostring(L, -2));
    lua_pop(L, 1);
    if (r < 0) {
      lua_pop(L, 1);
      return -1;
    }
  }
  return 0;
}

int store_schema_normalize (store_t *s, lua_State *L, int idx, const char *self) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return store_failf(s, "a schema is a table of fields");
  /* {fields = {...}} as the only key is already wrapped; anything else is a field dict. */
  int wrapped = 0;
  if (lua_getfield(L, idx, "fields") == LUA_TTABLE) {
    lua_pushnil(L);
    int keys = 0;
    while (lua_next(L, idx)) {
      keys++;
      lua_pop(L, 1);
    }
    wrapped = keys == 1;
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  if (wrapped)
    lua_getfield(L, idx, "fields");
  else
    lua_pushvalue(L, idx);
  lua_setfield(L, -2, "fields");
  lua_getfield(L, -1, "fields");
  int r = check_fields(s, L, lua_gettop(L), self, 0);
  lua_pop(L, 1);
  if (r < 0) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* }============ */

/* {============ validation */

typedef struct vpath {
  char buf[512];
  size_t len;
} vpath;

static const char *got_name (lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    return "string";
  case LUA_TNUMBER:
    return "number";
  case LUA_TBOOLEAN:
    return "bool";
  case LUA_TLIGHTUSERDATA:
    return lua_touserdata(L, idx) == json_null ? "null" : "userdata";
  case LUA_TTABLE: {
    if (!lua_getmetatable(L, idx)) return "dict";
    json_push_array_mt(L);
    int arr = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return arr ? "list" : "dict";
  }
  default:
    return luaL_typename(L, idx);
  }
}

static int vfail (store_t *s, const vpath *p, const char *fmt, const char *a, const char *b) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, a, b);
  return store_failf(s, "%s%s%s", p->len ? p->buf : "", p->len ? ": " : "", msg);
}

static int check_obj(store_t *s, lua_State *L, int fields, int val, vpath *p, int depth);

static int check_value (store_t *s, lua_State *L, int spec, int val, vpath *p, int depth) {
  if (depth > MAX_DEPTH) return vfail(s, p, "nested too deeply%s%s", "", "");
  if (lua_istable(L, spec)) return check_obj(s, L, spec, val, p, depth + 1);
  const char *t = lua_tostring(L, spec), *got = got_name(L, val);
  if (t == NULL) return vfail(s, p, "bad type in schema%s%s", "", "");
  if (is_primitive(t)) {
    if (strcmp(t, got) != 0) return vfail(s, p, "expected %s, got %s", t, got);
    return 0;
  }
  size_t n = strlen(t);
  if (n > 6 && memcmp(t, "list[", 5) == 0 && t[n - 1] == ']') {
    if (strcmp(got, "list") != 0) return vfail(s, p, "expected %s, got %s", t, got);
    lua_pushlstring(L, t + 5, n - 6);
    int elem = lua_gettop(L);
    size_t mark = p->len;
    lua_Integer len = (lua_Integer)lua_rawlen(L, val);
    for (lua_Integer i = 1; i <= len; i++) {
      snprintf(p->buf + mark, sizeof p->buf - mark, "[%lld]", (long long)(i - 1));
      p->len = strlen(p->buf);
      lua_rawgeti(L, val, i);
      int r = check_value(s, L, elem, lua_gettop(L), p, depth + 1);
      lua_pop(L, 1);
      if (r < 0) {
        lua_pop(L, 1);
        return -1;
      }
    }
    p->len = mark;
    p->buf[mark] = '\0';
    lua_pop(L, 1);
    return 0;
  }
  int r = push_registered(s, L, t, n);
  if (r < 0) return -1;
  if (r == 0) return vfail(s, p, "unknown type '%s'%s", t, "");
  r = check_obj(s, L, lua_gettop(L), val, p, depth + 1);
  lua_pop(L, 1);
  return r;
}

static int by_name (const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define MAX_FIELDS 256

static int check_obj (store_t *s, lua_State *L, int fields, int val, vpath *p, int depth) {
  const char *got = got_name(L, val);
  if (strcmp(got, "dict") != 0) return vfail(s, p, "expected dict, got %s%s", got, "");
  /* Fields in name order, so the first error reported is always the same one. */
  const char *names[MAX_FIELDS];
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, fields)) {
    lua_pop(L, 1);
    if (n == MAX_FIELDS) {
      lua_pop(L, 1);
      return vfail(s, p, "more than %s fields in a schema%s", "256", "");
    }
    names[n++] = lua_tostring(L, -1); /* kept alive by the fields table */
  }
  qsort(names, n, sizeof names[0], by_name);
  size_t mark = p->len;
  for (size_t i = 0; i < n; i++) {
    const char *name = names[i];
    snprintf(p->buf + mark, sizeof p->buf - mark, "%s%s", mark ? "." : "", name);
    p->len = strlen(p->buf);
    lua_getfield(L, fields, name);
    lua_getfield(L, val, name);
    int r = lua_isnil(L, -1) ? vfail(s, p, "missing field%s%s", "", "")
                             : check_value(s, L, lua_gettop(L) - 1, lua_gettop(L), p, depth);
    lua_pop(L, 2);
    if (r < 0) return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, val)) {
    lua_pop(L, 1);
    int known = lua_type(L, -1) == LUA_TSTRING;
    if (known) {
      lua_pushvalue(L, -1);
      known = lua_rawget(L, fields) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (!known) {
      lua_pushvalue(L, -1);
      const char *k = luaL_tolstring(L, -1, NULL);
      snprintf(p->buf + mark, sizeof p->buf - mark, "%s%s", mark ? "." : "", k);
      p->len = strlen(p->buf);
      lua_pop(L, 3);
      return vfail(s, p, "unexpected field%s%s", "", "");
    }
  }
  p->len = mark;
  p->buf[mark] = '\0';
  return 0;
}

int store_schema_check (store_t *s, lua_State *L, const char *def, size_t dlen, const char *payload,
                        size_t plen) {
  int top = lua_gettop(L);
  if (!json_decode(L, def, dlen) || !lua_istable(L, -1)) {
    lua_settop(L, top);
    return store_failf(s, "bad schema definition");
  }
  lua_getfield(L, -1, "fields");
  if (!lua_istable(L, -1)) {
    lua_settop(L, top);
    return store_failf(s, "bad schema definition");
  }
  if (!json_decode(L, payload, plen)) {
    lua_settop(L, top);
    return store_failf(s, "payload is not JSON");
  }
  vpath p;
  p.len = 0;
  p.buf[0] = '\0';
  int r = check_obj(s, L, top + 2, top + 3, &p, 0);
  lua_settop(L, top);
  return r;
}

/* }============ */
