/* cap_scope.c — the scope algebra of grants (cap.h): one table of typed keys drives
 * parsing, checking, narrowing and covering, in C where sandbox code cannot reach it. */
#include "cap.h"
#include "json.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_SET, K_PREFIX, K_GLOBS, K_HOSTS, K_FIXED, K_STICKY, K_MIN };

static const struct {
  const char *name;
  int kind;
  int ci; /* compare case-blind (HTTP methods) */
} cap_keys[CAP_S_N] = {
    {"ops", K_SET, 0},     {"methods", K_SET, 1},      {"process_ids", K_SET, 0}, {"prefix", K_PREFIX, 0},
    {"names", K_GLOBS, 0}, {"keys", K_GLOBS, 0},       {"domains", K_HOSTS, 0},   {"hosts", K_HOSTS, 0},
    {"key", K_FIXED, 0},   {"read_only", K_STICKY, 0}, {"max_bytes", K_MIN, 0},   {"query_budget", K_MIN, 0},
};

#define CAP_MAX_LIST 10000
#define CAP_MAX_STR  4096
#define CAP_HOST_MAX 256

/* {====================================================== values */

static void cap_sval_free (cap_sval *v) {
  for (int i = 0; i < v->n; i++) free(v->list[i]);
  free(v->list);
  free(v->str);
  memset(v, 0, sizeof *v);
}

void cap_scope_free (cap_scope *s) {
  for (int k = 0; k < CAP_S_N; k++) cap_sval_free(&s->v[k]);
  free(s->unknown);
  s->unknown = NULL;
}

static char *cap_strndup (const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

static int cap_sval_copy (cap_sval *dst, const cap_sval *src) {
  memset(dst, 0, sizeof *dst);
  dst->set = src->set;
  dst->num = src->num;
  dst->len = src->len;
  if (src->str && !(dst->str = cap_strndup(src->str, src->len))) return 0;
  if (src->list) {
    if (!(dst->list = calloc((size_t)(src->n ? src->n : 1), sizeof(char *)))) return 0;
    for (; dst->n < src->n; dst->n++)
      if (!(dst->list[dst->n] = cap_strndup(src->list[dst->n], strlen(src->list[dst->n])))) return 0;
  }
  return 1;
}

/* A path with a "." or ".." segment could step outside a prefix. */
static int cap_dot_segment (const char *s, size_t len) {
  size_t i = 0;
  while (i <= len) {
    size_t j = i;
    while (j < len && s[j] != '/') j++;
    if ((j - i == 1 && s[i] == '.') || (j - i == 2 && s[i] == '.' && s[i + 1] == '.')) return 1;
    i = j + 1;
  }
  return 0;
}

/* The lower-cased host of a URL "scheme://[user@]host[:port][/...]", or of a
 * bare host name. Returns 0 when there is none or it has odd characters. */
static int cap_host_of (const char *s, size_t len, char *host, size_t size) {
  const char *p = s, *end = s + len, *sep = NULL, *at, *h, *he;
  size_t n = 0;
  for (size_t i = 0; i + 2 < len; i++)
    if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
      sep = s + i;
      break;
    }
  if (sep) {
    for (const char *q = s; q < sep; q++)
      if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
            (q > s && ((*q >= '0' && *q <= '9') || *q == '+' || *q == '-' || *q == '.'))))
        return 0;
    if (sep == s) return 0;
    p = sep + 3;
    for (end = p; end < s + len && *end != '/' && *end != '?' && *end != '#'; end++)
      if (*end == '\\') return 0; /* parsers disagree on it: never guess */
  }
  at = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '@') at = q;
  h = at ? at + 1 : p;
  if (h < end && *h == '[') {
    he = memchr(h, ']', (size_t)(end - h));
    if (!he) return 0;
    he++;
  } else {
    for (he = h; he < end && *he != ':'; he++) {}
  }
  if (he < end) { /* a port: digits only */
    if (*he != ':' || !sep) return 0;
    for (const char *q = he + 1; q < end; q++)
      if (*q < '0' || *q > '9') return 0;
  }
  if (he == h || (size_t)(he - h) >= size) return 0;
  for (const char *q = h; q < he; q++) {
    char c = *q;
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '[' || c == ']' ||
          c == ':'))
      return 0;
    host[n++] = c;
  }
  host[n] = '\0';
  return 1;
}

