/* cap.c — grants: scopes kept in C, the userdata a sandbox sees, calls into the node. */
#include "cap.h"
#include "json.h"
#include "sandbox.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Body of a grant userdata in the sandbox state. */
typedef struct cap_ref {
  cap_set *cs;
  cap_grant *g;
} cap_ref;

/* One call crossing from the sandbox into the node. */
typedef struct cap_xcall {
  lua_State *from;
  int first, nargs;
  const cap_grant *g;
  const cap_method *m;
  size_t max_bytes;
  size_t left; /* bytes left for arguments that hold grants (all of them together) */
} cap_xcall;

static const char cap_mt_key = 0;       /* sandbox registry: the grant userdata's metatable */
static const char cap_grant_mt_key = 0; /* node registry: the descriptors' metatable */

#define CAP_ARG_DEPTH 8 /* how deep arguments are searched for grants */

/* {====================================================== parsing (node side) */

static void cap_grant_free (cap_grant *g) {
  cap_scope_free(&g->scope);
  if (g->borrowed) return;
  free(g->name);
  free(g->type);
  free(g->description);
  for (int j = 0; j < g->nmethods; j++) {
    free(g->methods[j].name);
    free(g->methods[j].op);
    free(g->methods[j].doc);
    free(g->methods[j].field);
  }
  free(g->methods);
}

void cap_set_free (cap_set *cs) {
  for (int i = 0; i < cs->n; i++) cap_grant_free(&cs->grants[i]);
  free(cs->grants);
  for (int i = 0; i < cs->nderived; i++) {
    cap_grant_free(cs->derived[i]);
    free(cs->derived[i]);
  }
  free(cs->derived);
  memset(cs, 0, sizeof *cs);
}

static void *cap_alloc (lua_State *L, size_t n) { /* may raise */
  void *p = calloc(1, n ? n : 1);
  if (!p) luaL_error(L, "grants: out of memory");
  return p;
}

/* A copy of the string at idx; NULs inside would silently shorten a scope. */
static char *cap_dup (lua_State *L, int idx, const char *what) { /* may raise */
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  char *p;
  if (strlen(s) != len) luaL_error(L, "sandbox.new: %s must not contain NUL", what);
  p = cap_alloc(L, len + 1);
  memcpy(p, s, len);
  return p;
}

/* t[key] as a fresh C string, or NULL when absent. */
static char *cap_field (lua_State *L, int t, const char *key, const char *what) { /* may raise */
  char *r = NULL;
  int ty = lua_getfield(L, t, key);
  if (ty != LUA_TNIL) {
    if (ty != LUA_TSTRING) luaL_error(L, "sandbox.new: %s.%s must be a string", what, key);
    r = cap_dup(L, -1, what);
  }
  lua_pop(L, 1);
  return r;
}

static int cap_method_cmp (const void *a, const void *b) {
  return strcmp(((const cap_method *)a)->name, ((const cap_method *)b)->name);
}

