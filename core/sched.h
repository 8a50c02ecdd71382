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
 *   start(db, run_fn, {node_id=, slots=64, seed=})   the dispatcher: on every wake, draws
 *                       the free slots from db:runnable(200) by softmax over effective
 *                       priority (priority + 0.1 per minute runnable), without replacement,
 *                       claims them with db:dispatch in one transaction (group commit) and
 *                       runs run_fn(run) for each as a coroutine; at most `slots` runs at
 *                       once. The store's wake callback wakes it in the same loop turn.
 *   wake()              same as sched_wake()
 *   running()           number of runs in flight
 *   select(candidates, slots [, {now_ms=, seed=}]) -> chosen rows in draw order
 *                       the selection alone, over rows {priority=, runnable_since=}
 *                       (at most 200); without seed it uses the dispatcher's generator
 *   seed(n)             reseeds the dispatcher's generator (reproducible draws)
 *   park(process_id) -> results   inside a run: yield until the store's wake callback fires
 *                       for process_id (its wait resolved); returns db:wait_results(process_id)
 *   unpark(process_id, ...) -> bool   resumes a parked run now with these values
 *   parked()            process ids of the parked runs
 */
#ifndef COGOS_SCHED_H
#define COGOS_SCHED_H

#include <lua.h>
#include <stdint.h>

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

/* priority + 0.1 per minute since runnable_since (a store timestamp; NULL or
 * malformed: no boost) at now_ms (ms since the Unix epoch). */
double sched_effective_priority(double priority, const char *runnable_since, int64_t now_ms);

/* Draws k of the n (<= 200) effective priorities ep by softmax (temperature 1)
 * without replacement; writes the indexes in draw order to out and returns
 * how many (min(k, n)). rng is splitmix64 state, advanced. */
int sched_softmax_pick(const double *ep, int n, int k, uint64_t *rng, int *out);

#endif
