/* store_run.c — rules for scheduling and runs: runnable, dispatch, run_finish,
 * recover, reap, heartbeat, and run reads.
 *
 * The transitions of cogos-spec §2.2, as this store implements them (the seed
 * has 5 states; ours are its documented 7: `running` is a real status and
 * one-shot success is `completed`):
 *   T1/T2  process_upsert: one_shot -> runnable, daemon -> waiting (a status given wins)
 *   T3     send/reconcile: waiting without a pending wait -> runnable (store_chan.c)
 *   T4     a child:exited delivery resolves a pending wait: waiting -> runnable; a
 *          running (parked lua) run is woken without a status change (store_wait.c)
 *   T5     dispatch: runnable -> running (not waiting: the run's lease says who runs it)
 *   T6     dispatch -> blocked when no running node carries the process's required_tags
 *          (one notice on system:executor:error:missing-tags; store_executor.c), or
 *          when a resource is exhausted
 *   T7     unblock / a released pool: blocked -> runnable when resources are available
 *          and a running node carries the required tags
 *   T8     run ok, daemon: runnable with backlog else waiting
 *   T9     run ok, one_shot: completed (the seed's `disabled` was a defect)
 *   T10    third failed/timeout/throttled run of a daemon in a row: suspended + critical alert
 *   T11    other daemon failure: like T8
 *   T12    one_shot failure with retries left: runnable at retry_at (exponential backoff)
 *   T13    one_shot failure, retries exhausted (or throttled): disabled
 *   T14    run_finish{status='suspended'}: waiting (the run waits on a condition)
 *   T15    process_disable: the tree disabled, waits resolved, child:exited (code 2)
 *   T16    process_set_status(id, 'runnable') (CLI `process run`, shell kill -HUP)
 *   T17    replaced: dispatch is one transaction; nothing to roll back afterwards
 *   T18    replaced by recover(node_id) (runs of a dead node: failed, delivery pending
 *          again, process runnable) and reap (stale or overlong runs: timeout); a
 *          waiting parent is never disabled for waiting (the seed's bug)
 *   T19    replaced: a waiting daemon with deliveries is made runnable by the send or
 *          by reconcile, never left waiting
 *   T20    process_upsert of an existing name: the given status wins, id and parent kept
 *   idle   reconcile: a waiting daemon idle past its idle_timeout_ms -> completed, with
 *          child:exited (exit 0) (store_reconcile.c; the seed left it a no-op)
 * An out-of-band disable or suspend always wins over the end of a run.
 *
 * Throttle cooldown (§2.5): a run that ends `throttled` (the provider rate-limited
 * it) stamps meta scheduler:throttled_at; while that is younger than
 * scheduler:throttle_cooldown_ms (300 000 by default; 0: off), runnable() is
 * empty, so the scheduler starts nothing new. A meta row, not a scan of the run
 * table: runnable() is on the hot path. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUN_COLS                                                                                       \
  "r.id AS id, r.process AS process, r.message AS message, r.conversation AS conversation, "           \
  "r.status AS status, r.tokens_in AS tokens_in, r.tokens_out AS tokens_out, r.cost_usd AS cost_usd, " \
  "r.duration_ms AS duration_ms, r.error AS error, r.model_version AS model_version, "                 \
  "r.result AS result, r.snapshot AS snapshot, r.scope_log AS scope_log, r.trace_id AS trace_id, "     \
  "r.parent_trace_id AS parent_trace_id, r.epoch AS epoch, r.metadata AS metadata, "                   \
  "r.node_id AS node_id, r.heartbeat_at AS heartbeat_at, r.created_at AS created_at, "                 \
  "r.completed_at AS completed_at "

#define MAX_ERROR 4000 /* bytes of a run's error kept */