static void cap_parse_methods (lua_State *L, int t, cap_grant *g) { /* may raise */
  int n = 0;
  if (lua_getfield(L, t, "methods") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "sandbox.new: grant '%s': methods must be a table", g->name);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  g->methods = cap_alloc(L, (size_t)n * sizeof *g->methods);
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* methods, name, spec */
    cap_method *m = &g->methods[g->nmethods];
    int spec = lua_gettop(L);
    if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
      luaL_error(L, "sandbox.new: grant '%s': methods must map names to tables", g->name);
    m->name = cap_dup(L, -2, "a method name");
    g->nmethods++;
    if (strcmp(m->name, "scope") == 0)
      luaL_error(L, "sandbox.new: grant '%s': 'scope' is reserved (every grant has it)", g->name);
    m->op = cap_field(L, spec, "op", "a method");
    m->doc = cap_field(L, spec, "doc", "a method");
    m->field = cap_field(L, spec, "field", "a method");
    if (lua_getfield(L, spec, "target") != LUA_TNIL) {
      int isint;
      lua_Integer target = lua_tointegerx(L, -1, &isint);
      if (!isint || target < 1 || target > 250)
        luaL_error(L, "sandbox.new: %s.%s: target must be an argument number", g->name, m->name);
      m->target = (int)target;
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  qsort(g->methods, (size_t)g->nmethods, sizeof *g->methods, cap_method_cmp);
}

static void cap_parse_grant (lua_State *L, int t, cap_grant *g) { /* may raise */
  char err[300];
  if (lua_getfield(L, t, "name") != LUA_TSTRING || lua_rawlen(L, -1) == 0)
    luaL_error(L, "sandbox.new: every grant needs a name");
  g->name = cap_dup(L, -1, "a grant name");
  lua_pop(L, 1);
  g->type = cap_field(L, t, "type", g->name);
  g->description = cap_field(L, t, "description", g->name);
  cap_parse_methods(L, t, g);
  lua_getfield(L, t, "scope");
  if (!cap_scope_parse(L, -1, &g->scope, err, sizeof err))
    luaL_error(L, "sandbox.new: grant '%s': %s", g->name, err);
  lua_pop(L, 1);
}

void cap_set_parse (lua_State *L, int idx, cap_set *cs) { /* may raise */
  lua_Integer n;
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx)) return;
  luaL_checkstack(L, 10, "sandbox.new");
  if (!lua_istable(L, idx)) luaL_error(L, "sandbox.new: grants must be a list");
  n = (lua_Integer)lua_rawlen(L, idx);
  if (n > 10000) luaL_error(L, "sandbox.new: too many grants");
  cs->grants = cap_alloc(L, (size_t)n * sizeof *cs->grants);
  for (lua_Integer i = 1; i <= n; i++) {
    cap_grant *g = &cs->grants[cs->n++];
    if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
      luaL_error(L, "sandbox.new: grants[%d] must be a table", (int)i);
    cap_parse_grant(L, lua_gettop(L), g);
    for (int j = 0; j < cs->n - 1; j++)
      if (strcmp(cs->grants[j].name, g->name) == 0)
        luaL_error(L, "sandbox.new: grant '%s' appears twice", g->name);
    lua_pop(L, 1);
  }
}

/* }====================================================== */

/* {====================================================== scope checks */

/* The scope keys checked against a method's target. */
static const int cap_target_keys[] = {CAP_S_PREFIX, CAP_S_NAMES, CAP_S_KEYS, CAP_S_DOMAINS, CAP_S_HOSTS};

int cap_check (const cap_grant *g, const cap_method *m, lua_State *L, int first, char *why, size_t whylen) {
  const char *op = m->op ? m->op : m->name;
  const cap_sval *ops = &g->scope.v[CAP_S_OPS];
  int targeted = 0;
  if (ops->set) {
    int i;
    for (i = 0; i < ops->n; i++)
      if (strcmp(ops->list[i], op) == 0) break;
    if (i == ops->n) {
      char list[200];
      size_t used = 0;
      list[0] = '\0';
      for (int j = 0; j < ops->n && used + 1 < sizeof list; j++) {
        int w = snprintf(list + used, sizeof list - used, "%s'%s'", j ? ", " : "", ops->list[j]);
        if (w < 0) break;
        used += (size_t)w;
      }
      snprintf(why, whylen, "op '%s' is not allowed (ops: %s)", op, ops->n ? list : "none");
      return 0;
    }
  }
  for (size_t k = 0; k < sizeof cap_target_keys / sizeof cap_target_keys[0]; k++)
    targeted |= g->scope.v[cap_target_keys[k]].set;
  if (m->target > 0 && targeted) {
    int idx = first + m->target - 1, ok = idx <= lua_gettop(L);
    size_t len = 0;
    const char *s = NULL;
    if (ok && m->field) { /* a table's field, read raw: no sandbox code runs here */
      ok = lua_type(L, idx) == LUA_TTABLE && lua_checkstack(L, 2);
      if (ok) {
        lua_pushstring(L, m->field);
        ok = lua_rawget(L, idx) == LUA_TSTRING;
        s = lua_tolstring(L, -1, &len);
        lua_pop(L, 1); /* the table still holds the string */
      }
      if (!ok) {
        snprintf(why, whylen,
                 "argument %d must be a table whose field '%s' is a string within the "
                 "grant's scope",
                 m->target, m->field);
        return 0;
      }
    } else if (!ok || lua_type(L, idx) != LUA_TSTRING) {
      snprintf(why, whylen, "argument %d must be a string within the grant's scope", m->target);
      return 0;
    } else {
      s = lua_tolstring(L, idx, &len);
    }
    for (size_t k = 0; k < sizeof cap_target_keys / sizeof cap_target_keys[0]; k++)
      if (!cap_scope_allows(&g->scope, cap_target_keys[k], s, len, why, whylen)) return 0;
  }
  return 1;
}

