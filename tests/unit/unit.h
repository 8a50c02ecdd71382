/* unit.h — a tiny test harness for the C core. Each test binary ends with
 * "N passed, N failed" and exits non-zero when anything failed. */
#ifndef COGOS_UNIT_H
#define COGOS_UNIT_H

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;
static const char *unit_current = "";

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (cond) {                                                                         \
      unit_passed++;                                                                    \
    } else {                                                                            \
      unit_failed++;                                                                    \
      fprintf(stderr, "FAIL %s: %s:%d: %s\n", unit_current, __FILE__, __LINE__, #cond); \
    }                                                                                   \
  } while (0)

#define CHECK_STR(a, b)                                                                       \
  do {                                                                                        \
    const char *a_ = (a), *b_ = (b);                                                          \
    if (a_ && b_ && strcmp(a_, b_) == 0) {                                                    \
      unit_passed++;                                                                          \
    } else {                                                                                  \
      unit_failed++;                                                                          \
      fprintf(stderr, "FAIL %s: %s:%d: \"%s\" != \"%s\"\n", unit_current, __FILE__, __LINE__, \
              a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                        \
    }                                                                                         \
  } while (0)

#define TEST(name) static void name(void)
#define RUN(name)  (unit_current = #name, name())

/* check(cond [, message]) for tests written in Lua: counts like CHECK. */
static inline int unit_lua_check (lua_State *L) {
  lua_settop(L, 2);
  if (lua_toboolean(L, 1)) {
    unit_passed++;
  } else {
    unit_failed++;
    luaL_where(L, 1);
    fprintf(stderr, "FAIL %s: %s%s\n", unit_current, lua_tostring(L, -1),
            luaL_optstring(L, 2, "check failed"));
  }
  return 0;
}

static int unit_report (void) {
  printf("%d passed, %d failed\n", unit_passed, unit_failed);
  return unit_failed ? 1 : 0;
}

#endif
