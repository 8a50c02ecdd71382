/* lstore.c — placeholder until the store lands. */
#include "store.h"
#include "lcore.h"
#include <lauxlib.h>
store_t *store_check(lua_State *L, int idx) { luaL_error(L, "store: not implemented"); return NULL; }
void store_set_wake(store_t *s, store_wake_fn fn, void *ud) {}
int store_luaopen(lua_State *L) { lua_newtable(L); return 1; }
