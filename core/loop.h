/* loop.h — the node's single libuv loop.
 *
 * Lua API (core.loop):
 *   run()                     run until stop() or nothing is left to do
 *   stop()
 *   timer(ms, repeat_ms, fn) -> handle with :stop()
 *   on_signal(name, fn)       "SIGINT", "SIGTERM": fn() runs on the loop
 *   listen(path, fn)          unix socket; fn(data) for every message received
 *   notify(path, data) -> true | nil, err   (connect, write, close; for other processes)
 */
#ifndef COGOS_LOOP_H
#define COGOS_LOOP_H

#include <uv.h>

/* The loop every module shares (created on first use). */
uv_loop_t *loop_get(void);

/* Closes remaining handles and the loop; safe to call when never used.
 * Convention: every handle a module may leave open is malloc'd with the uv
 * handle as its first member, so this can free it. */
void loop_close(void);

#endif
