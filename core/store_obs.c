/* store_obs.c — observability rows: run events, alerts, budgets.
 *
 * Lua API (methods of the db object):
 *   db:event_add(run_id, type, data) -> seq          seq counts 1, 2, ... per run
 *   db:events(run_id [, {after = seq, limit = n}]) -> {{seq, type, data, created_at}, ...}
 *   db:alert_add{severity, alert_type, source, message, metadata} -> row
 *   db:alert_list{unresolved = bool, alert_type = s, limit = n} -> rows, newest first
 *   db:budget_set{scope, period, max_tokens, max_cost_usd} -> row
 *   db:budget_charge(process_id, {tokens = n, cost_usd = x}) -> budgets charged
 *   db:budget_status([process_id]) -> {{scope, period, period_start, max_tokens,
 *                                       max_cost_usd, tokens, cost_usd}, ...}
 *
 * Budgets: scope "cogent" or "process:<id>" (a name is resolved to the id),
 * period "day" | "week" (ISO, from Monday) | "month" | "total", in UTC. Spending
 * is tracked in the budget row: budget_set starts it from the runs already made
 * in the current period, then the executor charges every LLM turn. A row whose
 * period has passed reads as zero spent and restarts on its next charge. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The db argument of a method, repaired after an earlier Lua error (as lstore.c does). */
static store_t *obs_db (lua_State *L) {
  store_t *s = store_check(L, 1);
  store_guard(s);
  return s;
}

static int obs_opt_table (lua_State *L, int i) {
  if (lua_isnoneornil(L, i)) return 0;
  luaL_checktype(L, i, LUA_TTABLE);
  return i;
}

/* {============ run events */

