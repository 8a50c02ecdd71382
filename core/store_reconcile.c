/* store_reconcile.c — the repair pass: every delivery an enabled handler is
 * owed (each message sent after the handler was created) and does not have,
 * created with the normal wake rules. Exact handlers are repaired by one
 * set-based statement; pattern and predicate handlers (few) one by one.
 * Then idle reaping: a daemon idle past its idle_timeout_ms has finished. */
#include "sandbox.h"
#include "store_int.h"

#include <lauxlib.h>

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "Sent after the handler was created": later, or the same millisecond with a
 * later (time-ordered) id. */
#define AFTER_H "(m.created_at > h.created_at OR (m.created_at = h.created_at AND m.id > h.id))"
#define MISSING "NOT EXISTS (SELECT 1 FROM delivery d WHERE d.handler = h.id AND d.message = m.id)"

/* Missing deliveries of one handler with a predicate on one channel. */
static int repair_judged (store_t *s, const char *hid, const char *chan, const char *now, int64_t *n) {
  store_q *q =
      store_q_get(s, "SELECT m.id, m.payload, m.trace_id, h.process, h.epoch, h.predicate FROM handler h "
                     "JOIN channel_message m ON m.channel = ? WHERE h.id = ? AND " AFTER_H " AND " MISSING
                     " ORDER BY m.created_at, m.id");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, chan);
  store_bind_text(s, q, 2, hid);
  typedef struct judged {
    store_id mid, process;
    char trace[128];
    int has_trace, match;
    int64_t epoch;
  } judged;
  judged *v = NULL;
  size_t nv = 0, cap = 0;
  char err[256], *lasterr = NULL;
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    judged *bigger = store_grow(s, v, &cap, nv, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    judged *j = &v[nv++];
    store_col_copy(s, q, 0, j->mid, sizeof j->mid);
    size_t plen;
    const char *payload = store_col_text(s, q, 1, &plen);
    j->has_trace = store_col_type(s, q, 2) != STORE_TNULL;
    store_col_copy(s, q, 2, j->trace, sizeof j->trace);
    store_col_copy(s, q, 3, j->process, sizeof j->process);
    j->epoch = store_col_int(s, q, 4);
    const char *pred = store_col_text(s, q, 5, NULL);
    j->match =
        pred ? sandbox_predicate(pred, payload ? payload : "{}", payload ? plen : 2, err, sizeof err) : 1;
    if (j->match < 0) {
      j->match = 0;
      lasterr = err;
    }
  }
  store_reset(s, q);
  for (size_t i = 0; i < nv && rc != STORE_ERR; i++) {
    q = store_q_get(s,
                    "INSERT INTO delivery (message, handler, process, status, trace_id, epoch, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (q == NULL) {
      rc = STORE_ERR;
      break;
    }
    store_bind_text(s, q, 1, v[i].mid);
    store_bind_text(s, q, 2, hid);
    store_bind_text(s, q, 3, v[i].process);
    store_bind_text(s, q, 4, v[i].match ? "pending" : "skipped");
    store_bind_text(s, q, 5, v[i].has_trace ? v[i].trace : NULL);
    store_bind_int(s, q, 6, v[i].epoch);
    store_bind_text(s, q, 7, now);
    if (store_exec_q(s, q) < 0)
      rc = STORE_ERR;
    else
      *n += v[i].match;
  }
  free(v);
  if (rc != STORE_ERR && lasterr) {
    q = store_q_get(s, "UPDATE handler SET last_error = ? WHERE id = ?");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, lasterr);
    store_bind_text(s, q, 2, hid);
    if (store_exec_q(s, q) < 0) return -1;
  }
  return rc == STORE_ERR ? -1 : 0;
}