/* host equals domain or is a subdomain of it (both lower case). */
static int cap_host_in (const char *host, const char *domain) {
  size_t h = strlen(host), d = strlen(domain);
  if (h == d) return memcmp(host, domain, h) == 0;
  return h > d && host[h - d - 1] == '.' && memcmp(host + h - d, domain, d) == 0;
}

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

/* Pattern a covers pattern b: every string b matches, a matches. Conservative:
 * matched symbol by symbol (a's * absorbs anything of b, a's ? one non-* symbol,
 * literals match themselves); gives up (not covered) after a step budget. */
static int cap_glob_covers_r (const char *a, const char *b, int *budget) {
  if (--*budget < 0) return 0;
  if (*a == '\0') return *b == '\0';
  if (*a == '*') {
    for (const char *t = b;; t++) {
      if (cap_glob_covers_r(a + 1, t, budget)) return 1;
      if (!*t || *budget < 0) return 0;
    }
  }
  if (*b == '\0' || *b == '*') return 0;
  if (*a == '?' || (*a == *b && *b != '?')) return cap_glob_covers_r(a + 1, b + 1, budget);
  return 0;
}

static int cap_glob_covers (const char *a, const char *b) {
  int budget = 10000;
  return cap_glob_covers_r(a, b, &budget);
}

