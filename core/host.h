/* host.h — boot the policy Lua state; protected calls with tracebacks. */
#ifndef COGOS_HOST_H
#define COGOS_HOST_H

#include <lua.h>

/* Creates the node's Lua state: standard libraries, `cogos.core` preloaded,
 * package.path limited to <root>/lua (environment variables ignored).
 * Returns NULL on allocation failure. */
lua_State *host_new(const char *root);

/* lua_pcall with a traceback message handler. On error the message (with
 * traceback) is left on the stack. */
int host_pcall(lua_State *L, int nargs, int nresults);

/* Message handler usable with lua_pcall/lua_resume: appends a traceback. */
int host_traceback(lua_State *L);

/* Finds the folder holding lua/, capabilities/ and images/: $COGOS_ROOT,
 * then <exe dir>/.. or <exe dir>/../share/cogos when it holds
 * lua/cogos/main.lua, then COGOS_DATADIR. */
const char *host_root(void);

#endif
