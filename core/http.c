/* http.c — placeholder until the client lands. */
#include "http.h"
#include "lcore.h"
#include <lauxlib.h>
int http_luaopen(lua_State *L) { lua_newtable(L); return 1; }