static int cap_same (const char *a, const char *b, int ci) {
  if (!ci) return strcmp(a, b) == 0;
  for (; *a && *b; a++, b++) {
    char x = *a, y = *b;
    if (x >= 'a' && x <= 'z') x = (char)(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = (char)(y - 'a' + 'A');
    if (x != y) return 0;
  }
  return *a == *b;
}

/* Whether entry x of a child is within the list of the parent, per kind. */
static int cap_entry_within (int k, const cap_sval *parent, const char *x) {
  for (int i = 0; i < parent->n; i++) {
    const char *p = parent->list[i];
    switch (cap_keys[k].kind) {
    case K_SET:
      if (cap_same(p, x, cap_keys[k].ci)) return 1;
      break;
    case K_GLOBS:
      if (cap_glob_covers(p, x)) return 1;
      break;
    case K_HOSTS:
      if (cap_host_in(x, p)) return 1;
      break;
    }
  }
  return 0;
}

/* "'a', 'b'" for messages, cut short when long. */
static void cap_join (char *buf, size_t size, char **list, int n) {
  size_t used = 0;
  buf[0] = '\0';
  if (n == 0) snprintf(buf, size, "none");
  for (int i = 0; i < n && used + 1 < size; i++) {
    int w = snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "", list[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (used >= size && size > 4) memcpy(buf + size - 4, "...", 4);
}

/* }====================================================== */

/* {====================================================== parsing */

static int cap_key_index (const char *name) {
  for (int k = 0; k < CAP_S_N; k++)
    if (strcmp(cap_keys[k].name, name) == 0) return k;
  return -1;
}

/* The string at idx, checked; NULL with err set. */
static const char *cap_str_arg (lua_State *L, int idx, size_t *len, const char *key, char *err,
                                size_t errlen) {
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING) {
    snprintf(err, errlen, "scope.%s must be a string", key);
    return NULL;
  }
  s = lua_tolstring(L, idx, len);
  if (strlen(s) != *len || *len > CAP_MAX_STR) {
    snprintf(err, errlen, "scope.%s must be a string without NUL, at most %d bytes", key, CAP_MAX_STR);
    return NULL;
  }
  return s;
}

static int cap_parse_value (lua_State *L, int idx, int k, cap_sval *v, char *err, size_t errlen) {
  const char *key = cap_keys[k].name;
  size_t len;
  const char *s;
  v->set = 1;
  switch (cap_keys[k].kind) {
  case K_PREFIX:
  case K_FIXED:
    if (!(s = cap_str_arg(L, idx, &len, key, err, errlen))) return 0;
    if (cap_keys[k].kind == K_PREFIX && cap_dot_segment(s, len)) {
      snprintf(err, errlen, "scope.prefix '%s' has a '.' or '..' path segment", s);
      return 0;
    }
    if (!(v->str = cap_strndup(s, len))) goto oom;
    v->len = len;
    return 1;
  case K_STICKY:
    if (lua_type(L, idx) != LUA_TBOOLEAN) {
      snprintf(err, errlen, "scope.%s must be a boolean", key);
      return 0;
    }
    v->num = lua_toboolean(L, idx);
    return 1;
  case K_MIN: {
    int isint;
    v->num = lua_tointegerx(L, idx, &isint);
    if (lua_type(L, idx) != LUA_TNUMBER || !isint || v->num < 0) {
      snprintf(err, errlen, "scope.%s must be an integer >= 0", key);
      return 0;
    }
    return 1;
  }
  default: { /* a list of strings */
    lua_Integer n;
    if (lua_type(L, idx) != LUA_TTABLE) {
      snprintf(err, errlen, "scope.%s must be a list of strings", key);
      return 0;
    }
    n = (lua_Integer)lua_rawlen(L, idx);
    if (n > CAP_MAX_LIST) {
      snprintf(err, errlen, "scope.%s has more than %d entries", key, CAP_MAX_LIST);
      return 0;
    }
    if (!(v->list = calloc((size_t)(n ? n : 1), sizeof(char *)))) goto oom;
    for (lua_Integer i = 1; i <= n; i++) {
      char host[CAP_HOST_MAX];
      lua_rawgeti(L, idx, i);
      s = cap_str_arg(L, -1, &len, key, err, errlen);
      lua_pop(L, 1);
      if (!s) {
        snprintf(err, errlen, "scope.%s must be a list of strings", key);
        return 0;
      }
      if (cap_keys[k].kind == K_HOSTS) {
        if (cap_host_of(s, len, host, sizeof host) == 0 || strchr(s, '/')) {
          snprintf(err, errlen, "scope.%s: '%s' is not a host name", key, s);
          return 0;
        }
        s = host;
        len = strlen(host);
      }
      if (!(v->list[v->n] = cap_strndup(s, len))) goto oom;
      if (cap_keys[k].ci) /* one spelling: HTTP methods in upper case */
        for (char *c = v->list[v->n]; *c; c++)
          if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
      v->n++;
    }
    return 1;
  }
  }
oom:
  snprintf(err, errlen, "out of memory");
  return 0;
}

int cap_scope_parse (lua_State *L, int idx, cap_scope *s, char *err, size_t errlen) {
  idx = lua_absindex(L, idx);
  if (lua_isnoneornil(L, idx)) return 1;
  if (lua_type(L, idx) != LUA_TTABLE) {
    snprintf(err, errlen, "scope must be a table");
    return 0;
  }
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "stack overflow");
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int k;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      snprintf(err, errlen, "scope keys must be strings");
      return 0;
    }
    k = cap_key_index(lua_tostring(L, -2));
    if (k < 0) {
      if (!s->unknown && !(s->unknown = cap_strndup(lua_tostring(L, -2), strlen(lua_tostring(L, -2))))) {
        lua_pop(L, 2);
        snprintf(err, errlen, "out of memory");
        return 0;
      }
    } else if (!cap_parse_value(L, lua_gettop(L), k, &s->v[k], err, errlen)) {
      lua_pop(L, 2);
      return 0;
    }
    lua_pop(L, 1);
  }
  return 1;
}

void cap_scope_push (lua_State *L, const cap_scope *s) { /* may raise */
  lua_createtable(L, 0, 4);
  for (int k = 0; k < CAP_S_N; k++) {
    const cap_sval *v = &s->v[k];
    if (!v->set) continue;
    switch (cap_keys[k].kind) {
    case K_PREFIX:
    case K_FIXED:
      lua_pushlstring(L, v->str, v->len);
      break;
    case K_STICKY:
      lua_pushboolean(L, (int)v->num);
      break;
    case K_MIN:
      lua_pushinteger(L, v->num);
      break;
    default:
      lua_createtable(L, v->n, 0);
      for (int i = 0; i < v->n; i++) {
        lua_pushstring(L, v->list[i]);
        lua_rawseti(L, -2, i + 1);
      }
      json_push_array_mt(L);
      lua_setmetatable(L, -2);
    }
    lua_setfield(L, -2, cap_keys[k].name);
  }
}

/* }====================================================== */

/* {====================================================== check, narrow, covers */

