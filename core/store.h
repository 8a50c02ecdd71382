/* store.h — the data model: SQL, migrations and every rule of the data model
 * (delivery creation, wake-ups, state transitions, file versioning), in one
 * place that every database driver shares. SQLite is the embedded driver.
 *
 * Lua API (core.store), all names are the data model's field names:
 *
 *   db, err = core.store.open(path [, {synchronous = "normal"|"full"}])
 *   db:close()                 db:migrate([to]) -> schema version (upgrades to `to`, default the latest)
 *   db:begin() db:commit() db:rollback()   nestable; only the outermost commits
 *   db:wipe()                  delete everything, epoch back to 0
 *   db:reboot() -> {epoch=, prev_epoch=, prev_process_count=, disabled=n}
 *        (§7.6) one transaction: init and its tree disabled (the cascade of
 *        process_disable), epoch + 1, an operation row 'reboot'; files, channels and
 *        messages stay; old processes and runs stay in their epoch. The caller
 *        applies the image (a fresh init) in the new epoch.
 *   db:clear_config() -> true  (reload, §1.2) deletes processes, capabilities, grants,
 *        handlers, runs, deliveries, messages, waits, cron, traces, and the files under
 *        mnt/boot/ and mnt/repo/; channel owners are cleared; other files, channels,
 *        alerts and resources stay.
 *   db:meta_get(key) -> string|nil        db:meta_set(key, value)
 *
 *   processes (current epoch unless {all_epochs=true})
 *   db:process_upsert{name=, mode=, content=, executor=, model=, priority=, status=,
 *                     max_duration_ms=, max_retries=, retry_backoff_ms=, resources={names},
 *                     metadata=, parent_process=, tty=, grants={{capability=, name=, config=}}, ...}
 *        -> row   (upsert by name: keeps id, and the parent unless parent_process is given
 *                  (a name or id; json.null clears it): reparenting is real. grants are
 *                  written in the same operation, each as grant_add would. Its channels
 *                  io:stdin|stdout|stderr:<name> are made on first use (a send, handler_add,
 *                  channel_create), stdin with the process's handler; until then messages()
 *                  reads them empty)
 *   db:process_get(name_or_id) -> row | nil, "unknown process 'x'"
 *   db:process_list{status=, all_epochs=} -> rows
 *   db:process_set_status(id, status) -> row   (runnable_since rules)
 *   db:process_disable(id) -> n   T15: the process and its descendants -> disabled,
 *        their pending waits resolved, and child:exited (exit_code 2) posted for each
 *        that had not completed. n = processes disabled.
 *
 *   process states: waiting, runnable, running, blocked, suspended, completed, disabled
 *   (the transition map T1-T20 of cogos-spec §2.2 is at the top of store_run.c).
 *   child:exited: posted ONCE, when a child finishes for good (one_shot completed, or
 *   failed with no retries left; an idle daemon reaped; a kill/disable), on channel
 *   spawn:<child_id>→<parent_id> (U+2192; created when missing: owner the child, type
 *   spawn), sender the child, in
 *   the same transaction and with the normal send rules (deliveries, wake-ups, waits):
 *     {type="child:exited", process_id, process_name, exit_code, run_id, error, duration_ms}
 *   exit_code 0 completed, 1 failed or timed out, 2 killed/disabled, 3 throttled;
 *   error at most 1000 bytes. A process without parent_process posts nothing.
 *
 *   capabilities and grants
 *   db:capability_upsert{name=, description=, instructions=, handler=, schema=, enabled=} -> row
 *   db:capability_get(name) -> row | nil, "unknown capability 'x'"
 *   db:capability_list() -> rows
 *   db:grant_add(process_id, {capability=, name=, config=}) -> row   (upsert by process+name)
 *   db:grants(process_id) -> rows {id, process, capability (type name), name, config}
 *
 *   channels, messages, handlers
 *   db:channel_create(name [, {owner=, schema=, channel_type=}]) -> row, created
 *        (never clobbers an existing channel's owner, schema or closed state)
 *   db:channel_get(name) -> row | nil, "unknown channel 'x'"
 *   db:channel_list() -> rows
 *        schema: a registered schema's name, or a definition: a field dict
 *        {a = "number", b = {c = "list[point]"}} or {fields = {...}}, stored as
 *        {fields = ...}. Types: string, number (bool rejected), bool, list, dict,
 *        list[T], a nested field dict, a registered schema's name; an unknown type
 *        name fails ("unknown type 'object'").
 *   db:channel_close(name, process_id) -> row | nil, "only the channel owner can close it"
 *   db:schema_upsert(name, definition) -> row {id, name, definition={fields=}, ...}
 *        (may refer to itself: list[name])
 *   db:schema_get(name) -> row | nil, "unknown schema 'x'"     db:schema_list() -> rows
 *   db:send(channel, payload [, {sender_process=, sender_run_id=, idempotency_key=, trace_id=}])
 *        -> {id=, channel=, deliveries=n, woken={process ids}, duplicate=bool}
 *           | nil, "unknown channel 'x'" | nil, "payload must be a JSON object"
 *           | nil, "channel 'x' is closed"
 *           | nil, "payload does not match the schema of 'x': a.b[2]: expected number, got string"
 *        (strict: every field required, "x: missing field", "x: unexpected field").
 *        One transaction: the message, one delivery per matching enabled handler
 *        (exact channel, glob pattern, predicate), and the wake rules for each
 *        recipient: a waiting process without a pending wait -> runnable (T3); a
 *        child:exited message resolves the recipient's pending wait (T4, below); a
 *        process with a pending wait is not woken by anything else (its deliveries
 *        accumulate). The wake callback (store_set_wake) runs after the commit for
 *        every process made runnable, and for every running process whose wait resolved.
 *        Messages the rules post themselves (child:exited, ticks, cron) skip the
 *        schema and closed checks.
 *   db:messages(channel, {limit=100, since=ts}) -> rows (newest first; with since: oldest first)
 *   db:handler_add(process_id, channel_or_pattern [, {predicate = "lua expression"}]) -> row
 *        A name with * or ? is a glob pattern (fnmatch) matched against the channel name at
 *        each send (the channel need not exist); otherwise the channel must exist.
 *        The predicate is a Lua expression over `payload` (sandbox_predicate): a
 *        message it rejects gets a 'skipped' delivery (bookkeeping, never run); an
 *        error counts as no match and is kept in the handler's last_error.
 *        Idempotent per (process, channel or pattern); re-adding sets the predicate.
 *        A handler receives exactly the messages sent after it was created.
 *   db:handler_remove(id) -> true | nil, "unknown handler 'x'"
 *   db:handler_list{process=id} -> rows {id, process, channel (name or pattern),
 *        channel_id, pattern, predicate, enabled, epoch, last_error, created_at}
 *   db:reconcile() -> {deliveries=n, woken=n, reaped=n}   creates every missing delivery of
 *        every enabled handler (messages after its created_at, no cap) with the wake rules
 *        above (child:exited deliveries resolve waits here too). Set-based: one
 *        statement for all exact handlers. Then idle reaping: a waiting daemon with an
 *        idle_timeout_ms, nothing pending (delivery or wait) and idle longer than that
 *        since its last status change (its last run's end, its creation) -> completed,
 *        child:exited (exit_code 0) to its parent; reaped counts them.
 *
 *   waits (T4, T14)
 *   db:wait_add{process=id | run=id, type="wait"|"wait_any"|"wait_all", pending={child ids}}
 *        -> row {id, run, process, type, status, pending, created_at, resolved_at}
 *        Run-linked when run is given, process-linked otherwise. pending holds
 *        process ids that have a parent (their exit channel is spawn:<id>→<parent>; the
 *        waiter may be that parent or another process, e.g. a collector). Those whose
 *        child:exited is already there are not waited for (the row may come back
 *        resolved at once); the waiter gets a handler on the exit channel of every
 *        other one. Resolution, on child:exited deliveries only: the
 *        sender leaves pending; wait and wait_any resolve, wait_all when nothing is
 *        left. When no condition of the process is pending any more: a running process
 *        (a lua run parked in its coroutine) keeps its status and the wake callback
 *        fires (the scheduler resumes the coroutine); a waiting one becomes runnable.
 *   db:wait_get(process) -> the pending condition (process-linked first, then the newest
 *        run-linked) | nil
 *   db:wait_results(process) -> {children = {child_id = child:exited payload}} for the
 *        children (parent_process) that have exited
 *
 *   resources (dispatch gating)
 *   db:resource_upsert{name=, resource_type="pool"|"consumable", capacity=, period_ms=,
 *        metadata=} -> row {..., used=, remaining=}
 *   db:resource_list() -> rows {id, name, resource_type, capacity, period_ms, used, remaining}
 *        A process's `resources` (process_upsert) lists resource names; each run needs
 *        one unit of each. Pools are held by the run until run_finish; consumables are
 *        spent per run and refill at each period boundary (multiples of period_ms).
 *   db:unblock([now_ms]) -> n   blocked processes whose resources are available and
 *        whose required_tags a running executor carries -> runnable (wake callback).
 *        run_finish does this when it releases a pool.
 *
 *   cron and ticks
 *   db:cron_add{expression=, channel=, payload={}, enabled=true} -> row
 *        | nil, "invalid cron expression 'x': ..."   (5 fields: minute hour
 *        day-of-month month weekday; each a comma list of *, a or a-b, each with an
 *        optional /n step (a/n: from a to the end); weekday 0-7,
 *        7 = Sunday; day-of-month and weekday both restricted: either matches).
 *        Upsert by (expression, channel).
 *   db:cron_list() -> rows {id, expression, channel, channel_name, payload, enabled,
 *        last_run, last_fired_minute, created_at}
 *   db:cron_set_enabled(id, bool) -> row    db:cron_delete(id) -> true
 *        | nil, "unknown cron rule 'x'"
 *   db:cron_fire([now_ms]) -> {messages=n}  one transaction: system:tick:minute once per
 *        UTC minute and system:tick:hour once per hour (meta tick:minute / tick:hour),
 *        and each enabled rule matching the minute once (cron.last_fired_minute), so
 *        a restart neither repeats nor skips the current minute; channels auto-created.
 *
 *   scheduling and runs
 *   db:runnable(limit) -> rows {id, name, priority, runnable_since (ISO)}   (current epoch;
 *        a failed one_shot waiting out its retry_at is left out until then). Empty during
 *        the throttle cooldown: while meta scheduler:throttled_at (stamped by a run that
 *        ends throttled) is younger than meta scheduler:throttle_cooldown_ms (300000 when
 *        unset; 0: off), nothing new is dispatched.
 *   db:dispatch(process_id [, node_id]) -> run | nil, err ; one transaction:
 *        required_tags (T6, store_executor.c): when node_id (an executor_register'ed node)
 *        lacks some, nil, "node 'n' lacks the tags ..." if another running node carries
 *        them all (nothing changes), else -> blocked, one message on
 *        system:executor:error:missing-tags {type="executor:missing-tags", process_id,
 *        process_name, required_tags, missing_tags (those node_id lacks), node_id}, and
 *        nil, "blocked: no running node carries the tags process 'x' requires (a, b)";
 *        a process whose resources are not available -> blocked, and
 *        nil, "blocked: resource 'x' exhausted" (or "blocked: unknown resource 'x'");
 *        else process runnable -> running, run created (status running, lease node_id),
 *        the oldest pending delivery -> queued with this run. The run row carries the
 *        triggering message as run.message (id) plus run.channel and run.payload.
 *   db:run_finish(run_id, {status=completed|failed|timeout|suspended|throttled, tokens_in=,
 *        tokens_out=, cost_usd=, duration_ms=, error=, model_version=, result=}) -> process row
 *        One transaction: run recorded, its deliveries delivered, its pools released,
 *        the process transition (an out-of-band disable/suspend wins; suspended (a run
 *        that waits) -> waiting; daemon -> runnable with backlog else waiting, but the
 *        third failed/timeout/throttled run in a row -> suspended with a critical alert
 *        'process:daemon_suspended'; one_shot -> completed, or on failure runnable while
 *        retries remain (retry_at = now + retry_backoff_ms * 2^retry_count; runnable()
 *        hides it until then) else disabled), child:exited when it finished for good.
 *        A throttled run also starts the throttle cooldown (see runnable).
 *   db:reap([now_ms]) -> n   running runs older than their process's max_duration_ms
 *        (15 min when unset) or whose heartbeat_at is older than 15 min -> timeout,
 *        error "run exceeded its maximum duration", the process transition of a failure.
 *   db:heartbeat(node_id) -> n   refreshes heartbeat_at of the node's running runs (and the
 *        node's executor row: a stale one is idle again); reap also marks executors silent
 *        for 3 heartbeat intervals stale
 *   db:recover(node_id) -> n   runs left running by a dead node: failed, deliveries pending
 *        again; its executor row dead
 *   db:executor_register / executor_list / executor_set_status: the executor registry of
 *        the nodes and their tags (store_executor.c)
 *   db:run_get(id) -> row | nil, "unknown run 'x'"
 *   db:run_list{process=name_or_id, limit=20} -> rows (newest first)
 *
 *   files (versioned; an identical write makes no new version)
 *   db:file_write(key, content [, {source=, run_id=, read_only=}])
 *        -> {id=, key=, version=, created=bool, changed=bool}
 *   db:file_get(key) -> {id, key, version, content, source, read_only, created_at, ...}
 *                     | nil, "unknown file 'k'"
 *   db:file_list{prefix=, limit=} -> rows {key, version, updated_at, size}
 *   db:file_history(key) -> rows (versions ascending) | nil, "unknown file 'k'"
 *   db:file_delete(key) -> true | nil, "unknown file 'k'"
 *
 * Expected failures return nil, message; misuse (wrong argument types) raises.
 */
#ifndef COGOS_STORE_H
#define COGOS_STORE_H

#include <lua.h>

typedef struct store store_t;

/* Called after a commit for each process the commit made runnable. */
typedef void (*store_wake_fn)(void *ud, const char *process_id);

/* The store behind the db userdata at idx (raises if it is not one). */
store_t *store_check(lua_State *L, int idx);
void store_set_wake(store_t *s, store_wake_fn fn, void *ud);
/* Group commit. Between open and close (the node brackets each slice of a
 * task with them) operations share one transaction, begun by the first and
 * committed by the close; each stays atomic (a savepoint) and wake callbacks
 * run after the group's commit. Nests. close: 0, or -1 when the commit
 * failed and the group's writes are gone (s->err). */
void store_group_open(store_t *s);
int store_group_close(store_t *s);
const char *store_error(store_t *s);

#endif