/* Missing deliveries of one pattern handler without a predicate on one channel. */
static int repair_pattern (store_t *s, const char *hid, const char *chan, const char *now, int64_t *n) {
  store_q *q =
      store_q_get(s, "INSERT INTO delivery (message, handler, process, status, trace_id, epoch, created_at) "
                     "SELECT m.id, h.id, h.process, 'pending', m.trace_id, h.epoch, ? FROM handler h "
                     "JOIN channel_message m ON m.channel = ? WHERE h.id = ? AND " AFTER_H " AND " MISSING);
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, now);
  store_bind_text(s, q, 2, chan);
  store_bind_text(s, q, 3, hid);
  if (store_exec_q(s, q) < 0) return -1;
  *n += store_changes(s);
  return 0;
}

typedef struct ids {
  store_id a, b;
} ids;

static int collect (store_t *s, store_q *q, ids **v, size_t *n) {
  size_t cap = 0;
  int rc;
  *v = NULL;
  *n = 0;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    ids *bigger = store_grow(s, *v, &cap, *n, sizeof **v);
    if (bigger == NULL) {
      store_reset(s, q);
      return -1;
    }
    *v = bigger;
    store_col_copy(s, q, 0, (*v)[*n].a, sizeof(store_id));
    store_col_copy(s, q, 1, (*v)[*n].b, sizeof(store_id));
    (*n)++;
  }
  store_reset(s, q);
  return rc == STORE_ERR ? -1 : 0;
}

/* The wake rules for the deliveries this pass created (stamped `now`). */
static int wake_repaired (store_t *s, lua_State *L, const char *now) {
  store_q *q = store_q_get(
      s,
      "SELECT d.process, p.status, CASE WHEN EXISTS (SELECT 1 FROM wait_condition w WHERE w.process = p.id "
      "AND w.status = 'pending') THEN 1 ELSE 0 END, m.sender_process, m.payload, m.id FROM delivery d "
      "JOIN process p ON p.id = d.process JOIN channel_message m ON m.id = d.message "
      "WHERE d.created_at = ? AND d.status = 'pending' ORDER BY m.created_at, m.id");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, now);
  typedef struct woke {
    store_rcpt r;
    store_id sender, mid;
    int has_sender, exited;
  } woke;
  woke *v = NULL;
  size_t n = 0, cap = 0;
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    woke *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    woke *w = &v[n++];
    store_col_copy(s, q, 0, w->r.process, sizeof w->r.process);
    store_col_copy(s, q, 1, w->r.status, sizeof w->r.status);
    w->r.waits = (int)store_col_int(s, q, 2);
    w->has_sender = store_col_type(s, q, 3) != STORE_TNULL;
    store_col_copy(s, q, 3, w->sender, sizeof w->sender);
    store_col_copy(s, q, 5, w->mid, sizeof w->mid);
    size_t plen;
    const char *payload = store_col_text(s, q, 4, &plen);
    w->exited = 0;
    if (payload && json_decode(L, payload, plen)) {
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "type");
        w->exited = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "child:exited") == 0;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  store_reset(s, q);
  for (size_t i = 0; i < n && rc != STORE_ERR; i++) {
    /* the status may have changed since the scan: read it again */
    s->nrcpt = 0;
    store_q *st = store_q_get(s, "SELECT status FROM process WHERE id = ?");
    if (st == NULL) {
      rc = STORE_ERR;
      break;
    }
    store_bind_text(s, st, 1, v[i].r.process);
    if (store_step(s, st) == STORE_ROW) store_col_copy(s, st, 0, v[i].r.status, sizeof v[i].r.status);
    store_reset(s, st);
    if (s->caprcpt == 0 && (s->rcpt = malloc(16 * sizeof *s->rcpt)) != NULL) s->caprcpt = 16;
    if (s->caprcpt == 0) {
      rc = STORE_ERR;
      store_failf(s, "out of memory");
      break;
    }
    s->rcpt[0] = v[i].r;
    s->nrcpt = 1;
    if (store_wake_rcpts(s, L, v[i].mid, v[i].has_sender ? v[i].sender : NULL, v[i].exited, now) < 0)
      rc = STORE_ERR;
  }
  s->nrcpt = 0;
  free(v);
  return rc == STORE_ERR ? -1 : 0;
}