/* }====================================================== */

/* {====================================================== grant descriptors (node side) */

void cap_push_grant_mt (lua_State *N) { /* may raise */
  if (lua_rawgetp(N, LUA_REGISTRYINDEX, &cap_grant_mt_key) != LUA_TNIL) return;
  lua_pop(N, 1);
  luaL_newmetatable(N, CAP_GRANT_MT);
  lua_pushliteral(N, "grant");
  lua_setfield(N, -2, "__name");
  lua_pushvalue(N, -1);
  lua_rawsetp(N, LUA_REGISTRYINDEX, &cap_grant_mt_key);
}

/* Whether the value at idx of N is a descriptor. Allocates nothing. */
static int cap_is_descriptor (lua_State *N, int idx) {
  int same;
  if (lua_type(N, idx) != LUA_TTABLE || !lua_checkstack(N, 2) || !lua_getmetatable(N, idx)) return 0;
  lua_rawgetp(N, LUA_REGISTRYINDEX, &cap_grant_mt_key);
  same = lua_rawequal(N, -1, -2);
  lua_pop(N, 2);
  return same;
}

/* {name, type, description, scope} with the descriptors' metatable. */
static void cap_push_descriptor (lua_State *N, const cap_grant *g) { /* may raise */
  lua_createtable(N, 0, 4);
  lua_pushstring(N, g->name);
  lua_setfield(N, -2, "name");
  if (g->type) {
    lua_pushstring(N, g->type);
    lua_setfield(N, -2, "type");
  }
  if (g->description) {
    lua_pushstring(N, g->description);
    lua_setfield(N, -2, "description");
  }
  cap_scope_push(N, &g->scope);
  lua_setfield(N, -2, "scope");
  cap_push_grant_mt(N);
  lua_setmetatable(N, -2);
}

/* A new grant owned by cs (so a raise while filling it leaks nothing). */
static cap_grant *cap_derive (lua_State *N, cap_set *cs) { /* may raise */
  cap_grant *g;
  if (cs->nderived >= CAP_MAX_DERIVED)
    luaL_error(N, "more than %d grants made in one sandbox", CAP_MAX_DERIVED);
  if (cs->nderived == cs->derived_size) {
    int size = cs->derived_size ? cs->derived_size * 2 : 8;
    cap_grant **d = realloc(cs->derived, (size_t)size * sizeof *d);
    if (!d) luaL_error(N, "grants: out of memory");
    cs->derived = d;
    cs->derived_size = size;
  }
  g = cap_alloc(N, sizeof *g);
  g->derived = 1;
  cs->derived[cs->nderived++] = g;
  return g;
}

/* A derived grant from the descriptor at idx of N (it must carry methods). */
static cap_grant *cap_from_descriptor (lua_State *N, cap_set *cs, int idx) { /* may raise */
  cap_grant *g;
  idx = lua_absindex(N, idx);
  if (lua_getfield(N, idx, "methods") != LUA_TTABLE)
    luaL_error(N, "a grant descriptor returned to a sandbox needs its methods");
  lua_pop(N, 1);
  if (lua_getfield(N, idx, "name") == LUA_TNIL) { /* default: the type */
    lua_pop(N, 1);
    lua_getfield(N, idx, "type");
    lua_setfield(N, idx, "name");
  } else {
    lua_pop(N, 1);
  }
  g = cap_derive(N, cs);
  cap_parse_grant(N, idx, g);
  return g;
}

/* }====================================================== */

/* {====================================================== calls into the node */

/* Message handler on the node: reduces any error value to a message, so the
 * sandbox never sees the node's stack. */
