/* store_schema.c — the data model's tables, as ordered migrations; the
 * version lives in meta('schema_version'). Portable SQL: TEXT ids and
 * ISO-8601 timestamps, INTEGER 0/1 flags, JSON as TEXT. The one SQLite-only
 * phrase is WITHOUT ROWID (a table clustered on its key: one B-tree less to
 * write per row); other drivers drop it. Every index costs a page write per
 * commit, so only hot queries get one; rare deletes may scan. Enumerations
 * are checked with OR chains: SQLite builds a temporary table for every
 * write checked against an IN list. */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version 1: the complete data model (cogos-spec §1, defects of §12.2 fixed).
 * References that only record history (a message's sender, a run's message, a
 * version's run) are plain columns so history outlives what it mentions.
 * Ids are UUIDv7 (time-ordered), so clustered inserts append. */
static const char v1[] =
    "CREATE TABLE process ("
    " id TEXT PRIMARY KEY,"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " name TEXT NOT NULL,"
    " mode TEXT NOT NULL DEFAULT 'one_shot' CHECK (mode = 'daemon' OR mode = 'one_shot'),"
    " content TEXT NOT NULL DEFAULT '',"
    " priority REAL NOT NULL DEFAULT 0,"
    " resources TEXT NOT NULL DEFAULT '[]',"
    " required_tags TEXT NOT NULL DEFAULT '[]',"
    " executor TEXT NOT NULL DEFAULT 'llm',"
    " status TEXT NOT NULL DEFAULT 'waiting' CHECK (status = 'waiting' OR status = 'runnable' OR "
    "   status = 'running' OR status = 'blocked' OR status = 'suspended' OR "
    "   status = 'completed' OR status = 'disabled'),"
    " runnable_since TEXT,"
    " parent_process TEXT," /* the spawner; walked by the cascading disable */
    " preemptible INTEGER NOT NULL DEFAULT 0,"
    " model TEXT,"
    " model_constraints TEXT NOT NULL DEFAULT '{}',"
    " return_schema TEXT,"
    " idle_timeout_ms INTEGER,"
    " max_duration_ms INTEGER,"
    " max_retries INTEGER NOT NULL DEFAULT 0,"
    " retry_count INTEGER NOT NULL DEFAULT 0,"
    " retry_backoff_ms INTEGER,"
    " retry_at TEXT," /* a failed one_shot waits until then (retry_backoff_ms) */
    " clear_context INTEGER NOT NULL DEFAULT 0,"
    " tty INTEGER NOT NULL DEFAULT 0,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " output_events TEXT NOT NULL DEFAULT '[]',"
    " schema_id TEXT,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL,"
    " UNIQUE (name, epoch));\n" /* a rowid table: status changes rewrite the row, and a long prompt stays on its page */
    /* runnable(): only runnable rows, already in selection order (no sort) */
    "CREATE INDEX process_runnable ON process (epoch, priority DESC, runnable_since, name)"
    " WHERE status = 'runnable';\n"

    "CREATE TABLE capability ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " description TEXT NOT NULL DEFAULT '',"
    " instructions TEXT NOT NULL DEFAULT '',"
    " handler TEXT NOT NULL DEFAULT '',"
    " schema TEXT NOT NULL DEFAULT '{}',"
    " iam_role_arn TEXT,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " event_types TEXT NOT NULL DEFAULT '[]',"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE process_capability ("
    " id TEXT PRIMARY KEY,"
    " process TEXT NOT NULL REFERENCES process (id) ON DELETE CASCADE,"
    " capability TEXT NOT NULL REFERENCES capability (id) ON DELETE CASCADE,"
    " name TEXT NOT NULL,"
    " config TEXT NOT NULL DEFAULT '{}',"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL,"
    " UNIQUE (process, name)) WITHOUT ROWID;\n"
    "CREATE INDEX process_capability_capability ON process_capability (capability);\n"

    "CREATE TABLE file ("
    " id TEXT PRIMARY KEY,"
    " key TEXT NOT NULL UNIQUE,"
    " version INTEGER NOT NULL DEFAULT 1," /* the active version (versions are never rewritten) */
    " includes TEXT NOT NULL DEFAULT '[]',"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE file_version ("
    " id TEXT NOT NULL,"
    " file_id TEXT NOT NULL REFERENCES file (id) ON DELETE CASCADE,"
    " version INTEGER NOT NULL,"
    " content TEXT NOT NULL,"
    " source TEXT,"
    " read_only INTEGER NOT NULL DEFAULT 0,"
    " run_id TEXT,"
    " size INTEGER NOT NULL DEFAULT 0," /* bytes: portable, unlike length() */
    " created_at TEXT NOT NULL,"
    " PRIMARY KEY (file_id, version)) WITHOUT ROWID;\n"

    "CREATE TABLE schema ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " definition TEXT NOT NULL DEFAULT '{}',"
    " file_id TEXT REFERENCES file (id) ON DELETE SET NULL,"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL) WITHOUT ROWID;\n"
    "CREATE INDEX schema_file ON schema (file_id);\n"

    "CREATE TABLE channel ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " owner TEXT,"
    " schema_id TEXT REFERENCES schema (id) ON DELETE SET NULL,"
    " inline_schema TEXT,"
    " channel_type TEXT NOT NULL DEFAULT 'named' CHECK (channel_type = 'implicit' OR "
    "   channel_type = 'spawn' OR channel_type = 'named'),"
    " auto_close INTEGER NOT NULL DEFAULT 0,"
    " closed_at TEXT,"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE channel_message ("
    " id TEXT PRIMARY KEY,"
    " channel TEXT NOT NULL REFERENCES channel (id) ON DELETE CASCADE,"
    " sender_process TEXT,"
    " sender_run_id TEXT,"
    " payload TEXT NOT NULL,"
    " idempotency_key TEXT,"
    " trace_id TEXT,"
    " trace_meta TEXT,"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"
    "CREATE INDEX channel_message_channel ON channel_message (channel, created_at);\n"
    "CREATE UNIQUE INDEX channel_message_idempotency ON channel_message (channel, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;\n"

    "CREATE TABLE handler ("
    " id TEXT PRIMARY KEY,"
    " process TEXT NOT NULL REFERENCES process (id) ON DELETE CASCADE,"
    " channel TEXT REFERENCES channel (id) ON DELETE CASCADE,"
    " pattern TEXT,"   /* later handler rules: a glob over channel names */
    " predicate TEXT," /* later handler rules: Lua source filtering payloads */
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL,"
    " UNIQUE (channel, process)) WITHOUT ROWID;\n" /* also finds a channel's handlers */

    "CREATE TABLE run ("
    " id TEXT PRIMARY KEY,"
    " process TEXT NOT NULL REFERENCES process (id) ON DELETE CASCADE,"
    " message TEXT,"
    " conversation TEXT,"
    " status TEXT NOT NULL DEFAULT 'running' CHECK (status = 'running' OR "
    "   status = 'completed' OR status = 'failed' OR status = 'timeout' OR "
    "   status = 'suspended' OR status = 'throttled'),"
    " tokens_in INTEGER NOT NULL DEFAULT 0,"
    " tokens_out INTEGER NOT NULL DEFAULT 0,"
    " cost_usd REAL NOT NULL DEFAULT 0,"
    " duration_ms INTEGER,"
    " error TEXT,"
    " model_version TEXT,"
    " result TEXT,"
    " snapshot TEXT,"
    " scope_log TEXT NOT NULL DEFAULT '[]',"
    " trace_id TEXT,"
    " parent_trace_id TEXT,"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " node_id TEXT,"      /* lease: the node running it */
    " heartbeat_at TEXT," /* lease: last sign of life */
    " created_at TEXT NOT NULL,"
    " completed_at TEXT);\n" /* rowid: large results, rows updated in place */
    "CREATE INDEX run_process ON run (process, created_at);\n"
    "CREATE INDEX run_running ON run (node_id) WHERE status = 'running';\n"

    "CREATE TABLE delivery (" /* identified by (handler, message) */
    " message TEXT NOT NULL REFERENCES channel_message (id) ON DELETE CASCADE,"
    " handler TEXT NOT NULL REFERENCES handler (id) ON DELETE CASCADE,"
    " process TEXT NOT NULL REFERENCES process (id) ON DELETE CASCADE," /* the handler's */
    " status TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'queued' OR "
    "   status = 'delivered' OR status = 'skipped'),"
    " run TEXT,"
    " trace_id TEXT,"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL,"
    " PRIMARY KEY (handler, message)) WITHOUT ROWID;\n" /* exactly once per handler */
    /* the oldest pending delivery of a process, in order (no sort) */
    "CREATE INDEX delivery_process ON delivery (process, status, created_at, message);\n"

    "CREATE TABLE cron ("
    " id TEXT PRIMARY KEY,"
    " expression TEXT NOT NULL,"
    " channel_name TEXT NOT NULL,"
    " payload TEXT NOT NULL DEFAULT '{}',"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " last_run TEXT,"
    " last_fired_minute TEXT," /* fires once per matching minute */
    " created_at TEXT NOT NULL,"
    " UNIQUE (expression, channel_name)) WITHOUT ROWID;\n"

    "CREATE TABLE resource ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " resource_type TEXT NOT NULL DEFAULT 'pool' CHECK (resource_type = 'pool' OR "
    "   resource_type = 'consumable'),"
    " capacity REAL NOT NULL DEFAULT 1,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE resource_usage ("
    " id TEXT PRIMARY KEY,"
    " resource TEXT NOT NULL REFERENCES resource (id) ON DELETE CASCADE,"
    " process TEXT REFERENCES process (id) ON DELETE CASCADE,"
    " run TEXT REFERENCES run (id) ON DELETE CASCADE,"
    " amount REAL NOT NULL DEFAULT 1,"
    " created_at TEXT NOT NULL,"
    " released_at TEXT) WITHOUT ROWID;\n"
    "CREATE INDEX resource_usage_resource ON resource_usage (resource, released_at);\n"
    "CREATE INDEX resource_usage_process ON resource_usage (process);\n"
    "CREATE INDEX resource_usage_run ON resource_usage (run);\n"

    "CREATE TABLE wait_condition ("
    " id TEXT PRIMARY KEY,"
    " run TEXT REFERENCES run (id) ON DELETE CASCADE,"
    " process TEXT REFERENCES process (id) ON DELETE CASCADE," /* the waiter, run-linked or not */
    " type TEXT NOT NULL DEFAULT 'wait' CHECK (type = 'wait' OR type = 'wait_any' OR type = 'wait_all'),"
    " status TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'resolved'),"
    " pending TEXT NOT NULL DEFAULT '[]',"
    " created_at TEXT NOT NULL,"
    " resolved_at TEXT) WITHOUT ROWID;\n"
    "CREATE INDEX wait_condition_process ON wait_condition (process, status);\n"
    "CREATE INDEX wait_condition_run ON wait_condition (run);\n"

    "CREATE TABLE executor ("
    " id TEXT PRIMARY KEY,"
    " executor_id TEXT NOT NULL UNIQUE,"
    " channel_type TEXT NOT NULL DEFAULT 'claude-code',"
    " executor_tags TEXT NOT NULL DEFAULT '[]',"
    " dispatch_type TEXT NOT NULL DEFAULT 'channel' CHECK (dispatch_type = 'channel' OR "
    "   dispatch_type = 'lambda' OR dispatch_type = 'local'),"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " status TEXT NOT NULL DEFAULT 'idle' CHECK (status = 'idle' OR status = 'busy' OR "
    "   status = 'stale' OR status = 'dead'),"
    " current_run_id TEXT,"
    " last_heartbeat_at TEXT,"
    " registered_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE executor_token ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " token_hash TEXT NOT NULL,"
    " token_raw TEXT,"
    " scope TEXT NOT NULL DEFAULT 'executor',"
    " created_at TEXT NOT NULL,"
    " revoked_at TEXT) WITHOUT ROWID;\n"
    "CREATE INDEX executor_token_hash ON executor_token (token_hash);\n"

    "CREATE TABLE request_trace ("
    " id TEXT PRIMARY KEY,"
    " cogent_id TEXT,"
    " source TEXT,"
    " source_ref TEXT,"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE span ("
    " id TEXT PRIMARY KEY,"
    " trace_id TEXT NOT NULL REFERENCES request_trace (id) ON DELETE CASCADE,"
    " parent_span_id TEXT,"
    " name TEXT NOT NULL,"
    " coglet TEXT,"
    " status TEXT NOT NULL DEFAULT 'running' CHECK (status = 'running' OR "
    "   status = 'completed' OR status = 'errored'),"
    " started_at TEXT NOT NULL,"
    " ended_at TEXT,"
    " metadata TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID;\n"
    "CREATE INDEX span_trace ON span (trace_id);\n"

    "CREATE TABLE span_event ("
    " id TEXT PRIMARY KEY,"
    " span_id TEXT NOT NULL REFERENCES span (id) ON DELETE CASCADE,"
    " event TEXT NOT NULL CHECK (event = 'log' OR event = 'error' OR event = 'metric'),"
    " message TEXT,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"
    "CREATE INDEX span_event_span ON span_event (span_id);\n"

    "CREATE TABLE alert ("
    " id TEXT PRIMARY KEY,"
    " severity TEXT NOT NULL CHECK (severity = 'warning' OR severity = 'critical' OR severity = 'emergency'),"
    " alert_type TEXT NOT NULL,"
    " source TEXT,"
    " message TEXT,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " acknowledged_at TEXT,"
    " resolved_at TEXT,"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"
    "CREATE INDEX alert_created ON alert (created_at);\n"

    "CREATE TABLE operation ("
    " id TEXT PRIMARY KEY,"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " type TEXT NOT NULL,"
    " metadata TEXT NOT NULL DEFAULT '{}',"
    " created_at TEXT NOT NULL) WITHOUT ROWID;\n"

    "CREATE TABLE budget ("
    " id TEXT PRIMARY KEY,"
    " scope TEXT NOT NULL," /* 'cogent', 'process:<id>', ... */
    " period TEXT NOT NULL CHECK (period = 'daily' OR period = 'weekly' OR period = 'monthly' OR period = 'total'),"
    " period_start TEXT NOT NULL,"
    " limits TEXT NOT NULL DEFAULT '{}',"
    " spent TEXT NOT NULL DEFAULT '{}',"
    " created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL,"
    " UNIQUE (scope, period)) WITHOUT ROWID;\n"

    "CREATE TABLE run_event ("
    " run_id TEXT NOT NULL REFERENCES run (id) ON DELETE CASCADE,"
    " seq INTEGER NOT NULL,"
    " type TEXT NOT NULL,"
    " data TEXT NOT NULL DEFAULT '{}',"
    " created_at TEXT NOT NULL,"
    " UNIQUE (run_id, seq));\n";

/* Version 2: handler rules (glob patterns, one per process and pattern; the
 * last predicate error), consumable refill periods. */
static const char v2[] =
    "ALTER TABLE handler ADD COLUMN last_error TEXT;\n"
    "CREATE UNIQUE INDEX handler_pattern ON handler (pattern, process) WHERE pattern IS NOT NULL;\n"
    "ALTER TABLE resource ADD COLUMN period_ms INTEGER;\n";

/* Version 3: grants keyed by (process, name), the only way they are looked up
 * (one B-tree instead of three; capabilities are deleted only after every grant). */
static const char v3[] =
    "CREATE TABLE process_capability_v3 ("
    " process TEXT NOT NULL REFERENCES process (id) ON DELETE CASCADE,"
    " name TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " capability TEXT NOT NULL REFERENCES capability (id) ON DELETE CASCADE,"
    " config TEXT NOT NULL DEFAULT '{}',"
    " epoch INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL,"
    " PRIMARY KEY (process, name)) WITHOUT ROWID;\n"
    "INSERT INTO process_capability_v3 (process, name, id, capability, config, epoch, created_at) "
    "SELECT process, name, id, capability, config, epoch, created_at FROM process_capability;\n"
    "DROP TABLE process_capability;\n"
    "ALTER TABLE process_capability_v3 RENAME TO process_capability;\n";

/* Version 4: versions in the order they are written (a rowid table), found by
 * (file, version) through an index of small integers: n numbers the files. A
 * commit of many writes round-robin over many files then touches a few pages
 * instead of one per file (rows clustered by a 36-byte file id). */
static const char v4[] =
    "ALTER TABLE file ADD COLUMN n INTEGER;\n"
    "UPDATE file SET n = r.n FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM file) r "
    "WHERE r.id = file.id;\n"
    "CREATE UNIQUE INDEX file_n ON file (n);\n"
    "CREATE TABLE file_version_v4 ("
    " file INTEGER NOT NULL REFERENCES file (n) ON DELETE CASCADE,"
    " version INTEGER NOT NULL,"
    " id TEXT NOT NULL,"
    " content TEXT NOT NULL,"
    " source TEXT,"
    " read_only INTEGER NOT NULL DEFAULT 0,"
    " run_id TEXT,"
    " size INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL,"
    " UNIQUE (file, version));\n"
    "INSERT INTO file_version_v4 (file, version, id, content, source, read_only, run_id, size, created_at) "
    "SELECT f.n, v.version, v.id, v.content, v.source, v.read_only, v.run_id, v.size, v.created_at "
    "FROM file_version v JOIN file f ON f.id = v.file_id ORDER BY v.created_at, v.version;\n"
    "DROP TABLE file_version;\n"
    "ALTER TABLE file_version_v4 RENAME TO file_version;\n";

static const char *const migrations[] = {v1, v2, v3, v4};
#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

static int meta_put (store_t *s, const char *key, const char *value) {
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  store_q *q = store_q_get(
      s, "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) "
         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, key);
  store_bind_text(s, q, 2, value);
  store_bind_text(s, q, 3, now);
  return store_exec_q(s, q);
}

static int schema_version (store_t *s, int *version) {
  store_q *q = store_q_get(s, "SELECT value FROM meta WHERE key = 'schema_version'");
  if (q == NULL) return -1;
  int rc = store_step(s, q);
  *version = 0;
  if (rc == STORE_ROW) {
    const char *v = store_col_text(s, q, 0, NULL);
    *version = v ? atoi(v) : 0;
  }
  store_reset(s, q);
  return rc == STORE_ERR ? -1 : 0;
}

int store_migrate (store_t *s, int to, int *version) {
  if (s->depth > 0) return store_failf(s, "store: migrate inside a transaction");
  if (to < 0 || to > NMIGRATIONS)
    return store_failf(s, "store: no schema version %d (1 to %d)", to, NMIGRATIONS);
  if (to == 0) to = NMIGRATIONS;
  if (s->drv->exec(
          s,
          "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT, updated_at TEXT) WITHOUT ROWID") <
      0)
    return -1;
  int v;
  if (schema_version(s, &v) < 0) return -1;
  if (v > NMIGRATIONS)
    return store_failf(s, "store: the database has schema version %d, newer than this cogos (%d)", v,
                       NMIGRATIONS);
  for (; v < to; v++) {
    char text[16];
    snprintf(text, sizeof text, "%d", v + 1);
    if (store_op_begin(s) < 0) return -1;
    if (s->drv->exec(s, migrations[v]) < 0 || meta_put(s, "schema_version", text) < 0) {
      store_op_abort(s);
      return -1;
    }
    if (v == 0 && meta_put(s, "epoch", "0") < 0) {
      store_op_abort(s);
      return -1;
    }
    if (store_op_commit(s) < 0) return -1;
  }
  s->epoch_known = 0;
  *version = v;
  return 0;
}

int store_wipe (store_t *s) {
  /* Children before parents, so no cascade has work left to do. */
  static const char *const tables[] = {
      "DELETE FROM run_event",
      "DELETE FROM span_event",
      "DELETE FROM span",
      "DELETE FROM request_trace",
      "DELETE FROM resource_usage",
      "DELETE FROM wait_condition",
      "DELETE FROM delivery",
      "DELETE FROM handler",
      "DELETE FROM channel_message",
      "DELETE FROM process_capability",
      "DELETE FROM run",
      "DELETE FROM channel",
      "DELETE FROM schema",
      "DELETE FROM file_version",
      "DELETE FROM file",
      "DELETE FROM process",
      "DELETE FROM capability",
      "DELETE FROM resource",
      "DELETE FROM cron",
      "DELETE FROM alert",
      "DELETE FROM operation",
      "DELETE FROM executor",
      "DELETE FROM executor_token",
      "DELETE FROM budget",
      "DELETE FROM meta WHERE key <> 'schema_version'",
  };
  if (store_op_begin(s) < 0) return -1;
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    store_q *q = store_q_get(s, tables[i]);
    if (q == NULL || store_exec_q(s, q) < 0) {
      store_op_abort(s);
      return -1;
    }
  }
  if (meta_put(s, "epoch", "0") < 0) {
    store_op_abort(s);
    return -1;
  }
  if (store_op_commit(s) < 0) return -1;
  s->epoch_known = 0;
  return 0;
}

/* {============ epochs (cogos-spec §7.6) */

static int exec_all (store_t *s, const char *const *sql, size_t n) {
  for (size_t i = 0; i < n; i++) {
    store_q *q = store_q_get(s, sql[i]);
    if (q == NULL || store_exec_q(s, q) < 0) return -1;
  }
  return 0;
}

int store_m_reboot (store_t *s, lua_State *L) {
  char now[STORE_TS_LEN + 1], text[32];
  store_now(s, now);
  int64_t disabled = 0, count = 0;
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  int64_t epoch = store_epoch(s);
  if (epoch < 0) goto fail;
  store_q *q = store_q_get(s, "SELECT count(*) FROM process WHERE epoch = ?");
  if (q == NULL) goto fail;
  store_bind_int(s, q, 1, epoch);
  if (store_step(s, q) == STORE_ROW) count = store_col_int(s, q, 0);
  store_reset(s, q);
  /* init and its whole tree stop (T15); everything else of the epoch stays as it is */
  store_proc init;
  int r = store_proc_find(s, "init", &init);
  if (r < 0) goto fail;
  if (r == 1 && store_disable_tree(s, L, init.id, now, &disabled) < 0) goto fail;
  snprintf(text, sizeof text, "%lld", (long long)(epoch + 1));
  if (meta_put(s, "epoch", text) < 0) goto fail;
  s->epoch_known = 0;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)epoch);
  lua_setfield(L, -2, "prev_epoch");
  lua_pushinteger(L, (lua_Integer)count);
  lua_setfield(L, -2, "prev_process_count");
  r = store_json(s, L, -1, "metadata");
  lua_settop(L, base);
  if (r < 0) goto fail;
  store_id id;
  store_uuid(s, id);
  q = store_q_get(
      s, "INSERT INTO operation (id, epoch, type, metadata, created_at) VALUES (?, ?, 'reboot', ?, ?)");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, id);
  store_bind_int(s, q, 2, epoch + 1);
  store_bind_ltext(s, q, 3, s->jb.data, s->jb.len);
  store_bind_text(s, q, 4, now);
  if (store_exec_q(s, q) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  s->epoch_known = 0;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)(epoch + 1));
  lua_setfield(L, -2, "epoch");
  lua_pushinteger(L, (lua_Integer)epoch);
  lua_setfield(L, -2, "prev_epoch");
  lua_pushinteger(L, (lua_Integer)count);
  lua_setfield(L, -2, "prev_process_count");
  lua_pushinteger(L, (lua_Integer)disabled);
  lua_setfield(L, -2, "disabled");
  return 1;