/* The run with its triggering message's channel name and payload. */
static int push_run (store_t *s, lua_State *L, const char *id) {
  store_q *q = store_q_get(s, "SELECT " RUN_COLS ", c.name AS channel, m.payload AS payload "
                              "FROM run r LEFT JOIN channel_message m ON m.id = r.message "
                              "LEFT JOIN channel c ON c.id = m.channel WHERE r.id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  int r = store_push_one(s, L, q);
  if (r == 1) return 1;
  if (r == 0) store_failf(s, "unknown run '%s'", id);
  return store_push_fail(s, L);
}

#define THROTTLED_AT_KEY             "scheduler:throttled_at"
#define THROTTLE_COOLDOWN_KEY        "scheduler:throttle_cooldown_ms"
#define DEFAULT_THROTTLE_COOLDOWN_MS 300000

/* 1 while the throttle cooldown lasts, 0 when not, -1 on error. */
static int throttle_cooldown (store_t *s, int64_t now_ms) {
  store_q *q = store_q_get(s, "SELECT key, value FROM meta WHERE key = '" THROTTLED_AT_KEY
                              "' OR key = '" THROTTLE_COOLDOWN_KEY "'");
  if (q == NULL) return -1;
  int64_t at = -1, window = DEFAULT_THROTTLE_COOLDOWN_MS;
  int rc, bad = 0;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    const char *k = store_col_text(s, q, 0, NULL), *v = store_col_text(s, q, 1, NULL);
    if (k == NULL || v == NULL) continue;
    if (strcmp(k, THROTTLED_AT_KEY) == 0) {
      at = store_ts_ms(v);
    } else {
      char *end;
      long long w = strtoll(v, &end, 10);
      if (end == v || *end != '\0' || w < 0)
        bad = 1;
      else
        window = (int64_t)w;
    }
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (bad) return store_failf(s, "meta " THROTTLE_COOLDOWN_KEY " must be a non-negative integer (ms)");
  return at >= 0 && now_ms - at < window;
}

int store_m_runnable (store_t *s, lua_State *L, int64_t limit) {
  char now[STORE_TS_LEN + 1];
  int64_t epoch = store_epoch(s);
  if (epoch < 0) return store_push_fail(s, L);
  store_now(s, now);
  int cool = throttle_cooldown(s, store_ts_ms(now));
  if (cool < 0) return store_push_fail(s, L);
  if (cool) { /* nothing new starts until the provider has had its rest */
    lua_newtable(L);
    json_push_array_mt(L);
    lua_setmetatable(L, -2);
    return 1;
  }
  store_q *q = store_q_get(
      s, "SELECT id, name, priority, runnable_since FROM process WHERE status = 'runnable' AND epoch = ? "
         "AND (retry_at IS NULL OR retry_at <= ?) ORDER BY priority DESC, runnable_since, name LIMIT ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_int(s, q, 1, epoch);
  store_bind_text(s, q, 2, now);
  store_bind_int(s, q, 3, limit);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* The run row of a dispatch, built from what the rule already knows. */
static void push_new_run (lua_State *L, const char *id, const store_proc *p, const char *message,
                          const char *trace, const char *node_id, const char *now) {
  lua_createtable(L, 0, 16);
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, p->id);
  lua_setfield(L, -2, "process");
  if (message) {
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
  }
  lua_pushliteral(L, "running");
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "tokens_in");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "tokens_out");
  lua_pushnumber(L, 0.0);
  lua_setfield(L, -2, "cost_usd");
  lua_newtable(L);
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "scope_log");
  if (trace) {
    lua_pushstring(L, trace);
    lua_setfield(L, -2, "trace_id");
  }
  lua_pushinteger(L, (lua_Integer)p->epoch);
  lua_setfield(L, -2, "epoch");
  lua_newtable(L);
  lua_setfield(L, -2, "metadata");
  if (node_id) {
    lua_pushstring(L, node_id);
    lua_setfield(L, -2, "node_id");
  }
  lua_pushstring(L, now);
  lua_setfield(L, -2, "heartbeat_at");
  lua_pushstring(L, now);
  lua_setfield(L, -2, "created_at");
}

