/* store_res.c — resources that gate dispatch: pools (held by a run until it
 * ends) and consumables (spent per run, refilled at each period boundary);
 * and unblock (T7), which also waits for a node carrying the required tags. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct res_row {
  store_id id;
  char name[256];
  int pool;
  double capacity;
  int64_t period_ms; /* 0: a consumable never refills */
} res_row;

static int res_find (store_t *s, const char *name, res_row *r) {
  store_q *q = store_q_get(s, "SELECT id, resource_type, capacity, period_ms FROM resource WHERE name = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, name);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, r->id, sizeof r->id);
    const char *t = store_col_text(s, q, 1, NULL);
    r->pool = t && strcmp(t, "pool") == 0;
    r->capacity = store_col_float(s, q, 2);
    r->period_ms = store_col_type(s, q, 3) == STORE_TNULL ? 0 : store_col_int(s, q, 3);
    snprintf(r->name, sizeof r->name, "%s", name);
  }
  store_reset(s, q);
  if (rc == STORE_DONE) store_failf(s, "unknown resource '%s'", name);
  return rc == STORE_ROW ? 1 : rc == STORE_DONE ? 0 : -1;
}

/* Units in use: held pool units, or consumable units spent this period. */
static int res_used (store_t *s, const res_row *r, int64_t now_ms, double *used) {
  store_q *q;
  char since[STORE_TS_LEN + 1]; /* bound: must outlive the step */
  if (r->pool) {
    q = store_q_get(
        s, "SELECT COALESCE(SUM(amount), 0) FROM resource_usage WHERE resource = ? AND released_at IS NULL");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, r->id);
  } else {
    store_ts_from_ms(r->period_ms > 0 ? now_ms - now_ms % r->period_ms : 0, since);
    q = store_q_get(
        s, "SELECT COALESCE(SUM(amount), 0) FROM resource_usage WHERE resource = ? AND created_at >= ?");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, r->id);
    store_bind_text(s, q, 2, since);
  }
  int rc = store_step(s, q);
  *used = rc == STORE_ROW ? store_col_float(s, q, 0) : 0;
  store_reset(s, q);
  return rc == STORE_ERR ? -1 : 0;
}