int cap_scope_allows (const cap_scope *s, int k, const char *x, size_t len, char *why, size_t whylen) {
  const cap_sval *v = &s->v[k];
  char list[200], host[CAP_HOST_MAX];
  int shown = (int)(len > 120 ? 120 : len);
  if (!v->set) return 1;
  switch (cap_keys[k].kind) {
  case K_PREFIX:
    if (cap_dot_segment(x, len)) {
      snprintf(why, whylen, "'%.*s' has a '.' or '..' path segment", shown, x);
      return 0;
    }
    if (len < v->len || memcmp(x, v->str, v->len) != 0) {
      snprintf(why, whylen, "'%.*s' is outside prefix '%s'", shown, x, v->str);
      return 0;
    }
    return 1;
  case K_FIXED:
    if (len != v->len || memcmp(x, v->str, len) != 0) {
      snprintf(why, whylen, "'%.*s' is not %s '%s'", shown, x, cap_keys[k].name, v->str);
      return 0;
    }
    return 1;
  case K_HOSTS:
    if (strlen(x) != len || !cap_host_of(x, len, host, sizeof host)) {
      snprintf(why, whylen, "'%.*s' has no host name to check against %s", shown, x, cap_keys[k].name);
      return 0;
    }
    if (!cap_entry_within(k, v, host)) {
      cap_join(list, sizeof list, v->list, v->n);
      snprintf(why, whylen, "host '%s' is not within %s %s", host, cap_keys[k].name, list);
      return 0;
    }
    return 1;
  case K_SET:
  case K_GLOBS:
    for (int i = 0; i < v->n; i++)
      if (strlen(x) == len && (cap_keys[k].kind == K_SET ? cap_same(v->list[i], x, cap_keys[k].ci)
                                                         : cap_glob_match(v->list[i], x, len)))
        return 1;
    cap_join(list, sizeof list, v->list, v->n);
    if (cap_keys[k].kind == K_GLOBS)
      snprintf(why, whylen, "'%.*s' matches none of %s %s", shown, x, cap_keys[k].name,
               v->n ? list : "(none)");
    else
      snprintf(why, whylen, "'%.*s' is not within %s %s", shown, x, cap_keys[k].name, list);
    return 0;
  default:
    snprintf(why, whylen, "scope.%s is not checked against a value", cap_keys[k].name);
    return 0;
  }
}

/* Child value c within parent value p, per kind of key k. */
static int cap_within (int k, const cap_sval *p, const cap_sval *c, char *err, size_t errlen) {
  const char *key = cap_keys[k].name;
  char list[200];
  switch (cap_keys[k].kind) {
  case K_PREFIX:
    if (c->len < p->len || memcmp(c->str, p->str, p->len) != 0) {
      snprintf(err, errlen, "prefix '%s' does not extend '%s'", c->str, p->str);
      return 0;
    }
    return 1;
  case K_FIXED:
    if (c->len != p->len || memcmp(c->str, p->str, p->len) != 0) {
      snprintf(err, errlen, "%s '%s' cannot become '%s'", key, p->str, c->str);
      return 0;
    }
    return 1;
  case K_STICKY:
    if (p->num && !c->num) {
      snprintf(err, errlen, "%s cannot be turned off", key);
      return 0;
    }
    return 1;
  case K_MIN:
    if (c->num > p->num) {
      snprintf(err, errlen, "%s %lld is more than %lld", key, (long long)c->num, (long long)p->num);
      return 0;
    }
    return 1;
  default:
    for (int i = 0; i < c->n; i++)
      if (!cap_entry_within(k, p, c->list[i])) {
        cap_join(list, sizeof list, p->list, p->n);
        snprintf(err, errlen, "%s: '%s' is not within %s", key, c->list[i], list);
        return 0;
      }
    return 1;
  }
}

int cap_scope_narrow (const cap_scope *p, const cap_scope *c, cap_scope *out, char *err, size_t errlen) {
  if (p->unknown || c->unknown) {
    snprintf(err, errlen, "scope key '%s' has no narrowing rule", p->unknown ? p->unknown : c->unknown);
    return 0;
  }
  for (int k = 0; k < CAP_S_N; k++) {
    const cap_sval *from = c->v[k].set ? &c->v[k] : &p->v[k];
    if (p->v[k].set && c->v[k].set && !cap_within(k, &p->v[k], &c->v[k], err, errlen)) return 0;
    if (from->set && !cap_sval_copy(&out->v[k], from)) {
      snprintf(err, errlen, "out of memory");
      return 0;
    }
  }
  return 1;
}

