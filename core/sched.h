/* sched.h — runs as coroutines on the node's loop: dispatch, yields, resumes.
 *
 * A run is a coroutine of the node state. C code that waits (HTTP, timers)
 * yields it with sched_yield_wait and later resumes it with sched_resume;
 * code that only wants to let others go first (a sandbox's forced yield)
 * uses sched_yield_ready and is resumed in the same or the next loop turn.
 *
 * Lua API (core.sched):
 *   spawn(fn, ...)      run fn(...) as a sched coroutine, starting in this loop turn;
 *                       an error is reported with its traceback on stderr
 *   sleep(ms)           inside a sched coroutine: yield for ms milliseconds
 *   in_coroutine()      true inside a sched coroutine
 *   start(db, run_fn, {node_id=, slots=})   the dispatcher: on every wake, claims runnable
 *                       processes (db:runnable, db:dispatch) and runs run_fn(run) for each
 *                       as a coroutine; at most `slots` runs at once
 *   wake()              same as sched_wake()
 */
#ifndef COGOS_SCHED_H
#define COGOS_SCHED_H

#include <lua.h>

/* True when L is a coroutine driven by sched, so the calls below may yield. */
int sched_can_yield(lua_State *L);

/* Yield; something else will call sched_resume(L, n) later. Use as
 * `return sched_yield_wait(L, ctx, k);` from a lua_CFunction. */
int sched_yield_wait(lua_State *L, lua_KContext ctx, lua_KFunction k);

/* Yield and be resumed (with no values) once other ready work has run. */
int sched_yield_ready(lua_State *L, lua_KContext ctx, lua_KFunction k);

/* Resume a coroutine parked by sched_yield_wait with nargs values already
 * pushed on it. Safe to call from any libuv callback. */
void sched_resume(lua_State *co, int nargs);

/* Ask the dispatcher to look for runnable processes in this loop turn. */
void sched_wake(void);

#endif
