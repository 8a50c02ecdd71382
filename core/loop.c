/* loop.c — placeholder until the loop lands. */
#include "loop.h"
#include "lcore.h"
#include <lauxlib.h>
static uv_loop_t *loop;
uv_loop_t *loop_get(void) { if (!loop) { static uv_loop_t l; uv_loop_init(&l); loop = &l; } return loop; }
void loop_close(void) { if (loop) { uv_loop_close(loop); loop = NULL; } }
int loop_luaopen(lua_State *L) { lua_newtable(L); return 1; }