int store_m_dispatch (store_t *s, lua_State *L, const char *process, const char *node_id) {
  store_proc p;
  store_id run_id, handler, message;
  char trace[256], now[STORE_TS_LEN + 1];
  int has_delivery = 0, trace_null = 1;
  int base = lua_gettop(L);
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_proc_find(s, process, &p) <= 0) goto fail;
  if (strcmp(p.status, "runnable") != 0) {
    store_op_abort(s);
    lua_pushnil(L);
    lua_pushfstring(L, "process '%s' is not runnable (%s)", process, p.status);
    return 2;
  }
  int gate = store_executor_gate(s, L, &p, node_id, 1, now); /* T6: required_tags */
  if (gate < 0) goto fail;
  if (gate != 1) {
    char why[sizeof s->err + 16];
    snprintf(why, sizeof why, "%s%s", gate == 2 ? "blocked: " : "", s->err);
    if (gate == 0)
      store_op_abort(s); /* another node's work: nothing changes */
    else if (store_op_commit(s) < 0)
      return store_push_fail(s, L);
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  store_uuid(s, run_id);
  if (p.has_resources) { /* gated: every resource must have a unit to spare */
    int r = store_res_acquire(s, L, p.id, NULL, store_now_ms());
    if (r < 0) goto fail;
    if (r == 0) {
      char why[sizeof s->err + 16];
      snprintf(why, sizeof why, "blocked: %s", s->err);
      if (store_proc_set(s, &p, "blocked", NULL, p.retry_count, now) < 0) goto fail;
      if (store_op_commit(s) < 0) return store_push_fail(s, L);
      lua_pushnil(L);
      lua_pushstring(L, why);
      return 2;
    }
  }
  store_q *q = store_q_get(
      s, "UPDATE process SET status = 'running', runnable_since = NULL, updated_at = ? WHERE id = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, now);
  store_bind_text(s, q, 2, p.id);
  if (store_exec_q(s, q) < 0) goto fail;
  /* A run consumes exactly one delivery: the oldest pending one (message ids
   * are time-ordered, so they break same-millisecond ties). */
  q = store_q_get(s, "SELECT d.handler, d.message, d.trace_id, c.name, m.payload FROM delivery d "
                     "JOIN channel_message m ON m.id = d.message JOIN channel c ON c.id = m.channel "
                     "WHERE d.process = ? AND d.status = 'pending' ORDER BY d.created_at, d.message LIMIT 1");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, p.id);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    has_delivery = 1;
    store_col_copy(s, q, 0, handler, sizeof handler);
    store_col_copy(s, q, 1, message, sizeof message);
    trace_null = store_col_type(s, q, 2) == STORE_TNULL;
    store_col_copy(s, q, 2, trace, sizeof trace);
    /* The row is built now, while the message's text is at hand. */
    push_new_run(L, run_id, &p, message, trace_null ? NULL : trace, node_id, now);
    size_t n;
    const char *v = store_col_text(s, q, 3, &n);
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, "channel");
    v = store_col_text(s, q, 4, &n);
    if (json_decode(L, v, n))
      lua_setfield(L, -2, "payload");
    else
      lua_pop(L, 1);
  } else {
    push_new_run(L, run_id, &p, NULL, NULL, node_id, now);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  q = store_q_get(
      s,
      "INSERT INTO run (id, process, message, status, tokens_in, tokens_out, cost_usd, scope_log, trace_id, "
      "epoch, metadata, node_id, heartbeat_at, created_at) "
      "VALUES (?, ?, ?, 'running', 0, 0, 0, '[]', ?, ?, '{}', ?, ?, ?)");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, run_id);
  store_bind_text(s, q, 2, p.id);
  store_bind_text(s, q, 3, has_delivery ? message : NULL);
  store_bind_text(s, q, 4, trace_null ? NULL : trace);
  store_bind_int(s, q, 5, p.epoch);
  store_bind_text(s, q, 6, node_id);
  store_bind_text(s, q, 7, now);
  store_bind_text(s, q, 8, now);
  if (store_exec_q(s, q) < 0) goto fail;
  if (p.has_resources && store_res_acquire(s, L, p.id, run_id, store_now_ms()) != 1) goto fail;
  if (has_delivery) {
    q = store_q_get(s, "UPDATE delivery SET status = 'queued', run = ? WHERE handler = ? AND message = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, run_id);
    store_bind_text(s, q, 2, handler);
    store_bind_text(s, q, 3, message);
    if (store_exec_q(s, q) < 0) goto fail;
  }
  return store_op_end(s, L, base, 1);
fail:
  return store_op_end(s, L, base, 0);
}

static int has_pending (store_t *s, const char *process) {
  store_q *q = store_q_get(s, "SELECT 1 FROM delivery WHERE process = ? AND status = 'pending' LIMIT 1");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, process);
  int rc = store_step(s, q);
  store_reset(s, q);
  return rc == STORE_ERR ? -1 : rc == STORE_ROW;
}

/* T10: this failure is the third failed, timed-out or throttled run in a row. */
static int daemon_breaker (store_t *s, const char *process) {
  store_q *q = store_q_get(s, "SELECT status FROM run WHERE process = ? AND status <> 'running' "
                              "ORDER BY created_at DESC, id DESC LIMIT 3");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, process);
  int rc, n = 0, bad = 0;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    const char *st = store_col_text(s, q, 0, NULL);
    n++;
    bad += st && (strcmp(st, "failed") == 0 || strcmp(st, "timeout") == 0 || strcmp(st, "throttled") == 0);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  return n == 3 && bad == 3;
}

