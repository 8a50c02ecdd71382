/* json.h — JSON codec for Lua values, usable on any lua_State (node or sandbox).
 *
 * Why our own and not lua-cjson 2.1.0: Debian's build turns every integer into
 * a float (1 -> 1.0), loses precision past 2^53 and cannot tell [] from {}.
 *
 * Mapping:
 *   object  <-> table without the array metatable (keys sorted on encode)
 *   array   <-> table with the array metatable (decode always sets it; encode
 *               also treats a non-empty table with keys 1..n as an array)
 *   []      <-> empty table with the array metatable; {} <-> empty plain table
 *   null    <-> json_null (a light userdata, `core.json.null`)
 *   numbers: integers stay integers (int64), floats stay floats ("1.0").
 * Depth is capped at JSON_MAX_DEPTH on both sides (cycles are caught by it).
 */
#ifndef COGOS_JSON_H
#define COGOS_JSON_H

#include <lua.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 200

enum { JSON_PRETTY = 1 }; /* encode flags: two-space indentation */

typedef struct json_buf {
  char *data; /* NUL-terminated when len > 0 */
  size_t len, cap;
} json_buf;

void json_buf_free(json_buf *b);

/* Appends the encoding of the value at idx to out. Returns 0, or -1 with a
 * message in err ("cannot encode a function at $.a[2]"). Never raises. */
int json_encode(lua_State *L, int idx, json_buf *out, unsigned flags, char *err, size_t errlen);

/* Decodes s[0..len). Returns 1 with the value pushed, or 0 with an error
 * message pushed ("bad JSON at line 1 col 14: expected ':'"). Raises only on OOM. */
int json_decode(lua_State *L, const char *s, size_t len);

/* The light userdata that stands for null. */
extern const char json_null_token;
#define json_null ((void *)&json_null_token)

/* Pushes this state's array metatable (created on first use, kept in the registry). */
void json_push_array_mt(lua_State *L);

/* Sets global `json` = {encode, decode, null, array, is_array} in L (used for sandboxes). */
void json_install(lua_State *L);

/* Lua module core.json:
 *   encode(v [, {pretty=true}]) -> string | nil, err
 *   decode(s)                  -> value  | nil, err
 *   null, array_mt, array(t) -> t (marks t), is_array(t) -> bool */

#endif
