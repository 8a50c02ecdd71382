/* json.c — placeholder until the codec lands. */
#include "json.h"
#include "lcore.h"
#include <lauxlib.h>
#include <stdlib.h>
const char json_null_token = 0;
void json_buf_free(json_buf *b) { free(b->data); b->data = NULL; b->len = b->cap = 0; }
int json_encode(lua_State *L, int idx, json_buf *out, unsigned flags, char *err, size_t errlen) { snprintf(err, errlen, "json: not implemented"); return -1; }
int json_decode(lua_State *L, const char *s, size_t len) { lua_pushliteral(L, "json: not implemented"); return 0; }
void json_push_array_mt(lua_State *L) { lua_newtable(L); }
void json_install(lua_State *L) { lua_newtable(L); lua_setglobal(L, "json"); }
int json_luaopen(lua_State *L) { lua_newtable(L); return 1; }