int store_res_acquire (store_t *s, lua_State *L, const char *process, const char *run_id, int64_t now_ms) {
  store_q *q = store_q_get(s, "SELECT resources FROM process WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, process);
  int rc = store_step(s, q);
  int top = lua_gettop(L);
  if (rc == STORE_ROW) {
    size_t n;
    const char *v = store_col_text(s, q, 0, &n);
    if (!json_decode(L, v ? v : "[]", v ? n : 2) || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
  }
  store_reset(s, q);
  if (rc != STORE_ROW) return rc == STORE_ERR ? -1 : store_failf(s, "unknown process '%s'", process);
  int list = lua_gettop(L), r = 1;
  char now[STORE_TS_LEN + 1];
  store_ts_from_ms(now_ms, now);
  for (lua_Integer i = 1; r == 1 && i <= (lua_Integer)lua_rawlen(L, list); i++) {
    lua_rawgeti(L, list, i);
    const char *name = lua_tostring(L, -1);
    res_row res;
    if (name == NULL)
      r = store_failf(s, "resources must be names");
    else
      r = res_find(s, name, &res);
    double used = 0;
    if (r == 1 && res_used(s, &res, now_ms, &used) < 0) r = -1;
    if (r == 1 && used + 1 > res.capacity) {
      store_failf(s, "resource '%s' exhausted", name);
      r = 0;
    }
    if (r == 1 && run_id) {
      store_id uid;
      q = store_q_get(
          s, "INSERT INTO resource_usage (id, resource, process, run, amount, created_at, released_at) "
             "VALUES (?, ?, ?, ?, 1, ?, ?)");
      if (q == NULL) {
        r = -1;
      } else {
        store_uuid(s, uid);
        store_bind_text(s, q, 1, uid);
        store_bind_text(s, q, 2, res.id);
        store_bind_text(s, q, 3, process);
        store_bind_text(s, q, 4, run_id);
        store_bind_text(s, q, 5, now);
        store_bind_text(s, q, 6, res.pool ? NULL : now); /* a consumable is spent, not held */
        if (store_exec_q(s, q) < 0) r = -1;
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  return r;
}

/* T7: every blocked process whose resources are available, and whose required
 * tags a running node carries, is runnable again. */
static int unblock (store_t *s, lua_State *L, int64_t now_ms, int64_t *count) {
  store_id *v = NULL;
  size_t n = 0, cap = 0;
  int64_t epoch = store_epoch(s);
  if (epoch < 0) return -1;
  store_q *q = store_q_get(
      s, "SELECT id FROM process WHERE status = 'blocked' AND epoch = ? ORDER BY priority DESC, id");
  if (q == NULL) return -1;
  store_bind_int(s, q, 1, epoch);
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    store_id *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    store_col_copy(s, q, 0, v[n++], sizeof(store_id));
  }
  store_reset(s, q);
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  for (size_t i = 0; i < n && rc != STORE_ERR; i++) {
    store_proc p;
    if (store_proc_by_id(s, v[i], &p) <= 0) {
      rc = STORE_ERR;
      break;
    }
    /* staying blocked until a node with the tags runs: no blocked/runnable churn */
    int g = store_executor_gate(s, L, &p, NULL, 0, now);
    if (g < 0) rc = STORE_ERR;
    if (g < 0 || g == 2) continue;
    int r = store_res_acquire(s, L, v[i], NULL, now_ms);
    if (r < 0) rc = STORE_ERR;
    if (r != 1) continue;
    if (store_proc_set(s, &p, "runnable", NULL, p.retry_count, now) < 0)
      rc = STORE_ERR;
    else
      (*count)++;
  }
  free(v);
  return rc == STORE_ERR ? -1 : 0;
}

int store_res_release (store_t *s, lua_State *L, const char *run_id, const char *now) {
  store_q *q =
      store_q_get(s, "UPDATE resource_usage SET released_at = ? WHERE run = ? AND released_at IS NULL");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, now);
  store_bind_text(s, q, 2, run_id);
  if (store_exec_q(s, q) < 0) return -1;
  if (store_changes(s) == 0) return 0;
  int64_t n = 0;
  return unblock(s, L, store_now_ms(), &n);
}

int store_m_unblock (store_t *s, lua_State *L, int64_t now_ms) {
  int64_t n = 0;
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (unblock(s, L, now_ms, &n) < 0) {
    store_op_abort(s);
    return store_push_fail(s, L);
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* {============ rows */

#define RES_COLS "SELECT id, name, resource_type, capacity, period_ms, metadata, created_at FROM resource "

/* Adds used and remaining to each row of the list on top of the stack. */
static int add_usage (store_t *s, lua_State *L, int64_t now_ms) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "name");
    res_row r;
    int found = res_find(s, lua_tostring(L, -1), &r);
    lua_pop(L, 1);
    double used = 0;
    if (found < 0 || (found && res_used(s, &r, now_ms, &used) < 0)) return -1;
    lua_pushnumber(L, used);
    lua_setfield(L, -2, "used");
    lua_pushnumber(L, r.capacity - used > 0 ? r.capacity - used : 0);
    lua_setfield(L, -2, "remaining");
    lua_pop(L, 1);
  }
  return 0;
}

int store_m_resource_upsert (store_t *s, lua_State *L, int t) {
  luaL_checktype(L, t, LUA_TTABLE);
  const char *name = store_opt_string(L, t, "name", NULL);
  if (name == NULL || *name == '\0') return luaL_error(L, "resource_upsert: field 'name' is required");
  const char *type = store_opt_string(L, t, "resource_type", "pool");
  int period_given;
  int64_t period = store_opt_int(L, t, "period_ms", 0, &period_given);
  double capacity = 1;
  if (lua_getfield(L, t, "capacity") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      return luaL_error(L, "resource_upsert: bad field 'capacity' (number expected, got %s)",
                        luaL_typename(L, -1));
    capacity = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  if (strcmp(type, "pool") != 0 && strcmp(type, "consumable") != 0) {
    store_failf(s, "invalid resource_type '%s' (pool or consumable)", type);
    return store_push_fail(s, L);
  }
  if (capacity < 0 || (period_given && period <= 0)) {
    store_failf(s, "%s must be positive", capacity < 0 ? "capacity" : "period_ms");
    return store_push_fail(s, L);
  }
  s->jb.len = 0;
  if (lua_getfield(L, t, "metadata") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  int rc = store_json(s, L, -1, "metadata");
  lua_pop(L, 1);
  if (rc < 0) return store_push_fail(s, L);
  char now[STORE_TS_LEN + 1];
  store_id id;
  store_now(s, now);
  store_uuid(s, id);
  store_q *q = store_q_get(
      s,
      "INSERT INTO resource (id, name, resource_type, capacity, period_ms, metadata, created_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET resource_type = excluded.resource_type, "
      "capacity = excluded.capacity, period_ms = excluded.period_ms, metadata = excluded.metadata");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, name);
  store_bind_text(s, q, 3, type);
  store_bind_float(s, q, 4, capacity);
  if (period_given)
    store_bind_int(s, q, 5, period);
  else
    store_bind_null(s, q, 5);
  store_bind_ltext(s, q, 6, s->jb.data, s->jb.len);
  store_bind_text(s, q, 7, now);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  q = store_q_get(s, RES_COLS "WHERE name = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, name);
  lua_createtable(L, 1, 0);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  lua_rawseti(L, -2, 1);
  if (add_usage(s, L, store_now_ms()) < 0) return store_push_fail(s, L);
  lua_rawgeti(L, -1, 1);
  return 1;
}

int store_m_resource_list (store_t *s, lua_State *L) {
  store_q *q = store_q_get(s, RES_COLS "ORDER BY name");
  if (q == NULL || store_push_rows(s, L, q) < 0 || add_usage(s, L, store_now_ms()) < 0)
    return store_push_fail(s, L);
  return 1;
}

/* }============ */