static int daemon_alert (store_t *s, lua_State *L, const char *process, const char *run_id, const char *now) {
  store_id id;
  char name[512];
  store_q *q = store_q_get(s, "SELECT name FROM process WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, process);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) store_col_copy(s, q, 0, name, sizeof name);
  store_reset(s, q);
  if (rc != STORE_ROW) return rc == STORE_ERR ? -1 : store_failf(s, "unknown process '%s'", process);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, process);
  lua_setfield(L, -2, "process_id");
  lua_pushstring(L, run_id);
  lua_setfield(L, -2, "run_id");
  int r = store_json(s, L, -1, "metadata");
  lua_pop(L, 1);
  if (r < 0) return -1;
  q = store_q_get(s, "INSERT INTO alert (id, severity, alert_type, source, message, metadata, created_at) "
                     "VALUES (?, 'critical', 'process:daemon_suspended', ?, ?, ?, ?)");
  if (q == NULL) return -1;
  char msg[600];
  snprintf(msg, sizeof msg, "daemon '%s' suspended after 3 consecutive failed or throttled runs", name);
  store_uuid(s, id);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, name);
  store_bind_text(s, q, 3, msg);
  store_bind_ltext(s, q, 4, s->jb.data, s->jb.len);
  store_bind_text(s, q, 5, now);
  return store_exec_q(s, q);
}

/* Length of at most max bytes of v that ends on a UTF-8 character boundary. */
static size_t utf8_cut (const char *v, size_t n, size_t max) {
  if (n <= max) return n;
  while (max > 0 && ((unsigned char)v[max] & 0xC0) == 0x80) max--;
  return max;
}

/* What a run ends with; JSON fields live in s->jb at off/len (len 0: none). */
typedef struct run_end_args {
  const char *status, *error, *model_version;
  int64_t tokens_in, tokens_out, duration;
  int duration_given;
  double cost;
  size_t off[3], len[3]; /* result, snapshot, metadata */
} run_end_args;

/* The end of a run, inside a transaction: the run recorded, its delivery
 * delivered, its pools released, the process transition, the breaker's alert
 * and child:exited. The process row is left in p. */
