/* store_cron.c — cron rules (5-field expressions) and the system ticks. Each
 * enabled rule fires once per matching minute (cron.last_fired_minute), each
 * tick once per minute / hour (meta), so a restart neither repeats nor skips. */
#include "store_int.h"

#include <lauxlib.h>

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct cron_expr {
  uint64_t f[5]; /* minute, hour, day of month, month, weekday: one bit per value */
  int star[5];
} cron_expr;

static const struct {
  const char *name;
  int lo, hi;
} fields[5] = {
    {"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"weekday", 0, 7}};

static int num (const char **p, int *v) {
  if (!isdigit((unsigned char)**p)) return -1;
  long n = 0;
  while (isdigit((unsigned char)**p) && n < 1000) n = n * 10 + (*(*p)++ - '0');
  *v = (int)n;
  return 0;
}

/* One field (a comma list of *, a, a-b, with /n steps). 0, or -1 with err. */
static int parse_field (const char *text, int k, cron_expr *e, char *err, size_t errlen) {
  int lo = fields[k].lo, hi = fields[k].hi;
  const char *p = text;
  e->star[k] = strcmp(text, "*") == 0;
  for (;;) {
    int a, b, step = 1, single = 0;
    if (*p == '*') {
      p++;
      a = lo;
      b = hi;
    } else {
      if (num(&p, &a) < 0) goto bad;
      b = a;
      single = *p != '-';
      if (*p == '-') {
        p++;
        if (num(&p, &b) < 0) goto bad;
      }
    }
    if (*p == '/') {
      p++;
      if (num(&p, &step) < 0 || step < 1) goto bad;
      if (single) b = hi; /* a/n: from a to the end */
    }
    if (a < lo || a > hi || b < lo || b > hi) {
      snprintf(err, errlen, "%s value out of range %d-%d", fields[k].name, lo, hi);
      return -1;
    }
    if (a > b) {
      snprintf(err, errlen, "%s range %d-%d is backwards", fields[k].name, a, b);
      return -1;
    }
    for (int v = a; v <= b; v += step) e->f[k] |= (uint64_t)1 << (k == 4 && v == 7 ? 0 : v);
    if (*p == '\0') return 0;
    if (*p++ != ',') goto bad;
  }
bad:
  snprintf(err, errlen, "bad %s field '%s'", fields[k].name, text);
  return -1;
}

static int cron_parse (const char *expr, cron_expr *e, char *err, size_t errlen) {
  memset(e, 0, sizeof *e);
  char buf[256];
  if (strlen(expr) >= sizeof buf) {
    snprintf(err, errlen, "expression too long");
    return -1;
  }
  snprintf(buf, sizeof buf, "%s", expr);
  char *save = NULL, *tok = strtok_r(buf, " \t", &save);
  int k = 0;
  for (; tok && k < 5; k++, tok = strtok_r(NULL, " \t", &save))
    if (parse_field(tok, k, e, err, errlen) < 0) return -1;
  if (k != 5 || tok != NULL) {
    snprintf(err, errlen, "5 fields expected (minute hour day-of-month month weekday)");
    return -1;
  }
  return 0;
}

/* Day of month and weekday: both restricted means either (the classic rule). */
static int cron_match (const cron_expr *e, const struct tm *tm) {
  if (!(e->f[0] >> tm->tm_min & 1) || !(e->f[1] >> tm->tm_hour & 1) || !(e->f[3] >> (tm->tm_mon + 1) & 1))
    return 0;
  int dom = (int)(e->f[2] >> tm->tm_mday & 1), dow = (int)(e->f[4] >> tm->tm_wday & 1);
  if (e->star[2] || e->star[4]) return dom && dow;
  return dom || dow;
}

#define CRON_COLS                                                                              \
  "SELECT id, expression, channel_name, channel_name AS channel, payload, enabled, last_run, " \
  "last_fired_minute, created_at FROM cron "

int store_m_cron_add (store_t *s, lua_State *L, int t) {
  luaL_checktype(L, t, LUA_TTABLE);
  const char *expr = store_opt_string(L, t, "expression", NULL);
  const char *channel = store_opt_string(L, t, "channel", NULL);
  int enabled = store_opt_bool(L, t, "enabled", 1);
  if (expr == NULL) return luaL_error(L, "cron_add: field 'expression' is required");
  if (channel == NULL || *channel == '\0') return luaL_error(L, "cron_add: field 'channel' is required");
  cron_expr e;
  char err[128];
  if (cron_parse(expr, &e, err, sizeof err) < 0) {
    store_failf(s, "invalid cron expression '%s': %s", expr, err);
    return store_push_fail(s, L);
  }
  s->jb.len = 0;
  if (lua_getfield(L, t, "payload") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  int rc = store_json(s, L, -1, "payload");
  lua_pop(L, 1);
  if (rc < 0) return store_push_fail(s, L);
  if (s->jb.data[0] != '{') {
    store_failf(s, "payload must be a JSON object");
    return store_push_fail(s, L);
  }
  char now[STORE_TS_LEN + 1];
  store_id id;
  store_now(s, now);
  store_uuid(s, id);
  store_q *q = store_q_get(
      s,
      "INSERT INTO cron (id, expression, channel_name, payload, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?) "
      "ON CONFLICT (expression, channel_name) DO UPDATE SET payload = excluded.payload, enabled = excluded.enabled");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, expr);
  store_bind_text(s, q, 3, channel);
  store_bind_ltext(s, q, 4, s->jb.data, s->jb.len);
  store_bind_int(s, q, 5, enabled);
  store_bind_text(s, q, 6, now);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  q = store_q_get(s, CRON_COLS "WHERE expression = ? AND channel_name = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, expr);
  store_bind_text(s, q, 2, channel);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  return 1;
}

int store_m_cron_list (store_t *s, lua_State *L) {
  store_q *q = store_q_get(s, CRON_COLS "ORDER BY channel_name, expression");
  if (q == NULL || store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

int store_m_cron_set_enabled (store_t *s, lua_State *L, const char *id, int enabled) {
  store_q *q = store_q_get(s, "UPDATE cron SET enabled = ? WHERE id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_int(s, q, 1, enabled);
  store_bind_text(s, q, 2, id);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  if (store_changes(s) == 0) {
    store_failf(s, "unknown cron rule '%s'", id);
    return store_push_fail(s, L);
  }
  q = store_q_get(s, CRON_COLS "WHERE id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  return 1;
}

int store_m_cron_delete (store_t *s, lua_State *L, const char *id) {
  store_q *q = store_q_get(s, "DELETE FROM cron WHERE id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  if (store_changes(s) == 0) {
    store_failf(s, "unknown cron rule '%s'", id);
    return store_push_fail(s, L);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* {============ firing */

/* Ticks, cron and the rules' notices: posted by the system itself (store_int.h). */
int store_post_system (store_t *s, lua_State *L, const char *channel, const char *payload, size_t plen,
                       const char *now) {
  store_id id;
  store_uuid(s, id);
  store_q *q = store_q_get(s, "INSERT INTO channel (id, name, channel_type, auto_close, created_at) "
                              "VALUES (?, ?, 'named', 0, ?) ON CONFLICT (name) DO NOTHING");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, channel);
  store_bind_text(s, q, 3, now);
  if (store_exec_q(s, q) < 0) return -1;
  store_send_args a;
  memset(&a, 0, sizeof a);
  a.channel = channel;
  a.payload = payload;
  a.plen = plen;
  a.system = 1;
  store_send_res r;
  return store_send(s, L, &a, &r);
}

/* A tick when meta(key) is not stamp yet: 1 sent, 0 not due, -1. */
static int tick (store_t *s, lua_State *L, const char *key, const char *stamp, const char *channel,
                 const char *now) {
  store_q *q = store_q_get(s, "SELECT value FROM meta WHERE key = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, key);
  int rc = store_step(s, q);
  const char *last = rc == STORE_ROW ? store_col_text(s, q, 0, NULL) : NULL;
  int due = rc == STORE_DONE || (rc == STORE_ROW && (last == NULL || strcmp(last, stamp) != 0));
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (!due) return 0;
  if (store_post_system(s, L, channel, "{}", 2, now) < 0) return -1;
  q = store_q_get(s,
                  "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, key);
  store_bind_text(s, q, 2, stamp);
  store_bind_text(s, q, 3, now);
  return store_exec_q(s, q) < 0 ? -1 : 1;
}

typedef struct due_rule {
  store_id id;
  char channel[512];
  char *payload;
  size_t plen;
} due_rule;

int store_m_cron_fire (store_t *s, lua_State *L, int64_t now_ms) {
  char now[STORE_TS_LEN + 1], minute[32], hour[32];
  store_ts_from_ms(now_ms, now);
  time_t sec = (time_t)(now_ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  snprintf(minute, sizeof minute, "%.16s", now); /* 2026-11-21T08:15 */
  snprintf(hour, sizeof hour, "%.13s", now);     /* 2026-11-21T08 */
  due_rule *v = NULL;
  size_t n = 0, cap = 0;
  int64_t messages = 0;
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  int r = tick(s, L, "tick:minute", minute, "system:tick:minute", now);
  if (r < 0) goto fail;
  messages += r;
  r = tick(s, L, "tick:hour", hour, "system:tick:hour", now);
  if (r < 0) goto fail;
  messages += r;
  store_q *q = store_q_get(s, "SELECT id, expression, channel_name, payload, last_fired_minute FROM cron "
                              "WHERE enabled = 1 ORDER BY id");
  if (q == NULL) goto fail;
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    cron_expr e;
    char err[128];
    const char *expr = store_col_text(s, q, 1, NULL), *last = store_col_text(s, q, 4, NULL);
    if (expr == NULL || cron_parse(expr, &e, err, sizeof err) < 0 || !cron_match(&e, &tm)) continue;
    if (last && strcmp(last, minute) == 0) continue; /* fired in this minute already */
    due_rule *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    due_rule *d = &v[n];
    store_col_copy(s, q, 0, d->id, sizeof d->id);
    store_col_copy(s, q, 2, d->channel, sizeof d->channel);
    const char *p = store_col_text(s, q, 3, &d->plen);
    d->payload = malloc(d->plen + 1);
    if (d->payload == NULL) {
      store_failf(s, "out of memory");
      rc = STORE_ERR;
      break;
    }
    memcpy(d->payload, p ? p : "", d->plen);
    n++;
  }
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  for (size_t i = 0; i < n; i++) {
    if (store_post_system(s, L, v[i].channel, v[i].payload, v[i].plen, now) < 0) goto fail;
    q = store_q_get(s, "UPDATE cron SET last_fired_minute = ?, last_run = ? WHERE id = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, minute);
    store_bind_text(s, q, 2, now);
    store_bind_text(s, q, 3, v[i].id);
    if (store_exec_q(s, q) < 0) goto fail;
    messages++;
  }
  for (size_t i = 0; i < n; i++) free(v[i].payload);
  free(v);
  lua_settop(L, base);
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, (lua_Integer)messages);
  lua_setfield(L, -2, "messages");
  return 1;
fail:
  for (size_t i = 0; i < n; i++) free(v[i].payload);
  free(v);
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

/* }============ */
