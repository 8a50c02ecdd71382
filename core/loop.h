/* loop.h — the node's single libuv loop. */
#ifndef COGOS_LOOP_H
#define COGOS_LOOP_H

#include <uv.h>

/* The loop every module shares (created on first use). */
uv_loop_t *loop_get(void);

/* Closes remaining handles and the loop; safe to call when never used. */
void loop_close(void);

#endif