/* Idle reaping (idle_timeout_ms): a waiting daemon of the current epoch with
 * nothing owed to it (no pending delivery, no pending wait), idle for longer
 * than its idle_timeout_ms, has finished: completed, and its parent hears
 * child:exited (exit 0) once. Idle since updated_at: every status change
 * stamps it, so it is when its last run ended, or its creation, or a revival.
 * After the repair above, so a backfilled delivery has already woken its daemon. */
static int reap_idle (store_t *s, lua_State *L, const char *now, int64_t *count) {
  typedef struct idle {
    store_id id;
    char since[STORE_TS_LEN + 1];
    int64_t timeout;
  } idle;
  idle *v = NULL;
  size_t n = 0, cap = 0;
  int64_t epoch = store_epoch(s);
  if (epoch < 0) return -1;
  store_q *q = store_q_get(
      s, "SELECT p.id, p.updated_at, p.idle_timeout_ms FROM process p WHERE p.status = 'waiting' "
         "AND p.mode = 'daemon' AND p.idle_timeout_ms > 0 AND p.epoch = ? "
         "AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.process = p.id AND d.status = 'pending') "
         "AND NOT EXISTS (SELECT 1 FROM wait_condition w WHERE w.process = p.id AND w.status = 'pending')");
  if (q == NULL) return -1;
  store_bind_int(s, q, 1, epoch);
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    idle *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    store_col_copy(s, q, 0, v[n].id, sizeof v[n].id);
    store_col_copy(s, q, 1, v[n].since, sizeof v[n].since);
    v[n++].timeout = store_col_int(s, q, 2);
  }
  store_reset(s, q);
  int64_t now_ms = store_ts_ms(now);
  for (size_t i = 0; i < n && rc != STORE_ERR; i++) {
    if (now_ms - store_ts_ms(v[i].since) <= v[i].timeout) continue;
    store_id run; /* its last run, which its child:exited names */
    int has_run = 0;
    q = store_q_get(s, "SELECT id FROM run WHERE process = ? ORDER BY created_at DESC, id DESC LIMIT 1");
    if (q == NULL) {
      rc = STORE_ERR;
      break;
    }
    store_bind_text(s, q, 1, v[i].id);
    int r = store_step(s, q);
    if (r == STORE_ROW) {
      has_run = 1;
      store_col_copy(s, q, 0, run, sizeof run);
    }
    store_reset(s, q);
    if (r == STORE_ERR) {
      rc = STORE_ERR;
      break;
    }
    store_proc p;
    if (store_proc_by_id(s, v[i].id, &p) <= 0 ||
        store_proc_set(s, &p, "completed", NULL, p.retry_count, now) < 0 ||
        store_post_exit(s, L, p.id, 0, has_run ? run : NULL, NULL, -1, now) < 0) {
      rc = STORE_ERR;
      break;
    }
    (*count)++;
  }
  free(v);
  return rc == STORE_ERR ? -1 : 0;
}

