/* host.c — boot the policy Lua state; protected calls with tracebacks. */
#include "host.h"
#include "lcore.h"

#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef COGOS_DATADIR
#define COGOS_DATADIR "/usr/local/share/cogos"
#endif

static char root_buf[PATH_MAX];

static int has_main (const char *dir) {
  char p[PATH_MAX];
  if (snprintf(p, sizeof p, "%s/lua/cogos/main.lua", dir) >= (int)sizeof p) return 0;
  return access(p, R_OK) == 0;
}

const char *host_root (void) {
  if (root_buf[0]) return root_buf;
  const char *env = getenv("COGOS_ROOT");
  if (env && *env) {
    snprintf(root_buf, sizeof root_buf, "%s", env);
    return root_buf;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      /* the source tree (build/cogos), then a relocated install (bin/cogos) */
      static const char *const rel[] = {"/..", "/../share/cogos"};
      for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char up[PATH_MAX];
        if (snprintf(up, sizeof up, "%s%s", exe, rel[i]) < (int)sizeof up && has_main(up) &&
            realpath(up, root_buf))
          return root_buf;
      }
    }
  }
  snprintf(root_buf, sizeof root_buf, "%s", COGOS_DATADIR);
  return root_buf;
}

int host_traceback (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int host_pcall (lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, host_traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

lua_State *host_new (const char *root) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  memset(lua_getextraspace(L), 0, LUA_EXTRASPACE); /* copied into every thread */
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", root, root);
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, lcore_open);
  lua_setfield(L, -2, "cogos.core");
  lua_pop(L, 2);
  return L;
}
