/* lcore.c — assembles the `cogos.core` module table. */
#include "lcore.h"
#include "host.h"

#include <lauxlib.h>

#define COGOS_VERSION "0.1.0"

int lcore_open (lua_State *L) {
  static const struct {
    const char *name;
    lua_CFunction open;
  } mods[] = {
      {"json", json_luaopen}, {"store", store_luaopen}, {"sandbox", sandbox_luaopen}, {"http", http_luaopen},
      {"loop", loop_luaopen}, {"sched", sched_luaopen}, {"sys", sys_luaopen},         {"term", term_luaopen},
  };
  lua_createtable(L, 0, 10);
  for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
    lua_pushcfunction(L, mods[i].open);
    lua_call(L, 0, 1);
    lua_setfield(L, -2, mods[i].name);
  }
  lua_pushstring(L, host_root());
  lua_setfield(L, -2, "root");
  lua_pushliteral(L, COGOS_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
