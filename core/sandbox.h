/* sandbox.h — untrusted Lua: one capped lua_State per run.
 *
 * Lua API (core.sandbox):
 *
 *   sb = core.sandbox.new{
 *     memory       = 8 * 1024 * 1024,   -- bytes the sandbox state may hold
 *     instructions = 10000000,          -- VM instruction budget for the whole run
 *     deadline_ms  = 30000,             -- wall clock for the whole run (from new())
 *     output       = 64 * 1024,         -- bytes of captured print output kept per call
 *     slice        = 10000,             -- instructions between forced yields
 *     grants = {                        -- becomes a global per grant
 *       { name = "files", type = "files", description = "...",
 *         scope = { prefix = "notes/", ops = {"read"} },     -- may be empty
 *         methods = { read  = { op = "read",  target = 1, doc = "read(key) -> {...}" },
 *                     write = { op = "write", target = 1, doc = "..." },
 *                     search = { op = "search", target = 1, doc = "..." } } },
 *     },
 *     dispatch = function(grant_name, method, ...) return ... end,  -- node-side call
 *   }
 *   output, err = sb:run(code [, {chunkname = "run_code", event = value, globals = {k = v}}])
 *      output: everything print() wrote (capped), then, when the code raised, the error
 *              with a traceback. err: nil on success, else the error message alone
 *              ("instruction budget exhausted", "memory limit exceeded", "deadline exceeded",
 *              or the code's own error). Globals the code defines persist to the next run().
 *   sb:close()    (also on __gc)
 *   sb:stats() -> {memory=, instructions=}
 *   core.sandbox.predicate(src, payload_json) -> true|false | nil, err  (sandbox_predicate)
 *
 * Inside the sandbox: base (minus load of binary chunks, dofile, loadfile, collectgarbage
 * but "count", getmetatable of non-tables/strings), string (no dump; the string metatable is
 * shared read-only), table, math, utf8, coroutine, os.time/os.date/os.clock, print (captured),
 * json (see json.h), help(x), dir(x), exit(), `event`, and one userdata per grant.
 *
 * Grants: method calls are checked in C against the grant's scope, which lives only in C:
 *   scope.ops    the method's op must be listed (absent = all ops)
 *   scope.prefix the target argument (argument number `target`) must start with it
 *   scope.names  the target must match one of these glob patterns (* and ?)
 * A violation raises "permission denied: files.write: 'x' is outside prefix 'notes/'".
 * Allowed calls deep-copy their arguments into the node state (strings, numbers,
 * booleans, nil, json.null, tables without cycles; size and depth capped), call
 * dispatch(grant_name, method, ...) there, and copy the results back.
 * Recoverable failures come back as nil, err.
 *
 * Limits: the instruction budget and deadline are checked by a count hook every
 * `slice` instructions; C work the code chooses is charged too: table.insert/
 * remove/move/sort/unpack, string.byte, utf8.len and plain string.find by
 * their length up front; string.find/match/gmatch/gsub by the steps of their
 * matcher (same results as Lua's, but a catastrophic pattern exhausts the
 * budget or deadline instead of hanging the node); and whatever grows memory
 * (concatenation, string.rep, ...) by one unit per 64 bytes, with the deadline
 * checked every MiB allocated. When the calling coroutine is run by sched
 * (sched.h), the hook also forces a yield there so the node stays responsive.
 * A kill re-arms the hook on every instruction so pcall cannot swallow it.
 * Not charged: VM instructions whose cost grows with string length without
 * allocating (==, < on long strings), bounded by the memory limit.
 */
#ifndef COGOS_SANDBOX_H
#define COGOS_SANDBOX_H

#include <lua.h>

/* Evaluates a handler's payload predicate: `src` is a Lua expression (or a chunk
 * that returns a value) over the global `payload` (decoded from payload_json),
 * e.g. "payload.priority > 3". Runs in this thread's predicate sandbox: the
 * library above minus print, help, dir, exit and load; no grants; 100 000
 * instructions, 1 MiB beyond the decoded payload, 100 ms. Compiled predicates
 * are cached by source; every call gets a fresh environment, so nothing one
 * call does is seen by the next. Returns 1 (truthy), 0 (falsy) or -1 with a
 * message in err, "predicate: " followed by the syntax or runtime error, the
 * kill ("instruction budget exhausted", "memory limit exceeded", "deadline
 * exceeded") or "payload: bad JSON ...". */
int sandbox_predicate(const char *src, const char *payload_json, size_t len, char *err, size_t errlen);

/* Frees this thread's predicate state (it is made again on the next call). */
void sandbox_predicate_close(void);

/* Deep-copies the value at idx of `from` onto `to`. Returns 1, or 0 with an error
 * message in err (functions, userdata other than json null, cycles, or more than
 * max_bytes of strings/keys in total, or deeper than JSON_MAX_DEPTH). */
int sandbox_copy(lua_State *from, int idx, lua_State *to, size_t max_bytes, char *err, size_t errlen);

#endif
