/* lcore.h — the `cogos.core` module: the only door from policy Lua to C. */
#ifndef COGOS_LCORE_H
#define COGOS_LCORE_H

#include <lua.h>

/* Each core module pushes its Lua table (one concern, one prefix). */
int json_luaopen(lua_State *L);    /* json.c    core.json    */
int store_luaopen(lua_State *L);   /* lstore.c  core.store   */
int sandbox_luaopen(lua_State *L); /* sandbox.c core.sandbox */
int http_luaopen(lua_State *L);    /* http.c    core.http    */
int loop_luaopen(lua_State *L);    /* loop.c    core.loop    */
int sched_luaopen(lua_State *L);   /* sched.c   core.sched   */
int sys_luaopen(lua_State *L);     /* sys.c     core.sys     */
int term_luaopen(lua_State *L);    /* term.c    core.term    */

/* luaopen function of `cogos.core`: a table with the modules above plus
 * `root` (see host_root) and `version`. */
int lcore_open(lua_State *L);

#endif
