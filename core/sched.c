/* sched.c — placeholder until the scheduler lands. */
#include "sched.h"
#include "lcore.h"
#include <lauxlib.h>
int sched_can_yield(lua_State *L) { return 0; }
int sched_yield_wait(lua_State *L, lua_KContext ctx, lua_KFunction k) { return luaL_error(L, "sched: cannot yield"); }
int sched_yield_ready(lua_State *L, lua_KContext ctx, lua_KFunction k) { return luaL_error(L, "sched: cannot yield"); }
void sched_resume(lua_State *co, int nargs) {}
void sched_wake(void) {}
int sched_luaopen(lua_State *L) { lua_newtable(L); return 1; }