static int run_end (store_t *s, lua_State *L, const char *run_id, const run_end_args *e, store_proc *pp,
                    const char *now) {
  store_proc p;
  store_id process;
  char run_status[16];
  const char *status = e->status, *error = e->error;
  store_q *q = store_q_get(s, "SELECT process, status FROM run WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, run_id);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, process, sizeof process);
    store_col_copy(s, q, 1, run_status, sizeof run_status);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (rc == STORE_DONE) {
    store_failf(s, "unknown run '%s'", run_id);
    return -1;
  }
  if (strcmp(run_status, "running") != 0) {
    store_failf(s, "run '%s' is not running (%s)", run_id, run_status);
    return -1;
  }
  q = store_q_get(
      s,
      "UPDATE run SET status = ?, tokens_in = ?, tokens_out = ?, cost_usd = ?, duration_ms = ?, error = ?, "
      "model_version = ?, result = ?, snapshot = COALESCE(?, snapshot), metadata = COALESCE(?, metadata), "
      "completed_at = ? WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, status);
  store_bind_int(s, q, 2, e->tokens_in);
  store_bind_int(s, q, 3, e->tokens_out);
  store_bind_float(s, q, 4, e->cost);
  if (e->duration_given)
    store_bind_int(s, q, 5, e->duration);
  else
    store_bind_null(s, q, 5);
  if (error)
    store_bind_ltext(s, q, 6, error, utf8_cut(error, strlen(error), MAX_ERROR));
  else
    store_bind_null(s, q, 6);
  store_bind_text(s, q, 7, e->model_version);
  for (int i = 0; i < 3; i++) {
    if (e->len[i])
      store_bind_ltext(s, q, 8 + i, s->jb.data + e->off[i], e->len[i]);
    else
      store_bind_null(s, q, 8 + i);
  }
  store_bind_text(s, q, 11, now);
  store_bind_text(s, q, 12, run_id);
  if (store_exec_q(s, q) < 0) return -1;
  /* The run's delivery (one by construction): found through (process, status),
   * which keeps the search off the history, then updated by its key. */
  for (;;) {
    store_id handler, message;
    q = store_q_get(
        s, "SELECT handler, message FROM delivery WHERE process = ? AND status = 'queued' AND run = ?");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, process);
    store_bind_text(s, q, 2, run_id);
    rc = store_step(s, q);
    if (rc == STORE_ROW) {
      store_col_copy(s, q, 0, handler, sizeof handler);
      store_col_copy(s, q, 1, message, sizeof message);
    }
    store_reset(s, q);
    if (rc == STORE_ERR) return -1;
    if (rc == STORE_DONE) break;
    q = store_q_get(s, "UPDATE delivery SET status = 'delivered' WHERE handler = ? AND message = ?");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, handler);
    store_bind_text(s, q, 2, message);
    if (store_exec_q(s, q) < 0) return -1;
  }

  /* Pools held by the run are free again; processes blocked on them may go. */
  if (store_res_release(s, L, run_id, now) < 0) return -1;

  /* The process transition (§2.2, see the map at the top); an out-of-band
   * disable or suspend wins. */
  if (store_proc_by_id(s, process, &p) <= 0) return -1;
  *pp = p;
  const char *next = NULL;
  int64_t retry_count = p.retry_count;
  char retry_at[STORE_TS_LEN + 1], *retry = NULL;
  int ok = strcmp(status, "completed") == 0;
  int throttled = strcmp(status, "throttled") == 0;
  int failed = strcmp(status, "failed") == 0 || strcmp(status, "timeout") == 0 || throttled;
  int exit_code = -1; /* >= 0: the child finished for good */
  int breaker = 0;
  if (strcmp(p.status, "disabled") == 0 || strcmp(p.status, "suspended") == 0) {
    next = NULL;
  } else if (strcmp(status, "suspended") == 0) {
    next = "waiting"; /* T14: the run waits on a condition */
  } else if (strcmp(p.mode, "daemon") == 0) {
    if (failed && (breaker = daemon_breaker(s, p.id)) < 0) return -1;
    if (breaker) {
      next = "suspended"; /* T10 */
    } else {
      int pending = has_pending(s, p.id);
      if (pending < 0) return -1;
      next = pending ? "runnable" : "waiting"; /* T8, T11 */
    }
  } else if (ok) {
    next = "completed"; /* T9 */
    exit_code = 0;
  } else if (p.retry_count < p.max_retries) {
    next = "runnable"; /* T12 */
    retry_count++;
    if (p.has_backoff && p.retry_backoff_ms > 0) { /* exponential: backoff, 2x, 4x, ... */
      int shift = retry_count - 1 > 20 ? 20 : (int)(retry_count - 1);
      store_ts_add_ms(now, p.retry_backoff_ms << shift, retry_at);
      retry = retry_at;
    }
  } else {
    next = "disabled"; /* T13 */
    exit_code = throttled ? 3 : 1;
  }
  if (next && store_proc_set(s, &p, next, retry, retry_count, now) < 0) return -1;
  if (throttled) { /* starts the cooldown */
    q = store_q_get(
        s, "INSERT INTO meta (key, value, updated_at) VALUES ('" THROTTLED_AT_KEY "', ?, ?) "
           "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, now);
    store_bind_text(s, q, 2, now);
    if (store_exec_q(s, q) < 0) return -1;
  }
  if (breaker && daemon_alert(s, L, p.id, run_id, now) < 0) return -1;
  if (exit_code >= 0 &&
      store_post_exit(s, L, p.id, exit_code, run_id, error, e->duration_given ? e->duration : -1, now) < 0)
    return -1;
  return 0;
}

int store_m_run_finish (store_t *s, lua_State *L, const char *run_id, int t) {
  static const char *const fields[] = {
      "status",        "tokens_in", "tokens_out", "cost_usd", "duration_ms", "error",
      "model_version", "result",    "snapshot",   "metadata", NULL,
  };
  if (t) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "run_finish: field names must be strings");
      const char *k = lua_tostring(L, -2);
      int known = 0;
      for (int i = 0; fields[i] && !known; i++) known = strcmp(k, fields[i]) == 0;
      if (!known) return luaL_error(L, "run_finish: unknown field '%s'", k);
      lua_pop(L, 1);
    }
  }
  const char *status = store_opt_string(L, t, "status", "completed");
  int64_t tokens_in = store_opt_int(L, t, "tokens_in", 0, NULL);
  int64_t tokens_out = store_opt_int(L, t, "tokens_out", 0, NULL);
  int duration_given;
  int64_t duration = store_opt_int(L, t, "duration_ms", 0, &duration_given);
  const char *error = store_opt_string(L, t, "error", NULL);
  const char *model_version = store_opt_string(L, t, "model_version", NULL);
  double cost = 0;
  if (t) {
    lua_getfield(L, t, "cost_usd");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "run_finish: bad field 'cost_usd' (number expected, got %s)",
                          luaL_typename(L, -1));
      cost = (double)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  if (strcmp(status, "completed") != 0 && strcmp(status, "failed") != 0 && strcmp(status, "timeout") != 0 &&
      strcmp(status, "suspended") != 0 && strcmp(status, "throttled") != 0) {
    store_failf(s, "invalid run status '%s'", status);
    return store_push_fail(s, L);
  }
  /* JSON fields, encoded side by side; pointers only once all are in. */
  static const char *const json_fields[] = {"result", "snapshot", "metadata"};
  size_t off[3] = {0}, len[3] = {0};
  s->jb.len = 0;
  for (int i = 0; i < 3 && t; i++) {
    lua_getfield(L, t, json_fields[i]);
    int rc = lua_isnil(L, -1) ? 0 : store_json_add(s, L, -1, json_fields[i], &off[i], &len[i]);
    lua_pop(L, 1);
    if (rc < 0) return store_push_fail(s, L);
  }
  if (len[2] && s->jb.data[off[2]] != '{') {
    store_failf(s, "metadata must be a JSON object");
    return store_push_fail(s, L);
  }

  run_end_args e;
  memset(&e, 0, sizeof e);
  e.status = status;
  e.error = error;
  e.model_version = model_version;
  e.tokens_in = tokens_in;
  e.tokens_out = tokens_out;
  e.duration = duration;
  e.duration_given = duration_given;
  e.cost = cost;
  memcpy(e.off, off, sizeof off);
  memcpy(e.len, len, sizeof len);
  store_proc p;
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (run_end(s, L, run_id, &e, &p, now) < 0) {
    store_op_abort(s);
    return store_push_fail(s, L);
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  store_q *row = store_q_get(s, s->sql_proc_by_id);
  if (row == NULL) return store_push_fail(s, L);
  store_bind_text(s, row, 1, p.id);
  if (store_push_one(s, L, row) != 1) return store_push_fail(s, L);
  return 1;
}

