/* sys.c — placeholder until sys lands. */
#include "sys.h"
#include "lcore.h"
#include <lauxlib.h>
int sys_luaopen(lua_State *L) { lua_newtable(L); return 1; }