fail:
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

int store_m_clear_config (store_t *s, lua_State *L) {
  /* The configuration and its activity go; files (but the image's), channels,
   * alerts, resources and executors stay. Children before parents. */
  static const char *const sql[] = {
      "DELETE FROM run_event",
      "DELETE FROM span_event",
      "DELETE FROM span",
      "DELETE FROM request_trace",
      "DELETE FROM resource_usage",
      "DELETE FROM wait_condition",
      "DELETE FROM delivery",
      "DELETE FROM channel_message",
      "DELETE FROM run",
      "DELETE FROM handler",
      "DELETE FROM process_capability",
      "DELETE FROM cron",
      "UPDATE channel SET owner = NULL",
      "DELETE FROM process",
      "DELETE FROM capability",
      "UPDATE schema SET file_id = NULL WHERE file_id IN (SELECT id FROM file WHERE "
      "key LIKE 'mnt/boot/%' OR key LIKE 'mnt/repo/%')",
      "DELETE FROM file_version WHERE file IN (SELECT n FROM file WHERE "
      "key LIKE 'mnt/boot/%' OR key LIKE 'mnt/repo/%')",
      "DELETE FROM file WHERE key LIKE 'mnt/boot/%' OR key LIKE 'mnt/repo/%'",
  };
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (exec_all(s, sql, sizeof sql / sizeof sql[0]) < 0 || store_handler_gen_bump(s) < 0) {
    store_op_abort(s);
    return store_push_fail(s, L);
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, 1);
  return 1;
}

/* }============ */