typedef struct lost_run {
  store_id id, process;
} lost_run;

int store_m_recover (store_t *s, lua_State *L, const char *node_id) {
  char now[STORE_TS_LEN + 1];
  lost_run *runs = NULL;
  size_t nruns = 0, cap = 0;
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, "SELECT id, process FROM run WHERE status = 'running' AND node_id = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, node_id);
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    lost_run *bigger = store_grow(s, runs, &cap, nruns, sizeof *runs);
    if (bigger == NULL) {
      store_reset(s, q);
      goto fail;
    }
    runs = bigger;
    store_col_copy(s, q, 0, runs[nruns].id, sizeof(store_id));
    store_col_copy(s, q, 1, runs[nruns].process, sizeof(store_id));
    nruns++;
  }
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  if (store_executor_mark(s, node_id, "dead") < 0) goto fail; /* it runs nothing any more */
  for (size_t i = 0; i < nruns; i++) {
    /* The run's delivery is owed again; the process runs again. */
    q = store_q_get(s, "UPDATE delivery SET status = 'pending', run = NULL "
                       "WHERE process = ? AND status = 'queued' AND run = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, runs[i].process);
    store_bind_text(s, q, 2, runs[i].id);
    if (store_exec_q(s, q) < 0) goto fail;
    q = store_q_get(s, "UPDATE run SET status = 'failed', error = 'node stopped during the run', "
                       "completed_at = ? WHERE id = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, now);
    store_bind_text(s, q, 2, runs[i].id);
    if (store_exec_q(s, q) < 0) goto fail;
    if (store_res_release(s, L, runs[i].id, now) < 0) goto fail; /* its pools are free again */
    store_proc p;
    int r = store_proc_by_id(s, runs[i].process, &p);
    if (r < 0) goto fail;
    if (r == 0 || strcmp(p.status, "disabled") == 0 || strcmp(p.status, "suspended") == 0 ||
        strcmp(p.status, "completed") == 0)
      continue;
    if (store_proc_set(s, &p, "runnable", NULL, p.retry_count, now) < 0) goto fail;
  }
  free(runs);
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, (lua_Integer)nruns);
  return 1;
fail:
  free(runs);
  store_op_abort(s);
  return store_push_fail(s, L);
}