static int cap_msgh (lua_State *N) {
  if (lua_type(N, 1) == LUA_TSTRING || lua_type(N, 1) == LUA_TNUMBER) return 1;
  if (luaL_callmeta(N, 1, "__tostring") && lua_type(N, -1) == LUA_TSTRING) return 1;
  lua_pushfstring(N, "(error object is a %s value)", luaL_typename(N, 1));
  return 1;
}

/* Whether the sandbox value at idx holds a grant within CAP_ARG_DEPTH tables.
 * Reads raw and never raises (the sandbox side must not). */
static int cap_holds_grant (lua_State *L, int idx, int depth) {
  int found = 0;
  if (lua_type(L, idx) == LUA_TUSERDATA) return cap_to_grant(L, idx) != NULL;
  if (lua_type(L, idx) != LUA_TTABLE || depth >= CAP_ARG_DEPTH || !lua_checkstack(L, 3)) return 0;
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (!found && lua_next(L, idx)) {
    found = cap_holds_grant(L, -1, depth + 1);
    lua_pop(L, 1);
  }
  if (found) lua_pop(L, 1);
  return found;
}

/* What sandbox_copy will charge for the value at idx (same rates), or
 * (size_t)-1 past `left`. Walks shared subtables once per reference, like the
 * copy, so a table referenced many times is charged many times. Never raises. */
static size_t cap_cost (lua_State *L, int idx, size_t left, int depth) {
  size_t used = 0, len;
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER:
    return left >= 8 ? 8 : (size_t)-1;
  case LUA_TSTRING:
    lua_tolstring(L, idx, &len);
    return len + 1 <= left ? len + 1 : (size_t)-1;
  case LUA_TTABLE:
    if (depth >= JSON_MAX_DEPTH || left < 16 || !lua_checkstack(L, 3)) return (size_t)-1;
    used = 16;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t k = cap_cost(L, -2, left - used, depth + 1), v;
      if (k == (size_t)-1 || (v = cap_cost(L, -1, left - used - k, depth + 1)) == (size_t)-1) {
        lua_pop(L, 2);
        return (size_t)-1;
      }
      used += k + v;
      lua_pop(L, 1);
    }
    return used;
  default:
    return left >= 1 ? 1 : (size_t)-1; /* the copy refuses what it cannot carry */
  }
}

/* Copies the sandbox value at idx onto N, grants becoming descriptors; every
 * piece is charged to x->left so the whole argument stays within max_bytes. */
static void cap_copy_arg (lua_State *L, int idx, lua_State *N, cap_xcall *x, int i,
                          int depth) { /* may raise (on N) */
  char err[256];
  const cap_grant *g;
  if ((g = cap_to_grant(L, idx)) != NULL) {
    if (x->left < 256)
      luaL_error(N, "%s.%s: argument %d: more than %d bytes", x->g->name, x->m->name, i, (int)x->max_bytes);
    x->left -= 256;
    cap_push_descriptor(N, g);
    return;
  }
  if (lua_type(L, idx) == LUA_TTABLE && depth < CAP_ARG_DEPTH && cap_holds_grant(L, idx, depth)) {
    if (!lua_checkstack(L, 3)) luaL_error(N, "%s.%s: argument %d: too deep", x->g->name, x->m->name, i);
    luaL_checkstack(N, 4, "argument too deep");
    idx = lua_absindex(L, idx);
    if (x->left < 16)
      luaL_error(N, "%s.%s: argument %d: more than %d bytes", x->g->name, x->m->name, i, (int)x->max_bytes);
    x->left -= 16;
    lua_newtable(N);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t cost = cap_cost(L, -2, x->left, 0);
      if (cost == (size_t)-1) {
        lua_pop(L, 2);
        luaL_error(N, "%s.%s: argument %d: more than %d bytes", x->g->name, x->m->name, i, (int)x->max_bytes);
      }
      x->left -= cost;
      if (!sandbox_copy(L, -2, N, cost, err, sizeof err)) {
        lua_pop(L, 2);
        luaL_error(N, "%s.%s: argument %d: %s", x->g->name, x->m->name, i, err);
      }
      cap_copy_arg(L, lua_gettop(L), N, x, i, depth + 1);
      lua_rawset(N, -3);
      lua_pop(L, 1);
    }
    return;
  }
  if (depth > 0) { /* inside a table holding grants: charge the shared budget */
    size_t cost = cap_cost(L, idx, x->left, 0);
    if (cost == (size_t)-1)
      luaL_error(N, "%s.%s: argument %d: more than %d bytes", x->g->name, x->m->name, i, (int)x->max_bytes);
    x->left -= cost;
    if (!sandbox_copy(L, idx, N, cost, err, sizeof err))
      luaL_error(N, "%s.%s: argument %d: %s", x->g->name, x->m->name, i, err);
    return;
  }
  if (!sandbox_copy(L, idx, N, x->max_bytes, err, sizeof err))
    luaL_error(N, "%s.%s: argument %d: %s", x->g->name, x->m->name, i, err);
}

