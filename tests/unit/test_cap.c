/* test_cap.c — the scope algebra of grants (cap.h): parsing, checks, narrowing, covering. */
#include "cap.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>

#include <string.h>

/* Parses the Lua table constructor src (or "nil") into s; 1 on success. */
static int parse (lua_State *L, const char *src, cap_scope *s, char *err, size_t errlen) {
  int ok;
  char code[512];
  snprintf(code, sizeof code, "return %s", src);
  if (luaL_dostring(L, code) != LUA_OK) {
    snprintf(err, errlen, "lua: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  memset(s, 0, sizeof *s);
  ok = cap_scope_parse(L, -1, s, err, errlen);
  lua_pop(L, 1);
  return ok;
}

/* narrow(parent, child): 1 when allowed; err holds the reason otherwise. */
static int narrows (lua_State *L, const char *parent, const char *child, char *err, size_t errlen) {
  cap_scope p, c, out;
  int ok = parse(L, parent, &p, err, errlen) && parse(L, child, &c, err, errlen);
  memset(&out, 0, sizeof out);
  if (ok) ok = cap_scope_narrow(&p, &c, &out, err, errlen);
  cap_scope_free(&p);
  cap_scope_free(&c);
  cap_scope_free(&out);
  return ok;
}

static int covered (lua_State *L, const char *parent, const char *child) {
  cap_scope p, c;
  char why[300];
  int ok = parse(L, parent, &p, why, sizeof why) && parse(L, child, &c, why, sizeof why);
  if (ok) ok = cap_scope_covers(&p, &c, why, sizeof why);
  cap_scope_free(&p);
  cap_scope_free(&c);
  return ok;
}

static int allowed (lua_State *L, const char *scope, int key, const char *v) {
  cap_scope s;
  char why[300];
  int ok = parse(L, scope, &s, why, sizeof why) && cap_scope_allows(&s, key, v, strlen(v), why, sizeof why);
  cap_scope_free(&s);
  return ok;
}

TEST(test_glob_match) {
  CHECK(cap_glob_match("io:*", "io:a:b", 6));
  CHECK(cap_glob_match("chan?", "chan1", 5));
  CHECK(!cap_glob_match("chan?", "chan12", 6));
  CHECK(cap_glob_match("*", "", 0));
  CHECK(!cap_glob_match("a", "a\0b", 3)); /* a NUL inside the subject does not end it */
}

TEST(test_narrowing) {
  lua_State *L = luaL_newstate();
  char err[300];
  CHECK(narrows(L, "{ops = {'read', 'write'}}", "{ops = {'read'}}", err, sizeof err));
  CHECK(!narrows(L, "{ops = {'read'}}", "{ops = {'read', 'write'}}", err, sizeof err));
  CHECK_STR(err, "ops: 'write' is not within 'read'");
  CHECK(narrows(L, "{prefix = 'a/'}", "{prefix = 'a/b/'}", err, sizeof err));
  CHECK(!narrows(L, "{prefix = 'a/'}", "{prefix = 'ab/'}", err, sizeof err));
  CHECK_STR(err, "prefix 'ab/' does not extend 'a/'");
  CHECK(!narrows(L, "{prefix = 'a/'}", "{prefix = 'a/../b/'}", err, sizeof err));
  CHECK_STR(err, "scope.prefix 'a/../b/' has a '.' or '..' path segment");
  /* glob coverage, conservative */
  CHECK(narrows(L, "{names = {'*'}}", "{names = {'a*b?'}}", err, sizeof err));
  CHECK(narrows(L, "{names = {'a*'}}", "{names = {'a*b*'}}", err, sizeof err));
  CHECK(narrows(L, "{names = {'a?c'}}", "{names = {'a?c', 'abc'}}", err, sizeof err));
  CHECK(!narrows(L, "{names = {'a?c'}}", "{names = {'a*c'}}", err, sizeof err));
  CHECK(!narrows(L, "{names = {'abc'}}", "{names = {'a?c'}}", err, sizeof err));
  CHECK(!narrows(L, "{names = {}}", "{names = {'x'}}", err, sizeof err));
  CHECK(narrows(L, "{names = {'x'}}", "{names = {}}", err, sizeof err));
  /* many stars give up (not covered) rather than run long */
  CHECK(!narrows(L, "{names = {'*a*a*a*a*a*a*a*a*a*a*a*a*b'}}",
                 "{names = {'*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c'}}", err, sizeof err));
  /* hosts */
  CHECK(narrows(L, "{hosts = {'Example.COM'}}", "{hosts = {'a.example.com'}}", err, sizeof err));
  CHECK(!narrows(L, "{hosts = {'example.com'}}", "{hosts = {'badexample.com'}}", err, sizeof err));
  CHECK(!narrows(L, "{hosts = {'example.com'}}", "{hosts = {'x/y'}}", err, sizeof err));
  /* sticky, minimum, fixed, case-blind methods */
  CHECK(!narrows(L, "{read_only = true}", "{read_only = false}", err, sizeof err));
  CHECK(narrows(L, "{read_only = false}", "{read_only = true}", err, sizeof err));
  CHECK(!narrows(L, "{max_bytes = 5}", "{max_bytes = 6}", err, sizeof err));
  CHECK_STR(err, "max_bytes 6 is more than 5");
  CHECK(!narrows(L, "{key = 'a'}", "{key = 'b'}", err, sizeof err));
  CHECK(narrows(L, "{methods = {'get'}}", "{methods = {'GET'}}", err, sizeof err));
  CHECK(!narrows(L, "{x = 1}", "{}", err, sizeof err));
  CHECK_STR(err, "scope key 'x' has no narrowing rule");
  /* malformed */
  CHECK(!narrows(L, "{ops = 'read'}", "{}", err, sizeof err));
  CHECK_STR(err, "scope.ops must be a list of strings");
  CHECK(!narrows(L, "{max_bytes = -1}", "{}", err, sizeof err));
  CHECK(!narrows(L, "{[1] = 'x'}", "{}", err, sizeof err));
  CHECK(!narrows(L, "{prefix = 'a\\0b'}", "{}", err, sizeof err));
  lua_close(L);
}

TEST(test_covers) {
  lua_State *L = luaL_newstate();
  CHECK(covered(L, "nil", "{prefix = 'x'}"));
  CHECK(covered(L, "{}", "{}"));
  CHECK(!covered(L, "{prefix = '/data/'}", "{}"));
  CHECK(covered(L, "{prefix = '/data/', ops = {'read'}}", "{prefix = '/data/sub/', ops = {'read'}}"));
  CHECK(!covered(L, "{prefix = '/data/', ops = {'read'}}", "{prefix = '/data/sub/'}"));
  CHECK(!covered(L, "{prefix = '/data/', ops = {'read'}}", "{prefix = '/other/', ops = {'read'}}"));
  CHECK(!covered(L, "{prefix = '/data/', ops = {'read'}}", "{prefix = '/data/', ops = {'read', 'write'}}"));
  lua_close(L);
}

TEST(test_allows) {
  lua_State *L = luaL_newstate();
  CHECK(allowed(L, "{prefix = 'notes/'}", CAP_S_PREFIX, "notes/a"));
  CHECK(!allowed(L, "{prefix = 'notes/'}", CAP_S_PREFIX, "notes/../secret"));
  CHECK(!allowed(L, "{prefix = 'notes/'}", CAP_S_PREFIX, "notes/.."));
  CHECK(!allowed(L, "{prefix = 'notes/'}", CAP_S_PREFIX, "/notes/a"));
  CHECK(allowed(L, "{prefix = 'notes/'}", CAP_S_PREFIX, "notes/..a"));
  CHECK(allowed(L, "{}", CAP_S_PREFIX, "anything/../x")); /* no prefix, nothing to escape */
  CHECK(allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "https://api.example.com:443/x?y#z"));
  CHECK(allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "http://user:pw@example.com/"));
  CHECK(!allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "http://example.com@evil.com/"));
  CHECK(!allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "http://example.com:80@evil.com/"));
  CHECK(!allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "http://evil.com\\@example.com/"));
  CHECK(!allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "http://example.com:8x/"));
  CHECK(!allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "://example.com/"));
  CHECK(!allowed(L, "{domains = {'example.com'}}", CAP_S_DOMAINS, "http:///"));
  CHECK(allowed(L, "{hosts = {'[::1]'}}", CAP_S_HOSTS, "http://[::1]:8080/"));
  CHECK(allowed(L, "{keys = {'api_*'}}", CAP_S_KEYS, "api_x"));
  CHECK(!allowed(L, "{keys = {}}", CAP_S_KEYS, "api_x"));
  CHECK(allowed(L, "{methods = {'get'}}", CAP_S_METHODS, "GET"));
  lua_close(L);
}

int main (void) {
  RUN(test_glob_match);
  RUN(test_narrowing);
  RUN(test_covers);
  RUN(test_allows);
  return unit_report();
}