int store_m_reconcile (store_t *s, lua_State *L) {
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  int64_t n = 0;
  size_t woken0 = s->nwoken;
  ids *judged = NULL, *pats = NULL;
  size_t njudged = 0, npats = 0;
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  /* Exact handlers without a predicate: one statement for all of them. */
  store_q *q =
      store_q_get(s, "INSERT INTO delivery (message, handler, process, status, trace_id, epoch, created_at) "
                     "SELECT m.id, h.id, h.process, 'pending', m.trace_id, h.epoch, ? FROM handler h "
                     "JOIN channel_message m ON m.channel = h.channel "
                     "WHERE h.enabled = 1 AND h.channel IS NOT NULL AND h.predicate IS NULL AND " AFTER_H
                     " AND " MISSING);
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, now);
  if (store_exec_q(s, q) < 0) goto fail;
  n += store_changes(s);
  /* Exact handlers with a predicate. */
  q = store_q_get(s, "SELECT id, channel FROM handler WHERE enabled = 1 AND channel IS NOT NULL "
                     "AND predicate IS NOT NULL");
  if (q == NULL || collect(s, q, &judged, &njudged) < 0) goto fail;
  for (size_t i = 0; i < njudged; i++)
    if (repair_judged(s, judged[i].a, judged[i].b, now, &n) < 0) goto fail;
  /* Pattern handlers, against every channel name. */
  q = store_q_get(s, "SELECT id, pattern FROM handler WHERE enabled = 1 AND pattern IS NOT NULL");
  if (q == NULL || collect(s, q, &pats, &npats) < 0) goto fail;
  if (npats > 0) {
    typedef struct named {
      store_id id;
      char *name;
    } named;
    named *cv = NULL;
    size_t ncv = 0, capcv = 0;
    q = store_q_get(s, "SELECT id, name FROM channel");
    if (q == NULL) goto fail;
    int rc;
    while ((rc = store_step(s, q)) == STORE_ROW) {
      if (ncv == capcv) {
        capcv = capcv ? capcv * 2 : 64;
        named *bigger = realloc(cv, capcv * sizeof *cv);
        if (bigger == NULL) {
          rc = STORE_ERR;
          store_failf(s, "out of memory");
          break;
        }
        cv = bigger;
      }
      store_col_copy(s, q, 0, cv[ncv].id, sizeof cv[ncv].id);
      size_t len;
      const char *name = store_col_text(s, q, 1, &len);
      cv[ncv].name = malloc(len + 1);
      if (cv[ncv].name == NULL) {
        rc = STORE_ERR;
        store_failf(s, "out of memory");
        break;
      }
      memcpy(cv[ncv].name, name, len);
      cv[ncv++].name[len] = '\0';
    }
    store_reset(s, q);
    /* The pattern and predicate of each pattern handler. */
    for (size_t i = 0; i < npats && rc != STORE_ERR; i++) {
      q = store_q_get(
          s, "SELECT pattern, CASE WHEN predicate IS NULL THEN 0 ELSE 1 END FROM handler WHERE id = ?");
      if (q == NULL) {
        rc = STORE_ERR;
        break;
      }
      store_bind_text(s, q, 1, pats[i].a);
      char pattern[512];
      int judged_h = 0;
      if ((rc = store_step(s, q)) == STORE_ROW) {
        store_col_copy(s, q, 0, pattern, sizeof pattern);
        judged_h = (int)store_col_int(s, q, 1);
      }
      store_reset(s, q);
      if (rc != STORE_ROW) break;
      for (size_t c = 0; c < ncv && rc != STORE_ERR; c++) {
        if (fnmatch(pattern, cv[c].name, 0) != 0) continue;
        int r = judged_h ? repair_judged(s, pats[i].a, cv[c].id, now, &n)
                         : repair_pattern(s, pats[i].a, cv[c].id, now, &n);
        if (r < 0) rc = STORE_ERR;
      }
    }
    for (size_t c = 0; c < ncv; c++) free(cv[c].name);
    free(cv);
    if (rc == STORE_ERR) goto fail;
  }
  if (n > 0 && wake_repaired(s, L, now) < 0) goto fail;
  int64_t reaped = 0;
  if (reap_idle(s, L, now, &reaped) < 0) goto fail;
  free(judged);
  free(pats);
  size_t woken = s->nwoken - woken0;
  lua_settop(L, base);
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, -2, "deliveries");
  lua_pushinteger(L, (lua_Integer)woken);
  lua_setfield(L, -2, "woken");
  lua_pushinteger(L, (lua_Integer)reaped);
  lua_setfield(L, -2, "reaped");
  return 1;
fail:
  free(judged);
  free(pats);
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}