/* Runs protected on the node: pushes dispatch's arguments after dispatch
 * (at 1). Reads of the sandbox side never raise (sandbox_copy's contract). */
static void cap_push_call (lua_State *N, cap_xcall *x) { /* may raise */
  if (!lua_isfunction(N, 1)) {
    lua_pushfstring(N, "%s.%s: the sandbox has no dispatch function", x->g->name, x->m->name);
    lua_error(N);
  }
  luaL_checkstack(N, x->nargs + 2, "too many arguments");
  if (x->g->derived)
    cap_push_descriptor(N, x->g);
  else
    lua_pushstring(N, x->g->name);
  lua_pushstring(N, x->m->name);
  for (int i = 0; i < x->nargs; i++) cap_copy_arg(x->from, x->first + i, N, x, i + 1, 0);
}

static int cap_dispatch_p (lua_State *N) { /* may raise */
  cap_xcall *x = lua_touserdata(N, 2);
  lua_settop(N, 1);
  cap_push_call(N, x);
  lua_call(N, x->nargs + 2, LUA_MULTRET);
  return lua_gettop(N);
}

static int cap_prepare_p (lua_State *N) { /* may raise */
  cap_xcall *x = lua_touserdata(N, 2);
  lua_settop(N, 1);
  cap_push_call(N, x);
  return lua_gettop(N);
}