int cap_scope_covers (const cap_scope *p, const cap_scope *c, char *why, size_t whylen) {
  int scoped = p->unknown != NULL;
  for (int k = 0; k < CAP_S_N; k++) scoped |= p->v[k].set;
  if (!scoped) return 1;
  if (p->unknown || c->unknown) {
    snprintf(why, whylen, "scope key '%s' has no narrowing rule", p->unknown ? p->unknown : c->unknown);
    return 0;
  }
  for (int k = 0; k < CAP_S_N; k++) {
    if (!p->v[k].set) continue;
    if (!c->v[k].set) {
      snprintf(why, whylen, "%s is restricted by the parent but not by the child", cap_keys[k].name);
      return 0;
    }
    if (!cap_within(k, &p->v[k], &c->v[k], why, whylen)) return 0;
  }
  return 1;
}

/* }====================================================== */

/* {====================================================== Lua API (core.sandbox) */

static int l_cap_scopes_gc (lua_State *L) {
  cap_scope *s = lua_touserdata(L, 1);
  for (int i = 0; i < 3; i++) cap_scope_free(&s[i]);
  return 0;
}

cap_scope *cap_scope_scratch (lua_State *L) { /* may raise */
  static const char key = 0;
  cap_scope *s;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key) == LUA_TUSERDATA) {
    s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    for (int i = 0; i < 3; i++) cap_scope_free(&s[i]);
    return s;
  }
  lua_pop(L, 1);
  s = lua_newuserdatauv(L, 3 * sizeof *s, 0);
  memset(s, 0, 3 * sizeof *s);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_cap_scopes_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key);
  return s;
}

/* Parses arguments 1 and 2; raises on a malformed scope (misuse). */
static cap_scope *cap_scopes_args (lua_State *L) { /* may raise */
  char err[300];
  cap_scope *s;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  s = cap_scope_scratch(L);
  if (!cap_scope_parse(L, 1, &s[0], err, sizeof err)) luaL_error(L, "parent %s", err);
  if (!cap_scope_parse(L, 2, &s[1], err, sizeof err)) luaL_error(L, "child %s", err);
  return s;
}

/* narrow(parent, child) -> scope | nil, err */
static int l_cap_narrow (lua_State *L) { /* may raise */
  cap_scope *s = cap_scopes_args(L);
  char err[300];
  if (!cap_scope_narrow(&s[0], &s[1], &s[2], err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  cap_scope_push(L, &s[2]);
  return 1;
}

/* covers(parent, child) -> true | false, why */
static int l_cap_covers (lua_State *L) { /* may raise */
  cap_scope *s = cap_scopes_args(L);
  char why[300];
  if (cap_scope_covers(&s[0], &s[1], why, sizeof why)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, why);
  return 2;
}

/* allows(scope, key, value) -> true | false, why */
static int l_cap_allows (lua_State *L) { /* may raise */
  const char *key = luaL_checkstring(L, 2);
  size_t len;
  const char *v = luaL_checklstring(L, 3, &len);
  int k = cap_key_index(key);
  char why[300];
  cap_scope *s;
  if (k < 0) return luaL_error(L, "allows: unknown scope key '%s'", key);
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  s = cap_scope_scratch(L);
  if (!cap_scope_parse(L, 1, &s[0], why, sizeof why)) return luaL_error(L, "allows: %s", why);
  if (cap_keys[k].kind == K_STICKY || cap_keys[k].kind == K_MIN)
    return luaL_error(L, "allows: scope.%s is not checked against a value", key);
  if (cap_scope_allows(&s[0], k, v, len, why, sizeof why)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, why);
  return 2;
}

void cap_luaopen (lua_State *L) { /* may raise */
  lua_pushcfunction(L, l_cap_narrow);
  lua_setfield(L, -2, "narrow");
  lua_pushcfunction(L, l_cap_covers);
  lua_setfield(L, -2, "covers");
  lua_pushcfunction(L, l_cap_allows);
  lua_setfield(L, -2, "allows");
  cap_push_grant_mt(L);
  lua_setfield(L, -2, "GRANT");
}

/* }====================================================== */
