/* main.c — the cogos binary: `cogos`, `cogtainer` and `cogent` by argv[0]. */
#include "host.h"
#include "loop.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

int main (int argc, char **argv) {
  const char *prog = strrchr(argv[0], '/');
  prog = prog ? prog + 1 : argv[0];
  lua_State *L = host_new(host_root());
  if (L == NULL) {
    fprintf(stderr, "cogos: out of memory\n");
    return 1;
  }
  int code = 1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cogos.main");
  if (host_pcall(L, 1, 1) == LUA_OK) {
    lua_pushstring(L, prog);
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    if (host_pcall(L, 2, 1) == LUA_OK) {
      code = (int)luaL_optinteger(L, -1, 0);
      lua_pop(L, 1);
    } else {
      fprintf(stderr, "cogos: internal error: %s\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else {
    fprintf(stderr, "cogos: cannot load cogos.main (root %s): %s\n", host_root(), lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_close(L);
  loop_close();
  return code;
}
