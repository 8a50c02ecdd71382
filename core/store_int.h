/* store_int.h — shared by the store's files: the store record, the driver
 * interface, the statement cache, transactions, rows and small helpers.
 * Nothing here is part of the Lua API; store.h is. */
#ifndef COGOS_STORE_INT_H
#define COGOS_STORE_INT_H

#include "json.h"
#include "store.h"

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* {============ driver interface */

enum { STORE_DONE = 0, STORE_ROW = 1, STORE_ERR = -1 };      /* step results */
enum { STORE_TNULL, STORE_TINT, STORE_TFLOAT, STORE_TTEXT }; /* column types */

typedef struct store_stmt store_stmt; /* a driver's prepared statement */

typedef struct store_driver {
  const char *name;
  /* Opens path into s->db; on failure returns -1 with a message in s->err. */
  int (*open)(store_t *s, const char *path, int sync_full);
  void (*close)(store_t *s);
  /* SQL uses `?` placeholders; a driver may rewrite them (PostgreSQL: $n). */
  store_stmt *(*prepare)(store_t *s, const char *sql);
  void (*finalize)(store_stmt *st);
  /* Text is not copied: it must stay valid until the statement is stepped. */
  void (*bind_null)(store_stmt *st, int i);
  void (*bind_int)(store_stmt *st, int i, int64_t v);
  void (*bind_float)(store_stmt *st, int i, double v);
  void (*bind_text)(store_stmt *st, int i, const char *v, size_t n);
  int (*step)(store_stmt *st); /* STORE_ROW, STORE_DONE or STORE_ERR */
  void (*reset)(store_stmt *st);
  int (*column_count)(store_stmt *st);
  const char *(*column_name)(store_stmt *st, int i);
  int (*column_type)(store_stmt *st, int i);
  int64_t (*column_int)(store_stmt *st, int i);
  double (*column_float)(store_stmt *st, int i);
  const char *(*column_text)(store_stmt *st, int i, size_t *len);
  int64_t (*changes)(store_t *s);           /* rows changed by the last statement */
  int (*exec)(store_t *s, const char *sql); /* a script of statements; 0 or -1 */
  int (*begin)(store_t *s);                 /* outermost transaction (a write lock) */
  int (*commit)(store_t *s);
  int (*rollback)(store_t *s);
  const char *(*errmsg)(store_t *s);
} store_driver;

const store_driver *store_sqlite_driver(void);

/* Lua methods of the db object defined outside lstore.c: store_obs.c's table
 * (events, alerts, budgets), which also lists the executor registry's
 * (store_executor.c) since lstore.c merges only that one. */
extern const luaL_Reg store_obs_methods[];
extern const luaL_Reg store_executor_methods[];

/* }============ */

#define STORE_ID_LEN   36  /* a UUID in text form */
#define STORE_TS_LEN   24  /* 2026-11-21T06:52:02.123Z */
#define STORE_QCAP     512 /* statement cache slots (open addressing) */
#define STORE_MAX_NEST 64

/* One cached statement, keyed by the address of its SQL text. */
typedef struct store_q {
  const char *sql;
  store_stmt *st;
  unsigned char *kinds; /* per column: how a row value becomes Lua (computed once) */
  int ncol;
  int active; /* stepped and not yet reset */
} store_q;

/* The arrow of spawn channel names: spawn:<from id>→<to id> (U+2192, UTF-8). */
#define STORE_ARROW     "\xe2\x86\x92"
#define STORE_ARROW_LEN 3

typedef char store_id[STORE_ID_LEN + 1];

/* A process as the rules see it. */
typedef struct store_proc {
  store_id id;
  char status[16];
  char mode[16];
  store_id parent; /* empty when none */
  int64_t epoch, retry_count, max_retries, retry_backoff_ms;
  int has_backoff;
  int has_resources; /* resources is not [] */
} store_proc;

/* A pattern handler, cached between sends (see store_chan.c). */
typedef struct store_phandler {
  store_id id, process;
  char *pattern, *predicate; /* predicate may be NULL */
  int64_t epoch;
} store_phandler;

/* A channel name and the pattern handlers that match it. */
typedef struct store_pmatch {
  char *name;
  int *idx;
  int n;
} store_pmatch;

#define STORE_PMATCH_CAP 64

/* A process that got a delivery from the send in progress. */
typedef struct store_rcpt {
  store_id process;
  char status[16];
  int waits; /* has a pending wait condition */
} store_rcpt;

struct store {
  const store_driver *drv;
  void *db;
  store_q cache[STORE_QCAP];
  int nactive;   /* statements stepped and not reset */
  int depth;     /* transaction nesting */
  int op_depth;  /* depth of the rule in progress; nonzero after a Lua error inside one */
  int group;     /* store_group_open nesting: operations share one transaction */
  int group_txn; /* that transaction is begun (depth 1 is the group's) */
  size_t wake_mark[STORE_MAX_NEST + 1];
  store_id *woken; /* processes made runnable, called back after the outermost commit */
  size_t nwoken, capwoken;
  int flushing;
  store_wake_fn wake;
  void *wake_ud;
  int64_t epoch;
  int epoch_known;
  json_buf jb; /* scratch for JSON columns */
  /* Pattern handlers, reloaded when meta('handler_gen') changes. */
  store_phandler *ph;
  size_t nph;
  char ph_gen[64];
  int ph_loaded;
  store_pmatch pm[STORE_PMATCH_CAP]; /* per channel name: matching entries of ph */
  store_rcpt *rcpt;                  /* recipients of the send in progress */
  size_t nrcpt, caprcpt;
  /* Generated SQL for the tables written field by field (see store_table). */
  char *gen_sql;
  const char *sql_proc_insert, *sql_proc_update, *sql_proc_by_name, *sql_proc_by_id;
  const char *sql_cap_insert, *sql_cap_update, *sql_cap_by_name, *sql_cap_all;
  /* time and id generators */
  int64_t ts_sec;
  char ts_prefix[24];
  uint64_t rng[4];
  int64_t uuid_ms;
  uint64_t uuid_hi, uuid_lo;
  char err[512];
};

/* {============ statements (store.c) */

/* The cached statement for sql (a string with static storage), reset and
 * ready to bind; NULL with s->err set when it cannot be prepared. */
store_q *store_q_get(store_t *s, const char *sql);
int store_step(store_t *s, store_q *q); /* STORE_ROW / STORE_DONE / STORE_ERR (s->err) */
void store_reset(store_t *s, store_q *q);
int store_exec_q(store_t *s, store_q *q); /* step to the end and reset: 0 or -1 */
int64_t store_changes(store_t *s);
int store_fail_sql(store_t *s); /* copies the driver's message to s->err, returns -1 */
int store_failf(store_t *s, const char *fmt, ...);

/* Room for element n of a growing array v of *cap elements: returns v, or a
 * larger copy (capacity doubled), or NULL with the store's error set (v stays
 * valid and is still the caller's to free). */
void *store_grow(store_t *s, void *v, size_t *cap, size_t n, size_t size);

void store_bind_text(store_t *s, store_q *q, int i, const char *v); /* NULL binds NULL */
void store_bind_ltext(store_t *s, store_q *q, int i, const char *v, size_t n);
void store_bind_int(store_t *s, store_q *q, int i, int64_t v);
void store_bind_float(store_t *s, store_q *q, int i, double v);
void store_bind_null(store_t *s, store_q *q, int i);

int store_col_type(store_t *s, store_q *q, int i);
int64_t store_col_int(store_t *s, store_q *q, int i);
double store_col_float(store_t *s, store_q *q, int i);
const char *store_col_text(store_t *s, store_q *q, int i, size_t *len); /* NULL when NULL */
void store_col_copy(store_t *s, store_q *q, int i, char *out, size_t outlen);

/* Pushes the current row as a table (JSON columns decoded, flags as booleans,
 * NULL columns absent). */
void store_push_row(store_t *s, lua_State *L, store_q *q);
/* Steps q to the end, pushing an array of rows; resets q. 0 or -1. */
int store_push_rows(store_t *s, lua_State *L, store_q *q);
/* Steps q once: pushes the row and returns 1, or returns 0 (no row) / -1; resets q. */
int store_push_one(store_t *s, lua_State *L, store_q *q);

/* }============ */

/* {============ transactions (store.c) */

int store_begin(store_t *s);  /* outermost: BEGIN; nested: a savepoint */
int store_commit(store_t *s); /* the outermost commit runs the wake callbacks */
int store_rollback(store_t *s);

/* A rule is one transaction: op_begin, then op_commit or op_abort. If a Lua
 * error escapes in between, store_guard rolls the rule back on the next call. */
int store_op_begin(store_t *s);
int store_op_commit(store_t *s);
void store_op_abort(store_t *s);
void store_guard(store_t *s);

int store_wake_add(store_t *s, const char *process_id);

/* }============ */

/* {============ helpers (store.c) */

void store_now(store_t *s, char out[STORE_TS_LEN + 1]);
void store_ts_add_ms(const char *ts, int64_t ms, char out[STORE_TS_LEN + 1]);
void store_ts_from_ms(int64_t ms, char out[STORE_TS_LEN + 1]); /* store_run.c */
int64_t store_ts_ms(const char *ts);                           /* store_run.c: ms since 1970 */
int64_t store_now_ms(void);
void store_uuid(store_t *s, char out[STORE_ID_LEN + 1]);
int store_is_uuid(const char *v, size_t n);
/* The current epoch, -1 on error. Cached: meta_set('epoch'), wipe, migrate
 * and rollbacks drop the cache; another node's reboot is seen after reopen. */
int64_t store_epoch(store_t *s);

/* Pushes nil, s->err and returns 2: the "expected failure" return of a method. */
int store_push_fail(store_t *s, lua_State *L);

/* Ends a Lua-facing operation begun with store_op_begin: ok commits and returns
 * 1 (the result left on the stack); otherwise (or if the commit fails) rolls
 * back what !ok left, drops the stack to base and pushes nil, err (2). */
int store_op_end(store_t *s, lua_State *L, int base, int ok);
/* Encodes the value at idx into s->jb from offset 0. 0, or -1 with s->err
 * prefixed by what ("payload: cannot encode ..."). */
int store_json(store_t *s, lua_State *L, int idx, const char *what);
/* Appends the encoding to s->jb (which may move: keep offsets, not pointers). */
int store_json_add(store_t *s, lua_State *L, int idx, const char *what, size_t *off, size_t *len);

/* Looks a process up by id (when v looks like one) or by name in the current
 * epoch: 1 found, 0 not found (s->err "unknown process 'x'"), -1 error. */
int store_proc_find(store_t *s, const char *v, store_proc *p);
int store_proc_by_id(store_t *s, const char *id, store_proc *p); /* same, by id only */
/* Sets a process's status with the runnable_since rule; records a wake-up when
 * it becomes runnable. retry_at is cleared unless given. */
int store_proc_set(store_t *s, const store_proc *p, const char *status, const char *retry_at,
                   int64_t retry_count, const char *now);
int store_valid_status(const char *status);
/* T15 inside a transaction: pid and its descendants disabled, their waits
 * resolved, child:exited posted for each that had not completed. */
int store_disable_tree(store_t *s, lua_State *L, const char *pid, const char *now, int64_t *count);

/* Channel id by name: 1, 0 (s->err "unknown channel 'x'"), -1. */
int store_chan_find(store_t *s, const char *name, store_id id);
/* The same, for a write: an implicit channel not made yet is made first. */
int store_chan_open(store_t *s, const char *name, store_id id);
/* Implicit channels (store_implicit.c): a process's channels made on first
 * use. create makes one (with its handler, if it has one): 1, 0 when name is
 * no implicit channel, -1. latent: 1 when name is one not made yet (a reader
 * sees it empty), 0, -1. adopt: channel_create just made name: it gets the
 * implicit owner if it has none, and the implicit handler; 0 or -1.
 * handler: pid handles the channel named cname (when it exists); 0 or -1. */
int store_implicit_create(store_t *s, const char *name, store_id id);
int store_implicit_latent(store_t *s, const char *name);
int store_implicit_adopt(store_t *s, const char *name, const char *now);
int store_implicit_handler(store_t *s, const char *pid, const char *cname, int64_t epoch, const char *now);

/* {============ sends (store_chan.c), schemas (store_valid.c), waits (store_wait.c) */

typedef struct store_send_args {
  const char *channel; /* by name */
  const char *payload; /* a JSON object; must not live in s->jb */
  size_t plen;
  const char *sender, *sender_run, *idem, *trace_id;
  const char *trace_meta; /* JSON or NULL; must not live in s->jb */
  size_t tlen;
  int child_exited; /* payload.type == "child:exited": may resolve waits */
  int system;       /* posted by the rules themselves: no schema or closed check */
} store_send_args;

typedef struct store_send_res {
  store_id id;
  int64_t deliveries;
  int duplicate;
  size_t woken0; /* s->woken[woken0..] are the processes it woke */
} store_send_res;

/* The send rule inside an open transaction: the message, one delivery per
 * matching enabled handler (exact, pattern, predicate), the wake-ups and wait
 * resolution. 0, or -1 with s->err. */
int store_send(store_t *s, lua_State *L, const store_send_args *a, store_send_res *r);
/* Applies the wake rules to the processes in s->rcpt (deliveries were just
 * created for them by message `sender`). */
int store_wake_rcpts(store_t *s, lua_State *L, const char *mid, const char *sender, int child_exited,
                     const char *now);
/* Forgets the pattern handler cache. */
void store_pattern_reset(store_t *s);
/* Marks the handler set changed (pattern caches reload). */
int store_handler_gen_bump(store_t *s);
/* Ensures spawn:<from>→<to> (owner `from`, type spawn); its id in id. */
int store_spawn_channel(store_t *s, const char *from, const char *to, const char *now, store_id id,
                        char *name, size_t namelen);
/* Posts child:exited for process `id` when it has a parent (exit codes: 0 ok,
 * 1 failed, 2 killed/disabled, 3 throttled). duration_ms < 0: unknown. */
int store_post_exit(store_t *s, lua_State *L, const char *id, int exit_code, const char *run_id,
                    const char *error, int64_t duration_ms, const char *now);
/* The wait rule for one waiter: sender leaves its condition; 1 resolved, 0 not, -1. */
int store_wait_resolve(store_t *s, lua_State *L, const char *waiter, const char *sender, const char *now);

/* Resources (store_sched.c). Releases the pools a run holds and unblocks the
 * processes that can go now. */
int store_res_release(store_t *s, lua_State *L, const char *run_id, const char *now);
/* For a dispatch: 1 available (and, with run_id, acquired for that run), 0 not
 * available (s->err: "resource 'x' exhausted"), -1. */
int store_res_acquire(store_t *s, lua_State *L, const char *process, const char *run_id, int64_t now_ms);

/* The executor registry (store_executor.c). T6 for process p and the node
 * node_id (NULL: none): 1 the node may run it (no required tags, or it carries
 * them all); 0 it may not, but a running executor carries them all (nothing
 * changes); 2 no running executor carries them all: with block, p is set
 * blocked and system:executor:error:missing-tags hears of it. With 0 and 2
 * s->err says why. -1 on error. */
int store_executor_gate(store_t *s, lua_State *L, const store_proc *p, const char *node_id, int block,
                        const char *now);
/* The executor's heartbeat (a stale one is idle again); nothing when unknown. */
int store_executor_beat(store_t *s, const char *executor_id, const char *now);
/* Sets the executor's status when it is registered: 0 or -1. */
int store_executor_mark(store_t *s, const char *executor_id, const char *status);
/* Running executors silent for three of their heartbeat intervals -> stale. */
int store_executor_reap(store_t *s, lua_State *L, int64_t now_ms);

/* Sends payload to channel (created when missing) as the system itself: no
 * sender, no schema or closed check (store_cron.c). 0 or -1. */
int store_post_system(store_t *s, lua_State *L, const char *channel, const char *payload, size_t plen,
                      const char *now);

/* Pushes {fields = ...} for the definition at idx (a field dict or {fields=}),
 * every type name checked (self: the schema being defined); -1 with s->err. */
int store_schema_normalize(store_t *s, lua_State *L, int idx, const char *self);
/* Validates payload (JSON) against def (JSON {fields=}); -1 with s->err "a.b: expected ...". */
int store_schema_check(store_t *s, lua_State *L, const char *def, size_t dlen, const char *payload,
                       size_t plen);

/* }============ */

/* Lua field helpers for option tables: raise on a wrong type. */
const char *store_opt_string(lua_State *L, int t, const char *field, const char *def);
int64_t store_opt_int(lua_State *L, int t, const char *field, int64_t def, int *given);
int store_opt_bool(lua_State *L, int t, const char *field, int def);

/* }============ */

/* {============ field-by-field writes (store_table.c) */

enum { STORE_KTEXT = 'T', STORE_KINT = 'I', STORE_KREAL = 'R', STORE_KBOOL = 'B', STORE_KJSON = 'J' };

typedef struct store_col {
  const char *name;
  char kind;
  char settable;   /* callers may set it; else only the rules do */
  const char *def; /* default for a new row in text form; NULL: SQL NULL */
} store_col;

typedef struct store_val {
  int state; /* STORE_VABSENT, STORE_VNULL, STORE_VINT, STORE_VFLOAT, STORE_VTEXT */
  int64_t i;
  double f;
  const char *s;
  size_t n;
  size_t jb_off; /* JSON text lives in s->jb until every field is encoded */
  int in_jb;
} store_val;

enum { STORE_VABSENT, STORE_VNULL, STORE_VINT, STORE_VFLOAT, STORE_VTEXT };

typedef struct store_table {
  const char *name;
  const store_col *cols;
  int ncols;
} store_table;

extern const store_table store_process_table, store_capability_table;

/* Reads the fields of the Lua table at idx into vals (raises on unknown or
 * unsettable fields and wrong types; -1 with s->err when a JSON field does not
 * encode). skip lists the fields the caller handles (NULL-terminated; may be NULL). */
int store_vals_from_lua(store_t *s, lua_State *L, int idx, const store_table *t, store_val *vals,
                        const char *what, const char *const *skip);
/* Fills every absent field from column i of the current row of q. */
void store_vals_merge(store_t *s, const store_table *t, store_val *vals, store_q *q);
/* Fills every absent field with its default. */
void store_vals_defaults(const store_table *t, store_val *vals);
void store_val_text(store_val *v, const char *text); /* NULL: SQL NULL */
void store_val_int(store_val *v, int64_t i);
/* Binds vals[from..ncols) then vals[0..from) starting at parameter 1. */
void store_vals_bind(store_t *s, store_q *q, const store_table *t, store_val *vals, int from);
int store_col_index(const store_table *t, const char *name);
/* Pushes vals as the row they were written as (the same table a read returns). */
void store_vals_push(lua_State *L, const store_table *t, const store_val *vals);
/* Builds the INSERT/UPDATE/SELECT texts of both tables into s->gen_sql. */
int store_table_sql(store_t *s);

/* }============ */

/* {============ migrations (store_schema.c) */

/* Upgrades the schema to version `to` (0: the latest); never downgrades.
 * *version: the version now. */
int store_migrate(store_t *s, int to, int *version);
/* Deletes every row, keeps the schema version, sets the epoch to 0. */
int store_wipe(store_t *s);

/* }============ */

/* {============ methods: each pushes its results and returns how many (store_*.c) */

int store_m_process_upsert(store_t *s, lua_State *L, int t);
int store_m_process_get(store_t *s, lua_State *L, const char *name_or_id);
int store_m_process_list(store_t *s, lua_State *L, int t);
int store_m_process_set_status(store_t *s, lua_State *L, const char *id, const char *status);
int store_m_process_disable(store_t *s, lua_State *L, const char *id);
int store_m_capability_upsert(store_t *s, lua_State *L, int t);
int store_m_capability_get(store_t *s, lua_State *L, const char *name);
int store_m_capability_list(store_t *s, lua_State *L);
int store_m_grant_add(store_t *s, lua_State *L, const char *process, int t);
int store_m_grants(store_t *s, lua_State *L, const char *process);

int store_m_channel_create(store_t *s, lua_State *L, const char *name, int t);
int store_m_channel_get(store_t *s, lua_State *L, const char *name);
int store_m_channel_list(store_t *s, lua_State *L);
int store_m_send(store_t *s, lua_State *L, const char *channel, int payload, int t);
int store_m_messages(store_t *s, lua_State *L, const char *channel, int t);
int store_m_handler_add(store_t *s, lua_State *L, const char *process, const char *channel, int t);
int store_m_channel_close(store_t *s, lua_State *L, const char *name, const char *process);
int store_m_schema_upsert(store_t *s, lua_State *L, const char *name, int def);
int store_m_schema_get(store_t *s, lua_State *L, const char *name);
int store_m_schema_list(store_t *s, lua_State *L);
int store_m_handler_remove(store_t *s, lua_State *L, const char *id);
int store_m_handler_list(store_t *s, lua_State *L, int t);

int store_m_wait_add(store_t *s, lua_State *L, int t);
int store_m_wait_get(store_t *s, lua_State *L, const char *process);
int store_m_wait_results(store_t *s, lua_State *L, const char *process);

int store_m_resource_upsert(store_t *s, lua_State *L, int t);
int store_m_resource_list(store_t *s, lua_State *L);
int store_m_unblock(store_t *s, lua_State *L, int64_t now_ms);
int store_m_cron_add(store_t *s, lua_State *L, int t);
int store_m_cron_list(store_t *s, lua_State *L);
int store_m_cron_set_enabled(store_t *s, lua_State *L, const char *id, int enabled);
int store_m_cron_delete(store_t *s, lua_State *L, const char *id);
int store_m_cron_fire(store_t *s, lua_State *L, int64_t now_ms);
int store_m_reconcile(store_t *s, lua_State *L);

int store_m_runnable(store_t *s, lua_State *L, int64_t limit);
int store_m_dispatch(store_t *s, lua_State *L, const char *process, const char *node_id);
int store_m_run_finish(store_t *s, lua_State *L, const char *run_id, int t);
int store_m_reap(store_t *s, lua_State *L, int64_t now_ms);
int store_m_heartbeat(store_t *s, lua_State *L, const char *node_id);
int store_m_recover(store_t *s, lua_State *L, const char *node_id);
int store_m_run_get(store_t *s, lua_State *L, const char *id);
int store_m_run_list(store_t *s, lua_State *L, int t);

int store_m_file_write(store_t *s, lua_State *L, const char *key, int content, int t);
int store_m_file_get(store_t *s, lua_State *L, const char *key);
int store_m_file_list(store_t *s, lua_State *L, int t);
int store_m_file_history(store_t *s, lua_State *L, const char *key);
int store_m_file_delete(store_t *s, lua_State *L, const char *key);

int store_m_reboot(store_t *s, lua_State *L);
int store_m_clear_config(store_t *s, lua_State *L);
int store_m_meta_get(store_t *s, lua_State *L, const char *key);
int store_m_meta_set(store_t *s, lua_State *L, const char *key, const char *value);

/* }============ */

store_t *store_open(const char *path, int sync_full, char *err, size_t errlen);
void store_close(store_t *s);

#endif