/* Raises, in the sandbox, the node's error message at the top of N. */
static int cap_raise (lua_State *L, lua_State *N, int base) { /* may raise */
  size_t len;
  const char *msg = lua_tolstring(N, -1, &len);
  luaL_where(L, 1);
  if (msg)
    lua_pushlstring(L, msg, len);
  else
    lua_pushliteral(L, "error in a capability call");
  lua_settop(N, base);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Protected on N: (cs, values...) -> the values, each descriptor replaced by
 * a light userdata of the derived grant made from it. */
static int cap_derive_p (lua_State *N) { /* may raise */
  cap_set *cs = lua_touserdata(N, 1);
  int top = lua_gettop(N);
  for (int i = 2; i <= top; i++)
    if (cap_is_descriptor(N, i)) {
      lua_pushlightuserdata(N, cap_from_descriptor(N, cs, i));
      lua_replace(N, i);
    }
  return top - 1;
}

/* Turns the descriptors among the nres results at first on N into grants.
 * Returns the number of grants made before (to tell ours apart), or -1 with
 * the error on top of N. */
static int cap_derive_results (lua_State *N, cap_set *cs, int first, int nres) {
  int any = 0, before = cs->nderived, top;
  for (int i = 0; i < nres && !any; i++) any = cap_is_descriptor(N, first + i);
  if (!any) return before;
  if (!lua_checkstack(N, nres + 4)) return -1;
  top = lua_gettop(N);
  lua_pushcfunction(N, cap_msgh);
  lua_pushcfunction(N, cap_derive_p);
  lua_pushlightuserdata(N, cs);
  for (int i = 0; i < nres; i++) lua_pushvalue(N, first + i);
  if (lua_pcall(N, nres + 1, nres, top + 1) != LUA_OK) return -1;
  for (int i = 0; i < nres; i++) lua_copy(N, top + 2 + i, first + i);
  lua_settop(N, top);
  return before;
}

static void cap_push_grant_ptr(lua_State *L, cap_set *cs, cap_grant *g); /* may raise */

/* Moves the results above first on N into L, then drops them from N. A memory
 * error while copying leaves them behind; sb:run resets the node's stack when
 * the run ends. */
static int cap_results (lua_State *L, cap_set *cs, int first, int base, const cap_grant *g,
                        const cap_method *m) { /* may raise */
  lua_State *N = cs->node;
  int nres = lua_gettop(N) - first + 1, before;
  char err[256];
  if (!lua_checkstack(L, nres + LUA_MINSTACK)) {
    lua_settop(N, base);
    return luaL_error(L, "%s.%s: too many results", g->name, m->name);
  }
  if ((before = cap_derive_results(N, cs, first, nres)) < 0) {
    if (lua_gettop(N) > first + nres - 1) return cap_raise(L, N, base);
    lua_settop(N, base);
    return luaL_error(L, "%s.%s: too many results", g->name, m->name);
  }
  for (int i = 0; i < nres; i++) {
    if (lua_type(N, first + i) == LUA_TLIGHTUSERDATA) {
      cap_grant *made = lua_touserdata(N, first + i);
      int j;
      for (j = before; j < cs->nderived && cs->derived[j] != made; j++) {}
      if (j < cs->nderived) {
        cap_push_grant_ptr(L, cs, made);
        continue;
      }
    }
    if (!sandbox_copy(N, first + i, L, cs->max_bytes, err, sizeof err)) {
      lua_settop(N, base);
      return luaL_error(L, "%s.%s: result %d: %s", g->name, m->name, i + 1, err);
    }
  }
  lua_settop(N, base);
  return nres;
}

/* Starts a call on the node: protected fn(dispatch, x) below the message handler. */
static int cap_start (lua_State *L, cap_set *cs, cap_xcall *x, lua_CFunction fn) { /* may raise */
  lua_State *N = cs->node;
  if (!N) return luaL_error(L, "%s.%s: the sandbox is not running", x->g->name, x->m->name);
  if (!lua_checkstack(N, 8)) return luaL_error(L, "%s.%s: node stack overflow", x->g->name, x->m->name);
  lua_pushcfunction(N, cap_msgh);
  lua_pushcfunction(N, fn);
  lua_pushvalue(N, cs->dispatch);
  lua_pushlightuserdata(N, x);
  return lua_pcall(N, 2, LUA_MULTRET, lua_gettop(N) - 3);
}

static void cap_xcall_init (cap_xcall *x, lua_State *L, cap_set *cs, const cap_grant *g, const cap_method *m,
                            int first) {
  x->from = L;
  x->first = first;
  x->nargs = lua_gettop(L) - first + 1;
  x->g = g;
  x->m = m;
  x->max_bytes = x->left = cs->max_bytes;
}

/* The call made in place: dispatch cannot yield. */
static int cap_forward (lua_State *L, cap_set *cs, const cap_grant *g, const cap_method *m,
                        int first) { /* may raise */
  cap_xcall x;
  int base = cs->node ? lua_gettop(cs->node) : 0;
  cap_xcall_init(&x, L, cs, g, m, first);
  if (cap_start(L, cs, &x, cap_dispatch_p) != LUA_OK) return cap_raise(L, cs->node, base);
  return cap_results(L, cs, base + 2, base, g, m);
}

/* Continuation of a parked call, once sb:run has made it. */
static int cap_parked_k (lua_State *L, int status, lua_KContext ctx) { /* may raise */
  cap_ref *r = lua_touserdata(L, lua_upvalueindex(1));
  cap_set *cs = r->cs;
  const cap_grant *g = r->g;
  const cap_method *m = &g->methods[lua_tointeger(L, lua_upvalueindex(2))];
  int base = cs->park_base;
  (void)status;
  (void)ctx;
  if (cs->parked != CAP_PARK_DONE) return luaL_error(L, "%s.%s: the call was lost", g->name, m->name);
  cs->parked = CAP_PARK_NONE;
  if (cs->park_status != LUA_OK) return cap_raise(L, cs->node, base);
  return cap_results(L, cs, base + 2, base, g, m);
}

/* The call parked: arguments copied onto the node, then this thread yields. */
static int cap_park (lua_State *L, cap_set *cs, const cap_grant *g, const cap_method *m,
                     int first) { /* may raise */
  cap_xcall x;
  int base = lua_gettop(cs->node);
  cap_xcall_init(&x, L, cs, g, m, first);
  if (cap_start(L, cs, &x, cap_prepare_p) != LUA_OK) return cap_raise(L, cs->node, base);
  cs->park_base = base;
  cs->parked = CAP_PARK_CALL;
  return lua_yieldk(L, 0, 0, cap_parked_k);
}

int cap_parked_nargs (const cap_set *cs) { return lua_gettop(cs->node) - (cs->park_base + 2); }

void cap_parked_end (cap_set *cs, int status) {
  cs->park_status = status == LUA_YIELD ? LUA_OK : status;
  cs->parked = CAP_PARK_DONE;
}

/* }====================================================== */

/* {====================================================== narrowed copies: grant:scope{...} */

typedef struct cap_narrowing {
  lua_State *from;
  int idx;
  cap_set *cs;
  const cap_grant *g;
  cap_grant *made;
} cap_narrowing;

/* Protected on N (1: the cap_narrowing). */
static int cap_narrow_p (lua_State *N) { /* may raise */
  cap_narrowing *w = lua_touserdata(N, 1);
  cap_scope *s;
  cap_grant *g;
  char err[300];
  lua_settop(N, 1);
  s = cap_scope_scratch(N); /* s[1] the request, s[2] the result */
  if (!sandbox_copy(w->from, w->idx, N, w->cs->max_bytes, err, sizeof err))
    luaL_error(N, "%s.scope: %s", w->g->name, err);
  if (!cap_scope_parse(N, 2, &s[1], err, sizeof err)) luaL_error(N, "%s.scope: %s", w->g->name, err);
  if (!cap_scope_narrow(&w->g->scope, &s[1], &s[2], err, sizeof err))
    luaL_error(N, "permission denied: %s.scope: %s", w->g->name, err);
  g = cap_derive(N, w->cs);
  g->scope = s[2];
  memset(&s[2], 0, sizeof s[2]); /* now g's */
  /* The rest is immutable and lives as long as the set, like the copy: shared. */
  g->name = w->g->name;
  g->type = w->g->type;
  g->description = w->g->description;
  g->methods = w->g->methods;
  g->nmethods = w->g->nmethods;
  g->borrowed = 1;
  w->made = g;
  return 0;
}

static int cap_l_scope (lua_State *L) { /* may raise */
  cap_ref *r = lua_touserdata(L, lua_upvalueindex(1));
  cap_set *cs = r->cs;
  lua_State *N = cs->node;
  int first = (lua_gettop(L) >= 1 && lua_rawequal(L, 1, lua_upvalueindex(1))) ? 2 : 1;
  cap_narrowing w = {L, first, cs, r->g, NULL};
  int base;
  if (lua_type(L, first) != LUA_TTABLE)
    return luaL_error(L, "%s.scope: needs a table, like {prefix = \"notes/a/\"}", r->g->name);
  if (!N) return luaL_error(L, "%s.scope: the sandbox is not running", r->g->name);
  if (!lua_checkstack(N, 4)) return luaL_error(L, "%s.scope: node stack overflow", r->g->name);
  base = lua_gettop(N);
  lua_pushcfunction(N, cap_msgh);
  lua_pushcfunction(N, cap_narrow_p);
  lua_pushlightuserdata(N, &w);
  if (lua_pcall(N, 1, 0, base + 1) != LUA_OK) {
    lua_remove(N, base + 1);
    return cap_raise(L, N, base);
  }
  lua_settop(N, base);
  cap_push_grant_ptr(L, cs, w.made);
  return 1;
}

/* }====================================================== */

/* {====================================================== the grant userdata */

static cap_ref *cap_self (lua_State *L, int idx) {
  return lua_touserdata(L, idx); /* only reachable through our own metatable */
}

static int cap_l_call (lua_State *L) { /* may raise */
  cap_ref *r = cap_self(L, lua_upvalueindex(1));
  const cap_grant *g = r->g;
  const cap_method *m = &g->methods[lua_tointeger(L, lua_upvalueindex(2))];
  int first = (lua_gettop(L) >= 1 && lua_rawequal(L, 1, lua_upvalueindex(1))) ? 2 : 1;
  char why[512];
  if (!cap_check(g, m, L, first, why, sizeof why))
    return luaL_error(L, "permission denied: %s.%s: %s", g->name, m->name, why);
  if (r->cs->node && r->cs->can_park && r->cs->can_park(L)) return cap_park(L, r->cs, g, m, first);
  return cap_forward(L, r->cs, g, m, first);
}

static int cap_l_index (lua_State *L) { /* may raise */
  cap_ref *r = cap_self(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1;
  if (lua_type(L, 2) == LUA_TSTRING)
    return luaL_error(L, "%s has no method '%s'", r->g->name, lua_tostring(L, 2));
  return luaL_error(L, "%s has no method (%s key)", r->g->name, luaL_typename(L, 2));
}

static int cap_l_newindex (lua_State *L) { /* may raise */
  cap_ref *r = cap_self(L, 1);
  return luaL_error(L, "%s is a grant and cannot be changed", r->g->name);
}

static int cap_l_tostring (lua_State *L) {
  cap_ref *r = cap_self(L, 1);
  lua_pushfstring(L, "grant %s", r->g->name);
  return 1;
}

static void cap_push_mt (lua_State *L) { /* may raise */
  static const luaL_Reg funcs[] = {
      {"__index", cap_l_index}, {"__newindex", cap_l_newindex}, {"__tostring", cap_l_tostring}, {NULL, NULL}};
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cap_mt_key) != LUA_TNIL) return;
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cap_mt_key);
}