int store_m_run_get (store_t *s, lua_State *L, const char *id) { return push_run(s, L, id); }

int store_m_run_list (store_t *s, lua_State *L, int t) {
  const char *process = store_opt_string(L, t, "process", NULL);
  int64_t limit = store_opt_int(L, t, "limit", 20, NULL);
  store_q *q;
  store_proc p; /* bound below: must outlive the step */
  if (process) {
    if (store_proc_find(s, process, &p) <= 0) return store_push_fail(s, L);
    q = store_q_get(s, "SELECT " RUN_COLS "FROM run r WHERE r.process = ? "
                       "ORDER BY r.created_at DESC, r.id DESC LIMIT ?");
    if (q == NULL) return store_push_fail(s, L);
    store_bind_text(s, q, 1, p.id);
    store_bind_int(s, q, 2, limit);
  } else {
    q = store_q_get(s, "SELECT " RUN_COLS "FROM run r ORDER BY r.created_at DESC, r.id DESC LIMIT ?");
    if (q == NULL) return store_push_fail(s, L);
    store_bind_int(s, q, 1, limit);
  }
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* {============ leases and limits */

#define DEFAULT_MAX_DURATION_MS 900000 /* 15 min, also the heartbeat lease */

int64_t store_ts_ms (const char *ts) {
  char zero[STORE_TS_LEN + 1];
  store_ts_add_ms(ts, 0, zero); /* normalises; parse below */
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int msec = 0;
  sscanf(zero, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
         &tm.tm_sec, &msec);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm) * 1000 + msec;
}

void store_ts_from_ms (int64_t ms, char out[STORE_TS_LEN + 1]) {
  store_ts_add_ms("1970-01-01T00:00:00.000Z", ms, out);
}

int64_t store_now_ms (void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct reaped {
  store_id id;
  int64_t duration;
} reaped;

int store_m_reap (store_t *s, lua_State *L, int64_t now_ms) {
  char now[STORE_TS_LEN + 1];
  store_ts_from_ms(now_ms, now);
  reaped *v = NULL;
  size_t n = 0, cap = 0;
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, "SELECT r.id, r.created_at, r.heartbeat_at, p.max_duration_ms FROM run r "
                              "JOIN process p ON p.id = r.process WHERE r.status = 'running'");
  if (q == NULL) goto fail;
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    int64_t created = store_ts_ms(store_col_text(s, q, 1, NULL));
    const char *hb = store_col_text(s, q, 2, NULL);
    int64_t beat = hb ? store_ts_ms(hb) : created;
    int64_t max = store_col_type(s, q, 3) == STORE_TNULL ? DEFAULT_MAX_DURATION_MS : store_col_int(s, q, 3);
    if (now_ms - created <= max && now_ms - beat <= DEFAULT_MAX_DURATION_MS) continue;
    reaped *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    store_col_copy(s, q, 0, v[n].id, sizeof v[n].id);
    v[n++].duration = now_ms - created;
  }
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  for (size_t i = 0; i < n; i++) {
    run_end_args e;
    memset(&e, 0, sizeof e);
    e.status = "timeout";
    e.error = "run exceeded its maximum duration";
    e.duration = v[i].duration;
    e.duration_given = 1;
    store_proc p;
    if (run_end(s, L, v[i].id, &e, &p, now) < 0) goto fail;
  }
  free(v);
  v = NULL;
  if (store_executor_reap(s, L, now_ms) < 0) goto fail; /* silent nodes: stale */
  lua_settop(L, base);
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
fail:
  free(v);
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

int store_m_heartbeat (store_t *s, lua_State *L, const char *node_id) {
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  store_q *q = store_q_get(s, "UPDATE run SET heartbeat_at = ? WHERE status = 'running' AND node_id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, now);
  store_bind_text(s, q, 2, node_id);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  int64_t n = store_changes(s);
  if (store_executor_beat(s, node_id, now) < 0) return store_push_fail(s, L); /* the node itself */
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* }============ */