static int l_store_event_add (lua_State *L) {
  store_t *s = obs_db(L);
  const char *run_id = luaL_checkstring(L, 2);
  const char *type = luaL_checkstring(L, 3);
  if (type[0] == '\0') return luaL_argerror(L, 3, "event type must not be empty");
  const char *data = "{}";
  size_t dlen = 2;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    if (store_json(s, L, 4, "event data") < 0) return store_push_fail(s, L);
    data = s->jb.data;
    dlen = s->jb.len;
  }
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, "SELECT MAX(seq) FROM run_event WHERE run_id = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, run_id);
  int rc = store_step(s, q);
  int64_t seq = rc == STORE_ROW && store_col_type(s, q, 0) != STORE_TNULL ? store_col_int(s, q, 0) : 0;
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  if (seq == 0) { /* the first event: say clearly when the run does not exist */
    q = store_q_get(s, "SELECT 1 FROM run WHERE id = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, run_id);
    rc = store_step(s, q);
    store_reset(s, q);
    if (rc == STORE_ERR) goto fail;
    if (rc == STORE_DONE) {
      store_failf(s, "unknown run '%s'", run_id);
      goto fail;
    }
  }
  seq++;
  q = store_q_get(s, "INSERT INTO run_event (run_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, run_id);
  store_bind_int(s, q, 2, seq);
  store_bind_text(s, q, 3, type);
  store_bind_ltext(s, q, 4, data, dlen);
  store_bind_text(s, q, 5, now);
  if (store_exec_q(s, q) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, (lua_Integer)seq);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

static int l_store_events (lua_State *L) {
  store_t *s = obs_db(L);
  const char *run_id = luaL_checkstring(L, 2);
  int t = obs_opt_table(L, 3);
  int64_t after = store_opt_int(L, t, "after", 0, NULL);
  int64_t limit = store_opt_int(L, t, "limit", 1000, NULL);
  store_q *q = store_q_get(s, "SELECT seq, type, data, created_at FROM run_event "
                              "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, run_id);
  store_bind_int(s, q, 2, after);
  store_bind_int(s, q, 3, limit);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* }============ */

/* {============ alerts */

#define ALERT_COLS                                                                \
  "SELECT id, severity, alert_type, source, message, metadata, acknowledged_at, " \
  "resolved_at, created_at FROM alert "

static int l_store_alert_add (lua_State *L) {
  store_t *s = obs_db(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *severity = store_opt_string(L, 2, "severity", NULL);
  const char *type = store_opt_string(L, 2, "alert_type", NULL);
  const char *source = store_opt_string(L, 2, "source", NULL);
  const char *message = store_opt_string(L, 2, "message", NULL);
  if (severity == NULL || (strcmp(severity, "warning") != 0 && strcmp(severity, "critical") != 0 &&
                           strcmp(severity, "emergency") != 0)) {
    store_failf(s, "alert severity must be warning, critical or emergency (got %s)",
                severity ? severity : "none");
    return store_push_fail(s, L);
  }
  if (type == NULL || type[0] == '\0') {
    store_failf(s, "alert_type is required");
    return store_push_fail(s, L);
  }
  const char *meta = "{}";
  size_t mlen = 2;
  lua_getfield(L, 2, "metadata");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1))
      return luaL_error(L, "bad field 'metadata' (table expected, got %s)", luaL_typename(L, -1));
    if (store_json(s, L, -1, "metadata") < 0) return store_push_fail(s, L);
    meta = s->jb.data;
    mlen = s->jb.len;
  }
  lua_pop(L, 1);
  store_id id;
  char now[STORE_TS_LEN + 1];
  store_uuid(s, id);
  store_now(s, now);
  store_q *q = store_q_get(s, "INSERT INTO alert (id, severity, alert_type, source, message, metadata, "
                              "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, severity);
  store_bind_text(s, q, 3, type);
  store_bind_text(s, q, 4, source);
  store_bind_text(s, q, 5, message);
  store_bind_ltext(s, q, 6, meta, mlen);
  store_bind_text(s, q, 7, now);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  q = store_q_get(s, ALERT_COLS "WHERE id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  return 1;
}

static int l_store_alert_list (lua_State *L) {
  store_t *s = obs_db(L);
  int t = obs_opt_table(L, 2);
  int unresolved = store_opt_bool(L, t, "unresolved", 0);
  const char *type = store_opt_string(L, t, "alert_type", NULL);
  int64_t limit = store_opt_int(L, t, "limit", 100, NULL);
  store_q *q = store_q_get(s, ALERT_COLS
                           "WHERE (? = 0 OR resolved_at IS NULL) "
                           "AND (? IS NULL OR alert_type = ?) ORDER BY created_at DESC, id DESC LIMIT ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_int(s, q, 1, unresolved);
  store_bind_text(s, q, 2, type);
  store_bind_text(s, q, 3, type);
  store_bind_int(s, q, 4, limit);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* }============ */

/* {============ budgets */

/* API names of periods and their stored names (the budget table's words). */
static const char *const period_api[] = {"day", "week", "month", "total"};
static const char *const period_db[] = {"daily", "weekly", "monthly", "total"};
#define NPERIODS 4

static int period_index (const char *name, const char *const *names) {
  for (int i = 0; i < NPERIODS; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

/* The start of the period (index into period_db) that contains `now`, UTC. */
static void period_start (const char *now, int period, char out[STORE_TS_LEN + 1]) {
  static const char midnight[] = "T00:00:00.000Z";
  switch (period) {
  case 0: /* day */
    memcpy(out, now, 10);
    memcpy(out + 10, midnight, sizeof midnight);
    break;
  case 1: { /* week, from Monday */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    sscanf(now, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t day = timegm(&tm);
    gmtime_r(&day, &tm);
    time_t monday = day - (time_t)((tm.tm_wday + 6) % 7) * 86400;
    gmtime_r(&monday, &tm);
    strftime(out, STORE_TS_LEN + 1, "%Y-%m-%d", &tm);
    memcpy(out + 10, midnight, sizeof midnight);
    break;
  }
  case 2: /* month */
    memcpy(out, now, 8);
    memcpy(out + 8, "01", 2);
    memcpy(out + 10, midnight, sizeof midnight);
    break;
  default: /* total */
    memcpy(out, "1970-01-01", 10);
    memcpy(out + 10, midnight, sizeof midnight);
  }
}

/* A number field of the table at idx (absent: def). */
static double num_field (lua_State *L, int idx, const char *field, double def) {
  lua_getfield(L, idx, field);
  double v = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

#define BUDGET_COLS \
  "SELECT id, scope, period, period_start, limits, spent, created_at, updated_at FROM budget "

/* Pushes the row on top of the stack as the API shows it: limits and spending
 * flattened, the period in API words, spending zero once its period passed. */
static void push_budget (lua_State *L, const char *now) {
  int row = lua_gettop(L);
  lua_createtable(L, 0, 8);
  int out = row + 1;
  static const char *const copy[] = {"id", "scope", "created_at", "updated_at"};
  for (int i = 0; i < 4; i++) {
    lua_getfield(L, row, copy[i]);
    lua_setfield(L, out, copy[i]);
  }
  lua_getfield(L, row, "period");
  int p = period_index(luaL_optstring(L, -1, ""), period_db);
  lua_pop(L, 1);
  lua_pushstring(L, p >= 0 ? period_api[p] : "?");
  lua_setfield(L, out, "period");
  char start[STORE_TS_LEN + 1];
  period_start(now, p >= 0 ? p : 3, start);
  lua_getfield(L, row, "period_start");
  int current = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), start) >= 0;
  lua_pop(L, 1);
  lua_pushstring(L, start);
  lua_setfield(L, out, "period_start");
  lua_getfield(L, row, "limits");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "max_tokens");
    lua_setfield(L, out, "max_tokens");
    lua_getfield(L, -1, "max_cost_usd");
    lua_setfield(L, out, "max_cost_usd");
  }
  lua_pop(L, 1);
  lua_getfield(L, row, "spent");
  int spent = lua_gettop(L);
  lua_pushinteger(L, current && lua_istable(L, spent) ? (lua_Integer)num_field(L, spent, "tokens", 0) : 0);
  lua_setfield(L, out, "tokens");
  lua_pushnumber(L, current && lua_istable(L, spent) ? (lua_Number)num_field(L, spent, "cost_usd", 0) : 0.0);
  lua_setfield(L, out, "cost_usd");
  lua_pop(L, 1);
  lua_remove(L, row);
}

/* Resolves "process:<name or id>" to "process:<id>" in out; "cogent" stays. */
static int budget_scope (store_t *s, const char *scope, char *out, size_t outlen) {
  if (strcmp(scope, "cogent") == 0) {
    snprintf(out, outlen, "cogent");
    return 0;
  }
  if (strncmp(scope, "process:", 8) == 0 && scope[8] != '\0') {
    store_proc p;
    if (store_proc_find(s, scope + 8, &p) <= 0) return -1;
    snprintf(out, outlen, "process:%s", p.id);
    return 0;
  }
  return store_failf(s, "budget scope must be \"cogent\" or \"process:<id>\" (got '%s')", scope);
}

static int l_store_budget_set (lua_State *L) {
  store_t *s = obs_db(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *scope_in = store_opt_string(L, 2, "scope", NULL);
  const char *period_in = store_opt_string(L, 2, "period", NULL);
  int has_tokens, has_cost = 0;
  int64_t max_tokens = store_opt_int(L, 2, "max_tokens", 0, &has_tokens);
  double max_cost = 0;
  lua_getfield(L, 2, "max_cost_usd");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      return luaL_error(L, "bad field 'max_cost_usd' (number expected, got %s)", luaL_typename(L, -1));
    max_cost = (double)lua_tonumber(L, -1);
    has_cost = 1;
  }
  lua_pop(L, 1);
  char scope[64];
  if (scope_in == NULL) {
    store_failf(s, "budget scope is required (\"cogent\" or \"process:<id>\")");
    return store_push_fail(s, L);
  }
  int period = period_in ? period_index(period_in, period_api) : -1;
  if (period < 0) {
    store_failf(s, "budget period must be day, week, month or total (got %s)",
                period_in ? period_in : "none");
    return store_push_fail(s, L);
  }
  if (!has_tokens && !has_cost) {
    store_failf(s, "a budget needs max_tokens and/or max_cost_usd");
    return store_push_fail(s, L);
  }
  if ((has_tokens && max_tokens < 0) || (has_cost && !(max_cost >= 0))) {
    store_failf(s, "budget limits must not be negative");
    return store_push_fail(s, L);
  }
  if (budget_scope(s, scope_in, scope, sizeof scope) < 0) return store_push_fail(s, L);
  char limits[128], spent[128], now[STORE_TS_LEN + 1], start[STORE_TS_LEN + 1];
  int n = 0;
  n += snprintf(limits + n, sizeof limits - n, "{");
  if (has_cost) n += snprintf(limits + n, sizeof limits - n, "\"max_cost_usd\":%.17g", max_cost);
  if (has_tokens)
    n += snprintf(limits + n, sizeof limits - n, "%s\"max_tokens\":%lld", has_cost ? "," : "",
                  (long long)max_tokens);
  snprintf(limits + n, sizeof limits - n, "}");
  store_now(s, now);
  period_start(now, period, start);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  /* New rows start from what the runs of this period already spent. */
  store_q *q = store_q_get(s, "SELECT COALESCE(SUM(tokens_in + tokens_out), 0), COALESCE(SUM(cost_usd), 0) "
                              "FROM run WHERE created_at >= ? AND (? IS NULL OR process = ?)");
  if (q == NULL) goto fail;
  const char *pid = strcmp(scope, "cogent") == 0 ? NULL : scope + 8;
  store_bind_text(s, q, 1, start);
  store_bind_text(s, q, 2, pid);
  store_bind_text(s, q, 3, pid);
  int rc = store_step(s, q);
  int64_t tokens = rc == STORE_ROW ? store_col_int(s, q, 0) : 0;
  double cost = rc == STORE_ROW ? store_col_float(s, q, 1) : 0;
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  snprintf(spent, sizeof spent, "{\"cost_usd\":%.17g,\"tokens\":%lld}", cost, (long long)tokens);
  store_id id;
  store_uuid(s, id);
  q = store_q_get(
      s, "INSERT INTO budget (id, scope, period, period_start, limits, spent, created_at, updated_at) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, period) DO UPDATE SET "
         "limits = excluded.limits, updated_at = excluded.updated_at");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, scope);
  store_bind_text(s, q, 3, period_db[period]);
  store_bind_text(s, q, 4, start);
  store_bind_text(s, q, 5, limits);
  store_bind_text(s, q, 6, spent);
  store_bind_text(s, q, 7, now);
  store_bind_text(s, q, 8, now);
  if (store_exec_q(s, q) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  q = store_q_get(s, BUDGET_COLS "WHERE scope = ? AND period = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, scope);
  store_bind_text(s, q, 2, period_db[period]);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  push_budget(L, now);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

/* The budgets that apply to a process (its own and the cogent's), or every
 * budget when process is NULL. */
static const char sql_budgets_for[] =
    BUDGET_COLS "WHERE scope = 'cogent' OR scope = ? ORDER BY scope, period";
static const char sql_budgets_all[] = BUDGET_COLS "ORDER BY scope, period";

static store_q *budgets_query (store_t *s, const char *process, char *scope, size_t len) {
  if (process == NULL) return store_q_get(s, sql_budgets_all);
  store_q *q = store_q_get(s, sql_budgets_for);
  if (q == NULL) return NULL;
  snprintf(scope, len, "process:%s", process);
  store_bind_text(s, q, 1, scope);
  return q;
}

static int l_store_budget_status (lua_State *L) {
  store_t *s = obs_db(L);
  const char *process = luaL_optstring(L, 2, NULL);
  char scope[64], now[STORE_TS_LEN + 1];
  store_now(s, now);
  store_q *q = budgets_query(s, process, scope, sizeof scope);
  if (q == NULL) return store_push_fail(s, L);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    push_budget(L, now);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

static int l_store_budget_charge (lua_State *L) {
  store_t *s = obs_db(L);
  const char *process = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  int64_t tokens = store_opt_int(L, 3, "tokens", 0, NULL);
  double cost = num_field(L, 3, "cost_usd", 0);
  char scope[64], now[STORE_TS_LEN + 1];
  store_now(s, now);
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *q = budgets_query(s, process, scope, sizeof scope);
  if (q == NULL || store_push_rows(s, L, q) < 0) goto fail;
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, base + 1, i);
    push_budget(L, now); /* spending of the current period (zero after a rollover) */
    char spent[128];
    snprintf(spent, sizeof spent, "{\"cost_usd\":%.17g,\"tokens\":%lld}",
             num_field(L, -1, "cost_usd", 0) + cost,
             (long long)num_field(L, -1, "tokens", 0) + (long long)tokens);
    lua_getfield(L, -1, "period_start");
    lua_getfield(L, -2, "id");
    q = store_q_get(s, "UPDATE budget SET spent = ?, period_start = ?, updated_at = ? WHERE id = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, spent);
    store_bind_text(s, q, 2, lua_tostring(L, -2));
    store_bind_text(s, q, 3, now);
    store_bind_text(s, q, 4, lua_tostring(L, -1));
    int rc = store_exec_q(s, q);
    lua_pop(L, 3);
    if (rc < 0) goto fail;
  }
  lua_settop(L, base);
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, n);
  return 1;
fail:
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

/* }============ */

const luaL_Reg store_obs_methods[] = {
    {"event_add", l_store_event_add},         {"events", l_store_events},
    {"alert_add", l_store_alert_add},         {"alert_list", l_store_alert_list},
    {"budget_set", l_store_budget_set},       {"budget_status", l_store_budget_status},
    {"budget_charge", l_store_budget_charge}, {NULL, NULL},
};