static void cap_push_grant_ptr (lua_State *L, cap_set *cs, cap_grant *g) { /* may raise */
  cap_ref *r = lua_newuserdatauv(L, sizeof *r, 1);
  r->cs = cs;
  r->g = g;
  cap_push_mt(L);
  lua_setmetatable(L, -2);
  /* The methods, made once: the userdata's own value, out of Lua's reach. */
  lua_createtable(L, 0, g->nmethods + 1);
  for (int j = 0; j < g->nmethods; j++) {
    lua_pushvalue(L, -2);
    lua_pushinteger(L, j);
    lua_pushcclosure(L, cap_l_call, 2);
    lua_setfield(L, -2, g->methods[j].name);
  }
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, cap_l_scope, 1);
  lua_setfield(L, -2, "scope");
  lua_setiuservalue(L, -2, 1);
}

void cap_push_grant (lua_State *L, cap_set *cs, int i) { /* may raise */
  cap_push_grant_ptr(L, cs, &cs->grants[i]);
}

const cap_grant *cap_to_grant (lua_State *L, int idx) {
  cap_ref *r;
  int same;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_checkstack(L, 2) || !lua_getmetatable(L, idx)) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cap_mt_key);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return NULL;
  r = lua_touserdata(L, idx);
  return r->g;
}

void cap_push_help (lua_State *L, const cap_grant *g) { /* may raise */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, g->name);
  if (g->type && strcmp(g->type, g->name) != 0) {
    luaL_addstring(&b, " (");
    luaL_addstring(&b, g->type);
    luaL_addchar(&b, ')');
  }
  if (g->description) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, g->description);
  }
  for (int j = 0; j < g->nmethods; j++) {
    const cap_method *m = &g->methods[j];
    luaL_addstring(&b, "\n  ");
    if (m->doc) {
      luaL_addstring(&b, m->doc);
    } else {
      luaL_addstring(&b, m->name);
      luaL_addstring(&b, "(...)");
    }
  }
  luaL_pushresult(&b);
}

void cap_push_dir (lua_State *L, const cap_grant *g) { /* may raise */
  lua_createtable(L, g->nmethods, 0);
  for (int j = 0; j < g->nmethods; j++) {
    lua_pushstring(L, g->methods[j].name);
    lua_rawseti(L, -2, j + 1);
  }
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
}

/* }====================================================== */
