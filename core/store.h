/* store.h — the data model: SQL, migrations and every rule of the data model
 * (delivery creation, wake-ups, state transitions, file versioning), in one
 * place that every database driver shares. SQLite is the embedded driver.
 *
 * Lua API (core.store), all names are the data model's field names:
 *
 *   db, err = core.store.open(path [, {synchronous = "normal"|"full"}])
 *   db:close()                 db:migrate() -> schema version
 *   db:begin() db:commit() db:rollback()   nestable; only the outermost commits
 *   db:wipe()                  delete everything, epoch back to 0
 *   db:meta_get(key) -> string|nil        db:meta_set(key, value)
 *
 *   processes (current epoch unless {all_epochs=true})
 *   db:process_upsert{name=, mode=, content=, executor=, model=, priority=, status=,
 *                     max_duration_ms=, max_retries=, metadata=, parent_process=, tty=, ...}
 *        -> row   (upsert by name: keeps id and parent; ensures io:stdin|stdout|stderr:<name>
 *                  and a handler of the process on io:stdin:<name>)
 *   db:process_get(name_or_id) -> row | nil, "unknown process 'x'"
 *   db:process_list{status=, all_epochs=} -> rows
 *   db:process_set_status(id, status) -> row   (runnable_since rules)
 *   db:process_disable(id) -> n                (cascades to descendants)
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
 *   db:send(channel, payload [, {sender_process=, sender_run_id=, idempotency_key=, trace_id=}])
 *        -> {id=, channel=, deliveries=n, woken={process ids}, duplicate=bool}
 *           | nil, "unknown channel 'x'" | nil, "payload must be a JSON object"
 *        One transaction: the message, one delivery per enabled handler, and the wake-up
 *        (waiting -> runnable) of each handler's process. The wake callback (store_set_wake)
 *        runs after the commit for every process made runnable.
 *   db:messages(channel, {limit=100, since=ts}) -> rows (newest first; with since: oldest first)
 *   db:handler_add(process_id, channel) -> row      (channel must exist; idempotent)
 *   db:handler_remove(id) -> true | nil, "unknown handler 'x'"
 *   db:handler_list{process=id} -> rows
 *
 *   scheduling and runs
 *   db:runnable(limit) -> rows {id, name, priority, runnable_since}   (current epoch)
 *   db:dispatch(process_id [, node_id]) -> run | nil (not runnable) ; one transaction:
 *        process runnable -> running, run created (status running, lease node_id),
 *        the oldest pending delivery -> queued with this run. The run row carries the
 *        triggering message as run.message (id) plus run.channel and run.payload.
 *   db:run_finish(run_id, {status=completed|failed|timeout, tokens_in=, tokens_out=,
 *        cost_usd=, duration_ms=, error=, model_version=, result=}) -> process row
 *        One transaction: run recorded, its deliveries delivered, the process transition
 *        (an out-of-band disable/suspend wins; daemon -> runnable with backlog else waiting;
 *        one_shot -> completed, or on failure runnable while retries remain else disabled).
 *   db:recover(node_id) -> n   runs left running by a dead node: failed, deliveries pending again
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

#endif
