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
  int grant;
} cap_ref;

/* One call crossing from the sandbox into the node. */
typedef struct cap_xcall {
  lua_State *from;
  int first, nargs;
  const cap_grant *g;
  const cap_method *m;
  size_t max_bytes;
} cap_xcall;

static const char cap_mt_key = 0; /* registry key of the grant metatable */

/* {====================================================== parsing (node side) */

static void cap_free_list (char **list, int n) {
  if (!list) return;
  for (int i = 0; i < n; i++) free(list[i]);
  free(list);
}

void cap_set_free (cap_set *cs) {
  for (int i = 0; i < cs->n; i++) {
    cap_grant *g = &cs->grants[i];
    free(g->name);
    free(g->type);
    free(g->description);
    for (int j = 0; j < g->nmethods; j++) {
      free(g->methods[j].name);
      free(g->methods[j].op);
      free(g->methods[j].doc);
    }
    free(g->methods);
    cap_free_list(g->ops, g->nops);
    free(g->prefix);
    cap_free_list(g->names, g->nnames);
  }
  free(cs->grants);
  memset(cs, 0, sizeof *cs);
}

static void *cap_alloc (lua_State *L, size_t n) { /* may raise */
  void *p = calloc(1, n ? n : 1);
  if (!p) luaL_error(L, "sandbox.new: out of memory");
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

/* t[key] as a list of strings; *n stays -1 when absent. Fills as it goes so a
 * raise leaves nothing unowned. */
static void cap_list (lua_State *L, int t, const char *key, const char *what, char ***out,
                      int *n) { /* may raise */
  lua_Integer len;
  *n = -1;
  if (lua_getfield(L, t, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "sandbox.new: %s.%s must be a list of strings", what, key);
  len = (lua_Integer)lua_rawlen(L, -1);
  if (len > 100000) luaL_error(L, "sandbox.new: %s.%s is too long", what, key);
  *out = cap_alloc(L, (size_t)len * sizeof(char *));
  *n = 0;
  for (lua_Integer i = 1; i <= len; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
      luaL_error(L, "sandbox.new: %s.%s must be a list of strings", what, key);
    (*out)[*n] = cap_dup(L, -1, what);
    (*n)++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
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
    m->op = cap_field(L, spec, "op", "a method");
    m->doc = cap_field(L, spec, "doc", "a method");
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

static void cap_parse_grant (lua_State *L, int t, cap_set *cs, cap_grant *g) { /* may raise */
  g->nops = g->nnames = -1;
  if (lua_getfield(L, t, "name") != LUA_TSTRING || lua_rawlen(L, -1) == 0)
    luaL_error(L, "sandbox.new: every grant needs a name");
  g->name = cap_dup(L, -1, "a grant name");
  lua_pop(L, 1);
  for (int i = 0; i < cs->n - 1; i++)
    if (strcmp(cs->grants[i].name, g->name) == 0)
      luaL_error(L, "sandbox.new: grant '%s' appears twice", g->name);
  g->type = cap_field(L, t, "type", g->name);
  g->description = cap_field(L, t, "description", g->name);
  cap_parse_methods(L, t, g);
  if (lua_getfield(L, t, "scope") != LUA_TNIL) {
    int scope = lua_gettop(L);
    if (!lua_istable(L, scope)) luaL_error(L, "sandbox.new: grant '%s': scope must be a table", g->name);
    cap_list(L, scope, "ops", "scope", &g->ops, &g->nops);
    cap_list(L, scope, "names", "scope", &g->names, &g->nnames);
    g->prefix = cap_field(L, scope, "prefix", "scope");
    if (g->prefix) g->prefix_len = strlen(g->prefix);
  }
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
    g->nops = g->nnames = -1; /* so a raise before parsing frees nothing twice */
    if (lua_rawgeti(L, idx, i) != LUA_TTABLE) luaL_error(L, "sandbox.new: grants[%d] must be a table", (int)i);
    cap_parse_grant(L, lua_gettop(L), cs, g);
    lua_pop(L, 1);
  }
}

/* }====================================================== */

/* {====================================================== scope checks */

int cap_glob_match (const char *p, const char *s, size_t len) {
  const char *star = NULL; /* pattern just after the last '*' */
  size_t i = 0, star_i = 0;
  while (i < len) {
    if (*p == '*') {
      star = ++p;
      star_i = i;
    } else if (*p && (*p == '?' || *p == s[i])) {
      p++;
      i++;
    } else if (star) { /* let the last '*' absorb one more byte */
      p = star;
      i = ++star_i;
    } else {
      return 0;
    }
  }
  while (*p == '*') p++;
  return *p == '\0';
}

static int cap_has (char **list, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (strcmp(list[i], s) == 0) return 1;
  return 0;
}

/* "'a*', 'b?'" for messages, cut short when long. */
static void cap_join (char *buf, size_t size, char **list, int n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && used + 1 < size; i++) {
    int w = snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "", list[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (used >= size && size > 4) memcpy(buf + size - 4, "...", 4);
}

int cap_check (const cap_grant *g, const cap_method *m, lua_State *L, int first, char *why,
               size_t whylen) {
  const char *op = m->op ? m->op : m->name;
  char list[200];
  if (g->nops >= 0 && !cap_has(g->ops, g->nops, op)) {
    cap_join(list, sizeof list, g->ops, g->nops);
    snprintf(why, whylen, "op '%s' is not allowed (ops: %s)", op, g->nops ? list : "none");
    return 0;
  }
  if (m->target > 0 && (g->prefix || g->nnames >= 0)) {
    int idx = first + m->target - 1;
    size_t len;
    const char *s;
    if (idx > lua_gettop(L) || lua_type(L, idx) != LUA_TSTRING) {
      snprintf(why, whylen, "argument %d must be a string within the grant's scope", m->target);
      return 0;
    }
    s = lua_tolstring(L, idx, &len);
    if (g->prefix && (len < g->prefix_len || memcmp(s, g->prefix, g->prefix_len) != 0)) {
      snprintf(why, whylen, "'%.*s' is outside prefix '%s'", (int)(len > 120 ? 120 : len), s,
               g->prefix);
      return 0;
    }
    if (g->nnames >= 0) {
      int i;
      for (i = 0; i < g->nnames; i++)
        if (cap_glob_match(g->names[i], s, len)) break;
      if (i == g->nnames) {
        cap_join(list, sizeof list, g->names, g->nnames);
        snprintf(why, whylen, "'%.*s' matches none of names %s", (int)(len > 120 ? 120 : len), s,
                 g->nnames ? list : "(none)");
        return 0;
      }
    }
  }
  return 1;
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

/* Runs protected on the node: pushes dispatch's arguments after dispatch
 * (at 1). Reads of the sandbox side never raise (sandbox_copy's contract). */
static void cap_push_call (lua_State *N, cap_xcall *x) { /* may raise */
  char err[256];
  if (!lua_isfunction(N, 1)) {
    lua_pushfstring(N, "%s.%s: the sandbox has no dispatch function", x->g->name, x->m->name);
    lua_error(N);
  }
  luaL_checkstack(N, x->nargs + 2, "too many arguments");
  lua_pushstring(N, x->g->name);
  lua_pushstring(N, x->m->name);
  for (int i = 0; i < x->nargs; i++)
    if (!sandbox_copy(x->from, x->first + i, N, x->max_bytes, err, sizeof err)) {
      lua_pushfstring(N, "%s.%s: argument %d: %s", x->g->name, x->m->name, i + 1, err);
      lua_error(N);
    }
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
  if (msg) lua_pushlstring(L, msg, len);
  else lua_pushliteral(L, "error in a capability call");
  lua_settop(N, base);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Moves the results above first on N into L, then drops them from N. A memory
 * error while copying leaves them behind; sb:run resets the node's stack when
 * the run ends. */
static int cap_results (lua_State *L, lua_State *N, int first, int base, const cap_grant *g,
                        const cap_method *m, size_t max_bytes) { /* may raise */
  int nres = lua_gettop(N) - first + 1;
  char err[256];
  if (!lua_checkstack(L, nres + LUA_MINSTACK)) {
    lua_settop(N, base);
    return luaL_error(L, "%s.%s: too many results", g->name, m->name);
  }
  for (int i = 0; i < nres; i++)
    if (!sandbox_copy(N, first + i, L, max_bytes, err, sizeof err)) {
      lua_settop(N, base);
      return luaL_error(L, "%s.%s: result %d: %s", g->name, m->name, i + 1, err);
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

static void cap_xcall_init (cap_xcall *x, lua_State *L, cap_set *cs, const cap_grant *g,
                            const cap_method *m, int first) {
  x->from = L;
  x->first = first;
  x->nargs = lua_gettop(L) - first + 1;
  x->g = g;
  x->m = m;
  x->max_bytes = cs->max_bytes;
}

/* The call made in place: dispatch cannot yield. */
static int cap_forward (lua_State *L, cap_set *cs, const cap_grant *g, const cap_method *m,
                        int first) { /* may raise */
  cap_xcall x;
  int base = cs->node ? lua_gettop(cs->node) : 0;
  cap_xcall_init(&x, L, cs, g, m, first);
  if (cap_start(L, cs, &x, cap_dispatch_p) != LUA_OK) return cap_raise(L, cs->node, base);
  return cap_results(L, cs->node, base + 2, base, g, m, cs->max_bytes);
}

/* Continuation of a parked call, once sb:run has made it. */
static int cap_parked_k (lua_State *L, int status, lua_KContext ctx) { /* may raise */
  cap_ref *r = lua_touserdata(L, lua_upvalueindex(1));
  cap_set *cs = r->cs;
  const cap_grant *g = &cs->grants[r->grant];
  const cap_method *m = &g->methods[lua_tointeger(L, lua_upvalueindex(2))];
  int base = cs->park_base;
  (void)status;
  (void)ctx;
  if (cs->parked != CAP_PARK_DONE) return luaL_error(L, "%s.%s: the call was lost", g->name, m->name);
  cs->parked = CAP_PARK_NONE;
  if (cs->park_status != LUA_OK) return cap_raise(L, cs->node, base);
  return cap_results(L, cs->node, base + 2, base, g, m, cs->max_bytes);
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

int cap_parked_nargs (const cap_set *cs) {
  return lua_gettop(cs->node) - (cs->park_base + 2);
}

void cap_parked_end (cap_set *cs, int status) {
  cs->park_status = status == LUA_YIELD ? LUA_OK : status;
  cs->parked = CAP_PARK_DONE;
}

/* }====================================================== */

/* {====================================================== the grant userdata */

static cap_ref *cap_self (lua_State *L, int idx) {
  return lua_touserdata(L, idx); /* only reachable through our own metatable */
}

static int cap_l_call (lua_State *L) { /* may raise */
  cap_ref *r = cap_self(L, lua_upvalueindex(1));
  const cap_grant *g = &r->cs->grants[r->grant];
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
  const cap_grant *g = &r->cs->grants[r->grant];
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1;
  if (lua_type(L, 2) == LUA_TSTRING)
    return luaL_error(L, "%s has no method '%s'", g->name, lua_tostring(L, 2));
  return luaL_error(L, "%s has no method (%s key)", g->name, luaL_typename(L, 2));
}

static int cap_l_newindex (lua_State *L) { /* may raise */
  cap_ref *r = cap_self(L, 1);
  return luaL_error(L, "%s is a grant and cannot be changed", r->cs->grants[r->grant].name);
}

static int cap_l_tostring (lua_State *L) {
  cap_ref *r = cap_self(L, 1);
  lua_pushfstring(L, "grant %s", r->cs->grants[r->grant].name);
  return 1;
}

static void cap_push_mt (lua_State *L) { /* may raise */
  static const luaL_Reg funcs[] = {{"__index", cap_l_index},
                                   {"__newindex", cap_l_newindex},
                                   {"__tostring", cap_l_tostring},
                                   {NULL, NULL}};
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cap_mt_key) != LUA_TNIL) return;
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cap_mt_key);
}

void cap_push_grant (lua_State *L, cap_set *cs, int i) { /* may raise */
  const cap_grant *g = &cs->grants[i];
  cap_ref *r = lua_newuserdatauv(L, sizeof *r, 1);
  r->cs = cs;
  r->grant = i;
  cap_push_mt(L);
  lua_setmetatable(L, -2);
  /* The methods, made once: the userdata's own value, out of Lua's reach. */
  lua_createtable(L, 0, g->nmethods);
  for (int j = 0; j < g->nmethods; j++) {
    lua_pushvalue(L, -2);
    lua_pushinteger(L, j);
    lua_pushcclosure(L, cap_l_call, 2);
    lua_setfield(L, -2, g->methods[j].name);
  }
  lua_setiuservalue(L, -2, 1);
}

const cap_grant *cap_to_grant (lua_State *L, int idx) {
  cap_ref *r;
  int same;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_checkstack(L, 2) || !lua_getmetatable(L, idx))
    return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cap_mt_key);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return NULL;
  r = lua_touserdata(L, idx);
  return &r->cs->grants[r->grant];
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
