/* store.c — the driver-neutral core of the store: statements, transactions,
 * rows as Lua tables, ids and timestamps, and the lookups every rule shares. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* {============ errors */

int store_failf (store_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  return -1;
}

void *store_grow (store_t *s, void *v, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return v;
  size_t ncap = *cap ? *cap * 2 : 8;
  void *bigger = realloc(v, ncap * size);
  if (bigger == NULL) {
    store_failf(s, "out of memory");
    return NULL;
  }
  *cap = ncap;
  return bigger;
}

int store_fail_sql (store_t *s) { return store_failf(s, "store: %s", s->drv->errmsg(s)); }

int store_push_fail (store_t *s, lua_State *L) {
  lua_pushnil(L);
  lua_pushstring(L, s->err);
  return 2;
}

int store_op_end (store_t *s, lua_State *L, int base, int ok) {
  if (ok && store_op_commit(s) == 0) return 1;
  if (!ok) store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

/* }============ */

/* {============ statements */

store_q *store_q_get (store_t *s, const char *sql) {
  uintptr_t h = ((uintptr_t)sql >> 3) * 2654435761u;
  size_t i = (size_t)(h % STORE_QCAP);
  for (size_t n = 0; n < STORE_QCAP; n++, i = (i + 1) % STORE_QCAP) {
    store_q *q = &s->cache[i];
    if (q->sql == sql) {
      if (q->active) store_reset(s, q);
      return q;
    }
    if (q->sql == NULL) {
      q->st = s->drv->prepare(s, sql);
      if (q->st == NULL) return NULL;
      q->sql = sql;
      return q;
    }
  }
  store_failf(s, "store: statement cache full");
  return NULL;
}

int store_step (store_t *s, store_q *q) {
  if (!q->active) {
    q->active = 1;
    s->nactive++;
  }
  int rc = s->drv->step(q->st);
  if (rc == STORE_ERR) store_fail_sql(s);
  return rc;
}

void store_reset (store_t *s, store_q *q) {
  if (q->active) {
    q->active = 0;
    s->nactive--;
  }
  s->drv->reset(q->st);
}

int store_exec_q (store_t *s, store_q *q) {
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {}
  store_reset(s, q);
  return rc == STORE_DONE ? 0 : -1;
}

int64_t store_changes (store_t *s) { return s->drv->changes(s); }

void store_bind_text (store_t *s, store_q *q, int i, const char *v) {
  if (v)
    s->drv->bind_text(q->st, i, v, strlen(v));
  else
    s->drv->bind_null(q->st, i);
}

void store_bind_ltext (store_t *s, store_q *q, int i, const char *v, size_t n) {
  s->drv->bind_text(q->st, i, v ? v : "", n);
}

void store_bind_int (store_t *s, store_q *q, int i, int64_t v) { s->drv->bind_int(q->st, i, v); }
void store_bind_float (store_t *s, store_q *q, int i, double v) { s->drv->bind_float(q->st, i, v); }
void store_bind_null (store_t *s, store_q *q, int i) { s->drv->bind_null(q->st, i); }
int store_col_type (store_t *s, store_q *q, int i) { return s->drv->column_type(q->st, i); }
int64_t store_col_int (store_t *s, store_q *q, int i) { return s->drv->column_int(q->st, i); }
double store_col_float (store_t *s, store_q *q, int i) { return s->drv->column_float(q->st, i); }

const char *store_col_text (store_t *s, store_q *q, int i, size_t *len) {
  size_t n;
  const char *v = s->drv->column_text(q->st, i, &n);
  if (len) *len = n;
  return v;
}

void store_col_copy (store_t *s, store_q *q, int i, char *out, size_t outlen) {
  size_t n;
  const char *v = store_col_text(s, q, i, &n);
  if (v == NULL) n = 0;
  if (n >= outlen) n = outlen - 1;
  memcpy(out, v ? v : "", n);
  out[n] = '\0';
}

/* }============ */

/* {============ rows */

enum { KIND_PLAIN, KIND_JSON, KIND_BOOL };

/* How a column becomes a Lua value is decided by its name, the same in
 * every table: the data model gives each name one meaning. */
static int col_kind (const char *name) {
  static const char *const json_cols[] = {
      "config",        "data",          "definition", "event_types",   "executor_tags",
      "includes",      "inline_schema", "limits",     "metadata",      "model_constraints",
      "output_events", "payload",       "pending",    "required_tags", "resources",
      "result",        "return_schema", "schema",     "scope_log",     "snapshot",
      "spent",         "trace_meta",
  };
  static const char *const bool_cols[] = {
      "auto_close", "clear_context", "enabled", "is_active", "preemptible", "read_only", "tty",
  };
  for (size_t i = 0; i < sizeof json_cols / sizeof json_cols[0]; i++)
    if (strcmp(name, json_cols[i]) == 0) return KIND_JSON;
  for (size_t i = 0; i < sizeof bool_cols / sizeof bool_cols[0]; i++)
    if (strcmp(name, bool_cols[i]) == 0) return KIND_BOOL;
  return KIND_PLAIN;
}

static int q_kinds (store_t *s, store_q *q) {
  if (q->kinds) return 0;
  int n = s->drv->column_count(q->st);
  unsigned char *k = malloc(n > 0 ? (size_t)n : 1);
  if (k == NULL) return -1;
  for (int i = 0; i < n; i++) k[i] = (unsigned char)col_kind(s->drv->column_name(q->st, i));
  q->kinds = k;
  q->ncol = n;
  return 0;
}

void store_push_row (store_t *s, lua_State *L, store_q *q) {
  if (q_kinds(s, q) < 0) luaL_error(L, "out of memory");
  lua_createtable(L, 0, q->ncol);
  for (int i = 0; i < q->ncol; i++) {
    int t = s->drv->column_type(q->st, i);
    if (t == STORE_TNULL) continue;
    const char *name = s->drv->column_name(q->st, i);
    switch (t) {
    case STORE_TINT: {
      int64_t v = s->drv->column_int(q->st, i);
      if (q->kinds[i] == KIND_BOOL)
        lua_pushboolean(L, v != 0);
      else
        lua_pushinteger(L, (lua_Integer)v);
      break;
    }
    case STORE_TFLOAT:
      lua_pushnumber(L, (lua_Number)s->drv->column_float(q->st, i));
      break;
    default: {
      size_t n;
      const char *v = s->drv->column_text(q->st, i, &n);
      if (q->kinds[i] == KIND_JSON && !json_decode(L, v, n)) {
        lua_pop(L, 1); /* not JSON after all: hand back the text rather than lose it */
        lua_pushlstring(L, v, n);
      } else if (q->kinds[i] != KIND_JSON) {
        lua_pushlstring(L, v, n);
      }
    }
    }
    lua_setfield(L, -2, name);
  }
}

int store_push_rows (store_t *s, lua_State *L, store_q *q) {
  int rc;
  lua_Integer n = 0;
  lua_newtable(L);
  json_push_array_mt(L); /* an empty list encodes as [] */
  lua_setmetatable(L, -2);
  while ((rc = store_step(s, q)) == STORE_ROW) {
    store_push_row(s, L, q);
    lua_rawseti(L, -2, ++n);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int store_push_one (store_t *s, lua_State *L, store_q *q) {
  int rc = store_step(s, q);
  if (rc == STORE_ROW) store_push_row(s, L, q);
  store_reset(s, q);
  return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

/* }============ */

/* {============ transactions */

/* Savepoint statements by depth (cached like every other statement). */
static const char *const sp_begin[] = {
    "SAVEPOINT s1", "SAVEPOINT s2", "SAVEPOINT s3", "SAVEPOINT s4",
    "SAVEPOINT s5", "SAVEPOINT s6", "SAVEPOINT s7", "SAVEPOINT s8",
};
static const char *const sp_release[] = {
    "RELEASE s1", "RELEASE s2", "RELEASE s3", "RELEASE s4",
    "RELEASE s5", "RELEASE s6", "RELEASE s7", "RELEASE s8",
};
static const char *const sp_rollback[] = {
    "ROLLBACK TO s1", "ROLLBACK TO s2", "ROLLBACK TO s3", "ROLLBACK TO s4",
    "ROLLBACK TO s5", "ROLLBACK TO s6", "ROLLBACK TO s7", "ROLLBACK TO s8",
};
#define NSP ((int)(sizeof sp_begin / sizeof sp_begin[0]))

/* Runs a savepoint statement for nesting level lvl (1 = first nested level). */
static int sp_run (store_t *s, const char *const *tab, const char *verb, int lvl) {
  if (lvl <= NSP) {
    store_q *q = store_q_get(s, tab[lvl - 1]);
    return q ? store_exec_q(s, q) : -1;
  }
  char sql[48];
  snprintf(sql, sizeof sql, "%s s%d", verb, lvl);
  return s->drv->exec(s, sql);
}

int store_begin (store_t *s) {
  if (s->depth >= STORE_MAX_NEST) return store_failf(s, "store: transactions nested too deep");
  if (s->group && s->depth == 0) { /* the group's transaction, begun by its first operation */
    if (s->drv->begin(s) < 0) return -1;
    s->wake_mark[0] = s->nwoken;
    s->depth = 1;
    s->group_txn = 1;
  }
  int r = s->depth == 0 ? s->drv->begin(s) : sp_run(s, sp_begin, "SAVEPOINT", s->depth);
  if (r < 0) return -1;
  s->wake_mark[s->depth] = s->nwoken;
  s->depth++;
  return 0;
}

static void flush_wakes (store_t *s) {
  if (s->flushing) return; /* a callback that commits: the loop below sees its wakes */
  s->flushing = 1;
  for (size_t i = 0; i < s->nwoken; i++)
    if (s->wake) s->wake(s->wake_ud, s->woken[i]);
  s->nwoken = 0;
  s->flushing = 0;
}

int store_commit (store_t *s) {
  if (s->depth == 0) return store_failf(s, "store: commit without begin");
  if (s->depth == 1) {
    if (s->drv->commit(s) < 0) {
      char msg[sizeof s->err];
      memcpy(msg, s->err, sizeof msg);
      s->drv->rollback(s);
      memcpy(s->err, msg, sizeof msg);
      s->depth = 0;
      s->group_txn = 0;
      s->nwoken = 0;
      return -1;
    }
    s->depth = 0;
    s->group_txn = 0;
    flush_wakes(s);
    return 0;
  }
  if (sp_run(s, sp_release, "RELEASE", s->depth - 1) < 0) return -1;
  s->depth--;
  return 0;
}

int store_rollback (store_t *s) {
  if (s->depth == 0) return store_failf(s, "store: rollback without begin");
  int r;
  if (s->depth == 1) {
    r = s->drv->rollback(s);
    s->group_txn = 0;
  } else {
    /* ROLLBACK TO keeps the savepoint open: release it too. */
    r = sp_run(s, sp_rollback, "ROLLBACK TO", s->depth - 1);
    if (r == 0) r = sp_run(s, sp_release, "RELEASE", s->depth - 1);
  }
  s->depth--;
  s->nwoken = s->wake_mark[s->depth];
  s->epoch_known = 0; /* the epoch may have been set (and read) in what was undone */
  return r;
}

int store_op_begin (store_t *s) {
  if (store_begin(s) < 0) return -1;
  s->op_depth = s->depth;
  return 0;
}

int store_op_commit (store_t *s) {
  s->op_depth = 0;
  if (store_commit(s) == 0) return 0;
  if (s->depth > 0) { /* a nested level whose release failed: undo it */
    char msg[sizeof s->err];
    memcpy(msg, s->err, sizeof msg);
    store_rollback(s);
    memcpy(s->err, msg, sizeof msg);
  }
  return -1;
}

void store_op_abort (store_t *s) {
  char msg[sizeof s->err];
  memcpy(msg, s->err, sizeof msg); /* keep the reason, not the rollback's outcome */
  for (int i = 0; i < STORE_QCAP; i++)
    if (s->cache[i].active) store_reset(s, &s->cache[i]);
  s->op_depth = 0;
  if (s->depth > 0) store_rollback(s);
  memcpy(s->err, msg, sizeof msg);
}

void store_guard (store_t *s) {
  if (s->nactive > 0)
    for (int i = 0; i < STORE_QCAP && s->nactive > 0; i++)
      if (s->cache[i].active) store_reset(s, &s->cache[i]);
  if (s->op_depth) { /* a Lua error left a rule half done: undo it */
    while (s->depth >= s->op_depth) store_rollback(s);
    s->op_depth = 0;
  }
}

int store_wake_add (store_t *s, const char *process_id) {
  if (s->nwoken == s->capwoken) {
    size_t cap = s->capwoken ? s->capwoken * 2 : 16;
    store_id *w = realloc(s->woken, cap * sizeof *w);
    if (w == NULL) return store_failf(s, "out of memory");
    s->woken = w;
    s->capwoken = cap;
  }
  snprintf(s->woken[s->nwoken++], sizeof(store_id), "%s", process_id);
  return 0;
}

/* }============ */

/* {============ ids and time */

void store_now (store_t *s, char out[STORE_TS_LEN + 1]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != s->ts_sec || s->ts_prefix[0] == '\0') {
    struct tm tm;
    time_t sec = ts.tv_sec;
    gmtime_r(&sec, &tm);
    strftime(s->ts_prefix, sizeof s->ts_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
    s->ts_sec = ts.tv_sec;
  }
  int ms = (int)(ts.tv_nsec / 1000000);
  memcpy(out, s->ts_prefix, 19);
  out[19] = '.';
  out[20] = (char)('0' + ms / 100);
  out[21] = (char)('0' + ms / 10 % 10);
  out[22] = (char)('0' + ms % 10);
  out[23] = 'Z';
  out[24] = '\0';
}

/* ts + ms, for deadlines such as retry_at. */
void store_ts_add_ms (const char *ts, int64_t ms, char out[STORE_TS_LEN + 1]) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int msec = 0;
  sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
         &tm.tm_sec, &msec);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t total = (int64_t)timegm(&tm) * 1000 + msec + ms;
  time_t sec = (time_t)(total / 1000);
  gmtime_r(&sec, &tm);
  strftime(out, STORE_TS_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
  int msec_out = (int)(total % 1000);
  out[19] = '.';
  out[20] = (char)('0' + msec_out / 100);
  out[21] = (char)('0' + msec_out / 10 % 10);
  out[22] = (char)('0' + msec_out % 10);
  out[23] = 'Z';
  out[24] = '\0';
}

static uint64_t rotl (uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256**: fast, seeded from the kernel; ids need uniqueness, not secrecy. */
static uint64_t rng_next (store_t *s) {
  uint64_t *r = s->rng;
  uint64_t out = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
  r[2] ^= r[0];
  r[3] ^= r[1];
  r[1] ^= r[2];
  r[0] ^= r[3];
  r[2] ^= t;
  r[3] = rotl(r[3], 45);
  return out;
}

static void rng_seed (store_t *s) {
  if (getrandom(s->rng, sizeof s->rng, 0) != (ssize_t)sizeof s->rng) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->rng[0] = (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)s;
    s->rng[1] = (uint64_t)ts.tv_sec;
    s->rng[2] = 0x9E3779B97F4A7C15u;
    s->rng[3] = (uint64_t)clock();
  }
  if ((s->rng[0] | s->rng[1] | s->rng[2] | s->rng[3]) == 0) s->rng[0] = 1;
}

/* UUIDv7: 48-bit Unix milliseconds, then a counter that starts at a random
 * value each millisecond and counts up, so ids made by one node sort in the
 * order they were made; ORDER BY created_at, id breaks same-millisecond ties. */
void store_uuid (store_t *s, char out[STORE_ID_LEN + 1]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  if (ms > s->uuid_ms) {
    s->uuid_ms = ms;
    s->uuid_hi = rng_next(s) & 0x7FF; /* top bit clear: room to count */
    s->uuid_lo = rng_next(s) & 0x3FFFFFFFFFFFFFFFu;
  } else if (++s->uuid_lo > 0x3FFFFFFFFFFFFFFFu) {
    s->uuid_lo = 0;
    if (++s->uuid_hi > 0xFFF) {
      s->uuid_hi = 0;
      s->uuid_ms++;
    }
  }
  uint64_t hi = (uint64_t)s->uuid_ms << 16 | 0x7000 | s->uuid_hi;
  uint64_t lo = 0x8000000000000000u | s->uuid_lo;
  static const char hex[] = "0123456789abcdef";
  int p = 0;
  for (int i = 15; i >= 0; i--) {
    out[p++] = hex[(hi >> (i * 4)) & 15];
    if (p == 8 || p == 13) out[p++] = '-';
  }
  out[p++] = '-';
  for (int i = 15; i >= 0; i--) {
    out[p++] = hex[(lo >> (i * 4)) & 15];
    if (p == 23) out[p++] = '-';
  }
  out[p] = '\0';
}

int store_is_uuid (const char *v, size_t n) {
  if (n != STORE_ID_LEN) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return 0;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return 0;
    }
  }
  return 1;
}

/* }============ */

/* {============ shared lookups */

int64_t store_epoch (store_t *s) {
  if (s->epoch_known) return s->epoch;
  store_q *q = store_q_get(s, "SELECT value FROM meta WHERE key = 'epoch'");
  if (q == NULL) return -1;
  int rc = store_step(s, q);
  int64_t e = 0;
  if (rc == STORE_ROW) {
    size_t n;
    const char *v = store_col_text(s, q, 0, &n);
    e = v ? strtoll(v, NULL, 10) : 0;
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  s->epoch = e;
  s->epoch_known = 1;
  return e;
}

int store_json (store_t *s, lua_State *L, int idx, const char *what) {
  char err[256];
  s->jb.len = 0;
  if (json_encode(L, idx, &s->jb, 0, err, sizeof err) < 0) return store_failf(s, "%s: %s", what, err);
  return 0;
}

int store_json_add (store_t *s, lua_State *L, int idx, const char *what, size_t *off, size_t *len) {
  char err[256];
  *off = s->jb.len;
  if (json_encode(L, idx, &s->jb, 0, err, sizeof err) < 0) return store_failf(s, "%s: %s", what, err);
  *len = s->jb.len - *off;
  return 0;
}

#define PROC_COLS                                                                \
  "SELECT id, status, mode, epoch, retry_count, max_retries, retry_backoff_ms, " \
  "CASE WHEN resources = '[]' THEN 0 ELSE 1 END, parent_process FROM process "

static int proc_row (store_t *s, store_q *q, store_proc *p) {
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, p->id, sizeof p->id);
    store_col_copy(s, q, 1, p->status, sizeof p->status);
    store_col_copy(s, q, 2, p->mode, sizeof p->mode);
    p->epoch = store_col_int(s, q, 3);
    p->retry_count = store_col_int(s, q, 4);
    p->max_retries = store_col_int(s, q, 5);
    p->has_backoff = store_col_type(s, q, 6) != STORE_TNULL;
    p->retry_backoff_ms = store_col_int(s, q, 6);
    p->has_resources = (int)store_col_int(s, q, 7);
    p->parent[0] = '\0';
    if (store_col_type(s, q, 8) != STORE_TNULL) store_col_copy(s, q, 8, p->parent, sizeof p->parent);
  }
  store_reset(s, q);
  return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

int store_proc_by_id (store_t *s, const char *id, store_proc *p) {
  store_q *q = store_q_get(s, PROC_COLS "WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, id);
  int r = proc_row(s, q, p);
  if (r == 0) store_failf(s, "unknown process '%s'", id);
  return r;
}

int store_proc_find (store_t *s, const char *v, store_proc *p) {
  int r;
  if (store_is_uuid(v, strlen(v))) {
    store_q *q = store_q_get(s, PROC_COLS "WHERE id = ?");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, v);
    if ((r = proc_row(s, q, p)) != 0) return r;
  }
  int64_t epoch = store_epoch(s);
  if (epoch < 0) return -1;
  store_q *q = store_q_get(s, PROC_COLS "WHERE name = ? AND epoch = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, v);
  store_bind_int(s, q, 2, epoch);
  r = proc_row(s, q, p);
  if (r == 0) store_failf(s, "unknown process '%s'", v);
  return r;
}

int store_valid_status (const char *status) {
  static const char *const all[] = {"waiting",   "runnable",  "running", "blocked",
                                    "suspended", "completed", "disabled"};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp(status, all[i]) == 0) return 1;
  return 0;
}

int store_proc_set (store_t *s, const store_proc *p, const char *status, const char *retry_at,
                    int64_t retry_count, const char *now) {
  int to_runnable = strcmp(status, "runnable") == 0;
  int was_runnable = strcmp(p->status, "runnable") == 0;
  /* runnable keeps an existing runnable_since (or starts it); anything else clears it. */
  store_q *q = store_q_get(
      s, "UPDATE process SET status = ?, runnable_since = CASE WHEN ? = 1 THEN COALESCE(runnable_since, ?) "
         "ELSE NULL END, retry_at = ?, retry_count = ?, updated_at = ? WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, status);
  store_bind_int(s, q, 2, to_runnable);
  store_bind_text(s, q, 3, now);
  store_bind_text(s, q, 4, retry_at);
  store_bind_int(s, q, 5, retry_count);
  store_bind_text(s, q, 6, now);
  store_bind_text(s, q, 7, p->id);
  if (store_exec_q(s, q) < 0) return -1;
  if (to_runnable && !was_runnable) return store_wake_add(s, p->id);
  return 0;
}

int store_chan_find (store_t *s, const char *name, store_id id) {
  store_q *q = store_q_get(s, "SELECT id FROM channel WHERE name = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, name);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) store_col_copy(s, q, 0, id, sizeof(store_id));
  store_reset(s, q);
  if (rc == STORE_DONE) store_failf(s, "unknown channel '%s'", name);
  return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

int store_chan_open (store_t *s, const char *name, store_id id) {
  int r = store_chan_find(s, name, id);
  if (r != 0) return r;
  if ((r = store_implicit_create(s, name, id)) == 0) store_failf(s, "unknown channel '%s'", name);
  return r;
}

/* }============ */

/* {============ option tables */

const char *store_opt_string (lua_State *L, int t, const char *field, const char *def) {
  if (t == 0) return def;
  lua_getfield(L, t, field);
  const char *v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad field '%s' (string expected, got %s)", field, luaL_typename(L, -1));
    v = lua_tostring(L, -1);
  }
  lua_pop(L, 1); /* the option table keeps the string alive */
  return v;
}

int64_t store_opt_int (lua_State *L, int t, const char *field, int64_t def, int *given) {
  if (given) *given = 0;
  if (t == 0) return def;
  lua_getfield(L, t, field);
  int64_t v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = (int64_t)lua_tointegerx(L, -1, &ok);
    if (!ok || lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "bad field '%s' (integer expected, got %s)", field, luaL_typename(L, -1));
    if (given) *given = 1;
  }
  lua_pop(L, 1);
  return v;
}

int store_opt_bool (lua_State *L, int t, const char *field, int def) {
  if (t == 0) return def;
  lua_getfield(L, t, field);
  int v = def;
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      luaL_error(L, "bad field '%s' (boolean expected, got %s)", field, luaL_typename(L, -1));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* }============ */

/* {============ meta */

int store_m_meta_get (store_t *s, lua_State *L, const char *key) {
  store_q *q = store_q_get(s, "SELECT value FROM meta WHERE key = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, key);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    size_t n;
    const char *v = store_col_text(s, q, 0, &n);
    if (v)
      lua_pushlstring(L, v, n);
    else
      lua_pushnil(L);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return store_push_fail(s, L);
  if (rc == STORE_DONE) lua_pushnil(L);
  return 1;
}

int store_m_meta_set (store_t *s, lua_State *L, const char *key, const char *value) {
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  store_q *q =
      value
          ? store_q_get(
                s, "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
          : store_q_get(s, "DELETE FROM meta WHERE key = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, key);
  if (value) {
    store_bind_text(s, q, 2, value);
    store_bind_text(s, q, 3, now);
  }
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  if (strcmp(key, "epoch") == 0) s->epoch_known = 0;
  lua_pushboolean(L, 1);
  return 1;
}

/* }============ */

/* {============ open and close */

store_t *store_open (const char *path, int sync_full, char *err, size_t errlen) {
  store_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->drv = store_sqlite_driver();
  rng_seed(s);
  if (s->drv->open(s, path, sync_full) < 0 || store_table_sql(s) < 0) {
    snprintf(err, errlen, "%s", s->err);
    store_close(s);
    return NULL;
  }
  return s;
}

void store_close (store_t *s) {
  if (s == NULL) return;
  if (s->db) {
    for (int i = 0; i < STORE_QCAP; i++) {
      if (s->cache[i].st) s->drv->finalize(s->cache[i].st);
      free(s->cache[i].kinds);
    }
    if (s->depth > 0) s->drv->rollback(s);
    s->drv->close(s);
  }
  free(s->woken);
  store_pattern_reset(s);
  free(s->rcpt);
  free(s->gen_sql);
  json_buf_free(&s->jb);
  free(s);
}

const char *store_error (store_t *s) { return s->err; }

void store_group_open (store_t *s) { s->group++; }

int store_group_close (store_t *s) {
  if (s->group > 0) s->group--;
  /* Nested groups share the outermost; a transaction the Lua code left open
   * (depth > 1) keeps the group's open until it is closed. */
  if (s->group > 0 || !s->group_txn || s->depth != 1) return 0;
  return store_commit(s);
}

void store_set_wake (store_t *s, store_wake_fn fn, void *ud) {
  s->wake = fn;
  s->wake_ud = ud;
}

/* }============ */
