/* store_chan.c — rules for channels (create, close, schemas), messages (send:
 * deliveries for exact, pattern and predicate handlers; wake-ups) and handlers. */
#include "store_int.h"

#include "sandbox.h"

#include <lauxlib.h>

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL_COLS                                                                                   \
  "SELECT id, name, owner, schema_id, inline_schema, channel_type, auto_close, closed_at, created_at " \
  "FROM channel "

static int push_channel (store_t *s, lua_State *L, const char *name) {
  store_q *q = store_q_get(s, CHANNEL_COLS "WHERE name = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, name);
  int r = store_push_one(s, L, q);
  if (r == 0) store_failf(s, "unknown channel '%s'", name);
  return r == 1 ? 0 : -1;
}

int store_m_channel_create (store_t *s, lua_State *L, const char *name, int t) {
  const char *type = store_opt_string(L, t, "channel_type", "named");
  const char *owner = store_opt_string(L, t, "owner", NULL);
  int auto_close = store_opt_bool(L, t, "auto_close", 0);
  const char *schema_name = NULL;
  int inline_schema = 0;
  s->jb.len = 0;
  if (t) {
    /* schema: a registered schema's name, or an inline definition (a table). */
    lua_getfield(L, t, "schema");
    if (lua_type(L, -1) == LUA_TSTRING) {
      schema_name = lua_tostring(L, -1);
    } else if (lua_istable(L, -1)) {
      inline_schema = 1;
    } else if (!lua_isnil(L, -1)) {
      return luaL_error(L, "channel_create: bad field 'schema' (string or table expected, got %s)",
                        luaL_typename(L, -1));
    }
    if (!inline_schema) {
      lua_pop(L, 1);
      lua_getfield(L, t, "inline_schema");
      if (lua_istable(L, -1))
        inline_schema = 1;
      else if (!lua_isnil(L, -1))
        return luaL_error(L, "channel_create: bad field 'inline_schema' (table expected, got %s)",
                          luaL_typename(L, -1));
    }
    int rc = 0;
    if (inline_schema) { /* a field dict or {fields = ...}, stored as {fields = ...} */
      rc = store_schema_normalize(s, L, -1, NULL);
      if (rc == 0) {
        rc = store_json(s, L, -1, "schema");
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    if (rc < 0) return store_push_fail(s, L);
  }
  if (strcmp(type, "named") != 0 && strcmp(type, "implicit") != 0 && strcmp(type, "spawn") != 0) {
    store_failf(s, "invalid channel_type '%s'", type);
    return store_push_fail(s, L);
  }
  if (*name == '\0') {
    store_failf(s, "channel name must not be empty");
    return store_push_fail(s, L);
  }
  store_id id, schema_id;
  store_proc p;
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  int found = store_chan_find(s, name, id);
  if (found < 0) goto fail;
  if (found == 0) { /* new; an existing channel is returned untouched (never clobbered) */
    if (owner && store_proc_find(s, owner, &p) <= 0) goto fail;
    if (schema_name) {
      store_q *q = store_q_get(s, "SELECT id FROM schema WHERE name = ?");
      if (q == NULL) goto fail;
      store_bind_text(s, q, 1, schema_name);
      int rc = store_step(s, q);
      if (rc == STORE_ROW) store_col_copy(s, q, 0, schema_id, sizeof schema_id);
      store_reset(s, q);
      if (rc == STORE_ERR) goto fail;
      if (rc == STORE_DONE) {
        store_failf(s, "unknown schema '%s'", schema_name);
        goto fail;
      }
    }
    store_q *q = store_q_get(
        s,
        "INSERT INTO channel (id, name, owner, schema_id, inline_schema, channel_type, auto_close, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (q == NULL) goto fail;
    store_uuid(s, id);
    store_bind_text(s, q, 1, id);
    store_bind_text(s, q, 2, name);
    store_bind_text(s, q, 3, owner ? p.id : NULL);
    store_bind_text(s, q, 4, schema_name ? schema_id : NULL);
    if (inline_schema)
      store_bind_ltext(s, q, 5, s->jb.data, s->jb.len);
    else
      store_bind_null(s, q, 5);
    store_bind_text(s, q, 6, type);
    store_bind_int(s, q, 7, auto_close);
    store_bind_text(s, q, 8, now);
    if (store_exec_q(s, q) < 0 || store_implicit_adopt(s, name, now) < 0) goto fail;
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  if (push_channel(s, L, name) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, found == 0);
  return 2;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

int store_m_channel_close (store_t *s, lua_State *L, const char *name, const char *process) {
  store_proc p;
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_proc_find(s, process, &p) <= 0) goto fail;
  store_q *q = store_q_get(s, "SELECT owner FROM channel WHERE name = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, name);
  int rc = store_step(s, q);
  int owner =
      rc == STORE_ROW && store_col_text(s, q, 0, NULL) && strcmp(store_col_text(s, q, 0, NULL), p.id) == 0;
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  if (rc == STORE_DONE) {
    store_failf(s, "unknown channel '%s'", name);
    goto fail;
  }
  if (!owner) {
    store_failf(s, "only the channel owner can close it");
    goto fail;
  }
  q = store_q_get(s, "UPDATE channel SET closed_at = COALESCE(closed_at, ?) WHERE name = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, now);
  store_bind_text(s, q, 2, name);
  if (store_exec_q(s, q) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  if (push_channel(s, L, name) < 0) return store_push_fail(s, L);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

/* {============ schemas */

#define SCHEMA_COLS "SELECT id, name, definition, file_id, created_at, updated_at FROM schema "

int store_m_schema_upsert (store_t *s, lua_State *L, const char *name, int def) {
  if (*name == '\0') {
    store_failf(s, "schema name must not be empty");
    return store_push_fail(s, L);
  }
  if (store_schema_normalize(s, L, def, name) < 0) return store_push_fail(s, L);
  int rc = store_json(s, L, -1, "definition");
  lua_pop(L, 1);
  if (rc < 0) return store_push_fail(s, L);
  char now[STORE_TS_LEN + 1];
  store_id id;
  store_now(s, now);
  store_uuid(s, id);
  store_q *q = store_q_get(
      s,
      "INSERT INTO schema (id, name, definition, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, name);
  store_bind_ltext(s, q, 3, s->jb.data, s->jb.len);
  store_bind_text(s, q, 4, now);
  store_bind_text(s, q, 5, now);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  return store_m_schema_get(s, L, name);
}

int store_m_schema_get (store_t *s, lua_State *L, const char *name) {
  store_q *q = store_q_get(s, SCHEMA_COLS "WHERE name = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, name);
  int r = store_push_one(s, L, q);
  if (r == 1) return 1;
  if (r == 0) store_failf(s, "unknown schema '%s'", name);
  return store_push_fail(s, L);
}

int store_m_schema_list (store_t *s, lua_State *L) {
  store_q *q = store_q_get(s, SCHEMA_COLS "ORDER BY name");
  if (q == NULL || store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* }============ */

int store_m_channel_get (store_t *s, lua_State *L, const char *name) {
  if (push_channel(s, L, name) < 0) return store_push_fail(s, L);
  return 1;
}

int store_m_channel_list (store_t *s, lua_State *L) {
  store_q *q = store_q_get(s, CHANNEL_COLS "ORDER BY name");
  if (q == NULL || store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* {============ send */

static void push_send_result (lua_State *L, const char *id, const char *channel, int64_t deliveries,
                              const store_id *woken, size_t nwoken, int duplicate) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, channel);
  lua_setfield(L, -2, "channel");
  lua_pushinteger(L, (lua_Integer)deliveries);
  lua_setfield(L, -2, "deliveries");
  lua_createtable(L, (int)nwoken, 0);
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  for (size_t i = 0; i < nwoken; i++) {
    lua_pushstring(L, woken[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "woken");
  lua_pushboolean(L, duplicate);
  lua_setfield(L, -2, "duplicate");
}

/* {============ pattern handlers: loaded once per handler generation; the
 * matches of a channel name are kept, so a send compares no patterns. */

void store_pattern_reset (store_t *s) {
  for (size_t i = 0; i < s->nph; i++) {
    free(s->ph[i].pattern);
    free(s->ph[i].predicate);
  }
  free(s->ph);
  s->ph = NULL;
  s->nph = 0;
  s->ph_loaded = 0;
  for (int i = 0; i < STORE_PMATCH_CAP; i++) {
    free(s->pm[i].name);
    free(s->pm[i].idx);
    s->pm[i].name = NULL;
    s->pm[i].idx = NULL;
    s->pm[i].n = 0;
  }
}

int store_handler_gen_bump (store_t *s) {
  store_id gen;
  char now[STORE_TS_LEN + 1];
  store_uuid(s, gen);
  store_now(s, now);
  store_q *q = store_q_get(
      s, "INSERT INTO meta (key, value, updated_at) VALUES ('handler_gen', ?, ?) "
         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, gen);
  store_bind_text(s, q, 2, now);
  return store_exec_q(s, q);
}

static char *dup_text (const char *v) {
  if (v == NULL) return NULL;
  size_t n = strlen(v) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, v, n);
  return d;
}

static int pattern_load (store_t *s) {
  char gen[64];
  store_q *q = store_q_get(s, "SELECT value FROM meta WHERE key = 'handler_gen'");
  if (q == NULL) return -1;
  int rc = store_step(s, q);
  if (rc == STORE_ROW)
    store_col_copy(s, q, 0, gen, sizeof gen);
  else
    gen[0] = '\0';
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (s->ph_loaded && strcmp(gen, s->ph_gen) == 0) return 0;
  store_pattern_reset(s);
  q = store_q_get(s, "SELECT id, process, pattern, predicate, epoch FROM handler "
                     "WHERE pattern IS NOT NULL AND enabled = 1 ORDER BY id");
  if (q == NULL) return -1;
  size_t cap = 0;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    store_phandler *v = store_grow(s, s->ph, &cap, s->nph, sizeof *v);
    if (v == NULL) {
      rc = STORE_ERR;
      break;
    }
    s->ph = v;
    store_phandler *h = &s->ph[s->nph++];
    store_col_copy(s, q, 0, h->id, sizeof h->id);
    store_col_copy(s, q, 1, h->process, sizeof h->process);
    h->pattern = dup_text(store_col_text(s, q, 2, NULL));
    h->predicate = dup_text(store_col_text(s, q, 3, NULL));
    h->epoch = store_col_int(s, q, 4);
    if (h->pattern == NULL) break;
  }
  store_reset(s, q);
  if (rc == STORE_ERR) {
    store_pattern_reset(s);
    return -1;
  }
  if (rc == STORE_ROW) {
    store_pattern_reset(s);
    return store_failf(s, "out of memory");
  }
  snprintf(s->ph_gen, sizeof s->ph_gen, "%s", gen);
  s->ph_loaded = 1;
  return 0;
}

/* The pattern handlers matching channel name (indexes into s->ph). */
static store_pmatch *pattern_match (store_t *s, const char *name) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 16777619u;
  store_pmatch *m = &s->pm[h % STORE_PMATCH_CAP];
  if (m->name && strcmp(m->name, name) == 0) return m;
  free(m->name);
  free(m->idx);
  m->name = NULL;
  m->n = 0;
  m->idx = malloc((s->nph ? s->nph : 1) * sizeof *m->idx);
  if (m->idx == NULL) return NULL;
  for (size_t i = 0; i < s->nph; i++)
    if (fnmatch(s->ph[i].pattern, name, 0) == 0) m->idx[m->n++] = (int)i;
  m->name = dup_text(name);
  if (m->name == NULL) return NULL;
  return m;
}

/* }============ */

static int rcpt_add (store_t *s, const char *pid, const char *status, int waits) {
  if (s->nrcpt == s->caprcpt) {
    size_t cap = s->caprcpt ? s->caprcpt * 2 : 16;
    store_rcpt *v = realloc(s->rcpt, cap * sizeof *v);
    if (v == NULL) return store_failf(s, "out of memory");
    s->rcpt = v;
    s->caprcpt = cap;
  }
  store_rcpt *r = &s->rcpt[s->nrcpt++];
  snprintf(r->process, sizeof r->process, "%s", pid);
  snprintf(r->status, sizeof r->status, "%s", status ? status : "");
  r->waits = waits;
  return 0;
}

static int insert_delivery (store_t *s, const char *mid, const char *hid, const char *pid, int pending,
                            const char *trace, int64_t epoch, const char *now) {
  store_q *q =
      store_q_get(s, "INSERT INTO delivery (message, handler, process, status, trace_id, epoch, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, mid);
  store_bind_text(s, q, 2, hid);
  store_bind_text(s, q, 3, pid);
  store_bind_text(s, q, 4, pending ? "pending" : "skipped");
  store_bind_text(s, q, 5, trace);
  store_bind_int(s, q, 6, epoch);
  store_bind_text(s, q, 7, now);
  return store_exec_q(s, q);
}

/* A handler's predicate over a payload: 1 match, 0 not. An error counts as no
 * match and is recorded on the handler. -1 only when that record fails. */
static int predicate_match (store_t *s, const char *hid, const char *src, const char *payload, size_t plen) {
  char err[256];
  int r = sandbox_predicate(src, payload, plen, err, sizeof err);
  if (r >= 0) return r;
  store_q *q = store_q_get(s, "UPDATE handler SET last_error = ? WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, err);
  store_bind_text(s, q, 2, hid);
  return store_exec_q(s, q) < 0 ? -1 : 0;
}

static int proc_state (store_t *s, const char *pid, char status[16], int *waits) {
  store_q *q = store_q_get(
      s, "SELECT p.status, CASE WHEN EXISTS (SELECT 1 FROM wait_condition w WHERE w.process = p.id "
         "AND w.status = 'pending') THEN 1 ELSE 0 END FROM process p WHERE p.id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, pid);
  int rc = store_step(s, q);
  status[0] = '\0';
  *waits = 0;
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, status, 16);
    *waits = (int)store_col_int(s, q, 1);
  }
  store_reset(s, q);
  return rc == STORE_ERR ? -1 : 0;
}

/* T3/T4 for each recipient: a waiting process without a pending wait becomes
 * runnable; a child:exited message resolves a pending wait whatever the status
 * of its process (so no exit is lost), and then makes a waiting process
 * runnable or wakes a running one (a lua run parked in its coroutine resumes)
 * without changing its status. */
/* A child:exited message a wait accounted for is consumed by the waiting run
 * (a parked lua run, or the suspended run of an llm process), so it does not
 * wake the process again once that run is over. */
static int consume_delivery (store_t *s, const char *mid, const char *pid) {
  store_q *q = store_q_get(
      s,
      "UPDATE delivery SET status = 'delivered', run = (SELECT r.id FROM run r WHERE r.process = ? "
      "AND (r.status = 'running' OR r.status = 'suspended') ORDER BY r.created_at DESC, r.id DESC LIMIT 1) "
      "WHERE message = ? AND process = ? AND status = 'pending'");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, pid);
  store_bind_text(s, q, 2, mid);
  store_bind_text(s, q, 3, pid);
  return store_exec_q(s, q);
}

int store_wake_rcpts (store_t *s, lua_State *L, const char *mid, const char *sender, int child_exited,
                      const char *now) {
  for (size_t i = 0; i < s->nrcpt; i++) {
    store_rcpt *r = &s->rcpt[i];
    int waiting = strcmp(r->status, "waiting") == 0, running = strcmp(r->status, "running") == 0;
    if (r->waits) {
      if (!child_exited || sender == NULL || strcmp(r->status, "disabled") == 0) continue;
      int seen = 0; /* two handlers, one message: it counts once */
      for (size_t j = 0; j < i && !seen; j++) seen = strcmp(s->rcpt[j].process, r->process) == 0;
      if (seen) continue;
      int res = store_wait_resolve(s, L, r->process, sender, now);
      if (res < 0) return -1;
      /* the message that resolves the wait of a waiting process stays pending: it
       * triggers the run that resumes; every other one the wait consumes */
      if (!(res == 1 && waiting) && consume_delivery(s, mid, r->process) < 0) return -1;
      if (res == 0 || (!waiting && !running)) continue;
      if (running) { /* the parked run resumes: status unchanged */
        if (store_wake_add(s, r->process) < 0) return -1;
        continue;
      }
    } else if (!waiting) {
      continue;
    }
    store_q *q = store_q_get(s, "UPDATE process SET status = 'runnable', runnable_since = ?, updated_at = ? "
                                "WHERE id = ? AND status = 'waiting' AND NOT EXISTS (SELECT 1 FROM "
                                "wait_condition w WHERE w.process = process.id AND w.status = 'pending')");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, now);
    store_bind_text(s, q, 2, now);
    store_bind_text(s, q, 3, r->process);
    if (store_exec_q(s, q) < 0) return -1;
    if (store_changes(s) > 0 && store_wake_add(s, r->process) < 0) return -1;
  }
  return 0;
}

typedef struct pred_h {
  store_id id, process;
  char *predicate;
  int64_t epoch;
  char status[16];
  int waits;
} pred_h;

int store_send (store_t *s, lua_State *L, const store_send_args *a, store_send_res *res) {
  char now[STORE_TS_LEN + 1];
  store_id chan;
  store_now(s, now);
  res->deliveries = 0;
  res->duplicate = 0;
  res->woken0 = s->nwoken;
  s->nrcpt = 0;
  /* The channel, its closed state and its schema (inline or registered). */
  store_q *q =
      store_q_get(s, "SELECT c.id, c.closed_at, COALESCE(c.inline_schema, sc.definition) FROM channel c "
                     "LEFT JOIN schema sc ON sc.id = c.schema_id WHERE c.name = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, a->channel);
  int rc = store_step(s, q);
  if (rc == STORE_DONE) { /* an implicit channel's first use makes it */
    store_reset(s, q);
    int made = store_implicit_create(s, a->channel, chan);
    if (made == 0) store_failf(s, "unknown channel '%s'", a->channel);
    if (made <= 0) return -1;
    store_bind_text(s, q, 1, a->channel);
    rc = store_step(s, q);
  }
  if (rc != STORE_ROW) {
    store_reset(s, q);
    return -1;
  }
  store_col_copy(s, q, 0, chan, sizeof chan);
  int closed = store_col_type(s, q, 1) != STORE_TNULL;
  int r = 0;
  if (!a->system && closed) {
    r = store_failf(s, "channel '%s' is closed", a->channel);
  } else if (!a->system && store_col_type(s, q, 2) != STORE_TNULL) {
    size_t dlen;
    const char *def = store_col_text(s, q, 2, &dlen);
    if (store_schema_check(s, L, def, dlen, a->payload, a->plen) < 0) {
      char msg[sizeof s->err];
      memcpy(msg, s->err, sizeof msg);
      r = store_failf(s, "payload does not match the schema of '%s': %s", a->channel, msg);
    }
  }
  store_reset(s, q);
  if (r < 0) return -1;

  if (a->idem) { /* a repeated key returns the first message and does nothing else */
    q = store_q_get(s, "SELECT id FROM channel_message WHERE channel = ? AND idempotency_key = ?");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, chan);
    store_bind_text(s, q, 2, a->idem);
    rc = store_step(s, q);
    if (rc == STORE_ROW) store_col_copy(s, q, 0, res->id, sizeof res->id);
    store_reset(s, q);
    if (rc == STORE_ERR) return -1;
    if (rc == STORE_ROW) {
      res->duplicate = 1;
      return 0;
    }
  }
  q = store_q_get(
      s, "INSERT INTO channel_message (id, channel, sender_process, sender_run_id, payload, idempotency_key, "
         "trace_id, trace_meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (q == NULL) return -1;
  store_uuid(s, res->id);
  store_bind_text(s, q, 1, res->id);
  store_bind_text(s, q, 2, chan);
  store_bind_text(s, q, 3, a->sender);
  store_bind_text(s, q, 4, a->sender_run);
  store_bind_ltext(s, q, 5, a->payload, a->plen);
  store_bind_text(s, q, 6, a->idem);
  store_bind_text(s, q, 7, a->trace_id);
  if (a->trace_meta)
    store_bind_ltext(s, q, 8, a->trace_meta, a->tlen);
  else
    store_bind_null(s, q, 8);
  store_bind_text(s, q, 9, now);
  if (store_exec_q(s, q) < 0) return -1;

  /* Exact handlers: one delivery each; those with a predicate are judged
   * after the scan (judging may write the handler row). */
  pred_h *preds = NULL;
  size_t npreds = 0, cappreds = 0;
  q = store_q_get(s,
                  "SELECT h.id, h.process, h.epoch, h.predicate, p.status, CASE WHEN EXISTS (SELECT 1 FROM "
                  "wait_condition w WHERE w.process = p.id AND w.status = 'pending') THEN 1 ELSE 0 END "
                  "FROM handler h JOIN process p ON p.id = h.process WHERE h.channel = ? AND h.enabled = 1");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, chan);
  while ((rc = store_step(s, q)) == STORE_ROW) {
    const char *hid = store_col_text(s, q, 0, NULL), *pid = store_col_text(s, q, 1, NULL);
    int64_t epoch = store_col_int(s, q, 2);
    if (store_col_type(s, q, 3) != STORE_TNULL) {
      if (npreds == cappreds) {
        cappreds = cappreds ? cappreds * 2 : 4;
        pred_h *v = realloc(preds, cappreds * sizeof *v);
        if (v == NULL) {
          rc = STORE_ERR;
          store_failf(s, "out of memory");
          break;
        }
        preds = v;
      }
      pred_h *ph = &preds[npreds];
      snprintf(ph->id, sizeof ph->id, "%s", hid);
      snprintf(ph->process, sizeof ph->process, "%s", pid);
      store_col_copy(s, q, 4, ph->status, sizeof ph->status);
      ph->waits = (int)store_col_int(s, q, 5);
      ph->epoch = epoch;
      ph->predicate = dup_text(store_col_text(s, q, 3, NULL));
      if (ph->predicate == NULL) {
        rc = STORE_ERR;
        store_failf(s, "out of memory");
        break;
      }
      npreds++;
      continue;
    }
    char status[16];
    store_col_copy(s, q, 4, status, sizeof status);
    int waits = (int)store_col_int(s, q, 5);
    if (insert_delivery(s, res->id, hid, pid, 1, a->trace_id, epoch, now) < 0 ||
        rcpt_add(s, pid, status, waits) < 0) {
      rc = STORE_ERR;
      break;
    }
    res->deliveries++;
  }
  store_reset(s, q);
  for (size_t i = 0; i < npreds && rc != STORE_ERR; i++) {
    int m = predicate_match(s, preds[i].id, preds[i].predicate, a->payload, a->plen);
    if (m < 0 ||
        insert_delivery(s, res->id, preds[i].id, preds[i].process, m, a->trace_id, preds[i].epoch, now) < 0 ||
        (m && rcpt_add(s, preds[i].process, preds[i].status, preds[i].waits) < 0))
      rc = STORE_ERR;
    else
      res->deliveries += m;
  }
  for (size_t i = 0; i < npreds; i++) free(preds[i].predicate);
  free(preds);
  if (rc == STORE_ERR) return -1;

  /* Pattern handlers matching the channel's name. */
  if (pattern_load(s) < 0) return -1;
  if (s->nph > 0) {
    store_pmatch *m = pattern_match(s, a->channel);
    if (m == NULL) return store_failf(s, "out of memory");
    for (int i = 0; i < m->n; i++) {
      store_phandler *h = &s->ph[m->idx[i]];
      int match = h->predicate ? predicate_match(s, h->id, h->predicate, a->payload, a->plen) : 1;
      if (match < 0) return -1;
      if (insert_delivery(s, res->id, h->id, h->process, match, a->trace_id, h->epoch, now) < 0) return -1;
      if (!match) continue;
      char status[16];
      int waits;
      if (proc_state(s, h->process, status, &waits) < 0 || rcpt_add(s, h->process, status, waits) < 0)
        return -1;
      res->deliveries++;
    }
  }
  return store_wake_rcpts(s, L, res->id, a->sender, a->child_exited, now);
}

int store_m_send (store_t *s, lua_State *L, const char *channel, int payload, int t) {
  store_send_args a;
  memset(&a, 0, sizeof a);
  a.channel = channel;
  a.sender = store_opt_string(L, t, "sender_process", NULL);
  a.sender_run = store_opt_string(L, t, "sender_run_id", NULL);
  a.idem = store_opt_string(L, t, "idempotency_key", NULL);
  a.trace_id = store_opt_string(L, t, "trace_id", NULL);
  /* The payload (and trace_meta) are encoded before the transaction starts,
   * then kept as Lua strings: the rules reuse s->jb. */
  if (lua_type(L, payload) != LUA_TTABLE) {
    store_failf(s, "payload must be a JSON object");
    return store_push_fail(s, L);
  }
  s->jb.len = 0;
  size_t off, len;
  if (store_json_add(s, L, payload, "payload", &off, &len) < 0) return store_push_fail(s, L);
  if (s->jb.data[off] != '{') {
    store_failf(s, "payload must be a JSON object");
    return store_push_fail(s, L);
  }
  lua_pushlstring(L, s->jb.data + off, len);
  a.payload = lua_tolstring(L, -1, &a.plen);
  if (t) {
    lua_getfield(L, t, "trace_meta");
    int rc = 0;
    if (!lua_isnil(L, -1)) {
      s->jb.len = 0;
      rc = store_json_add(s, L, -1, "trace_meta", &off, &len);
      if (rc == 0) {
        lua_pushlstring(L, s->jb.data + off, len);
        a.trace_meta = lua_tolstring(L, -1, &a.tlen);
      }
    }
    if (rc < 0) return store_push_fail(s, L);
  }
  lua_pushliteral(L, "type");
  a.child_exited = lua_rawget(L, payload) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "child:exited") == 0;
  lua_pop(L, 1);

  int base = lua_gettop(L);
  store_send_res r;
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_send(s, L, &a, &r) < 0) {
    store_op_abort(s);
    lua_settop(L, base);
    return store_push_fail(s, L);
  }
  /* The result is built before the commit, which hands the wake list to the callback. */
  push_send_result(L, r.id, channel, r.deliveries, s->woken + r.woken0, s->nwoken - r.woken0, r.duplicate);
  return store_op_end(s, L, base, 1);
}

/* }============ */

int store_m_messages (store_t *s, lua_State *L, const char *channel, int t) {
  int64_t limit = store_opt_int(L, t, "limit", 100, NULL);
  const char *since = store_opt_string(L, t, "since", NULL);
  store_id chan;
  int found = store_chan_find(s, channel, chan);
  if (found == 0) { /* an implicit channel not used yet has no messages */
    int latent = store_implicit_latent(s, channel);
    if (latent == 1) {
      lua_newtable(L);
      return 1;
    }
    if (latent == 0) store_failf(s, "unknown channel '%s'", channel);
  }
  if (found <= 0) return store_push_fail(s, L);
#define MESSAGE_COLS                                                                               \
  "SELECT m.id AS id, c.name AS channel, m.sender_process AS sender_process, "                     \
  "m.sender_run_id AS sender_run_id, m.payload AS payload, m.idempotency_key AS idempotency_key, " \
  "m.trace_id AS trace_id, m.trace_meta AS trace_meta, m.created_at AS created_at "                \
  "FROM channel_message m JOIN channel c ON c.id = m.channel WHERE m.channel = ? "
  /* Newest first; with since, a cursor: strictly newer, oldest first. */
  store_q *q = since ? store_q_get(s, MESSAGE_COLS "AND m.created_at > ? ORDER BY m.created_at, m.id LIMIT ?")
                     : store_q_get(s, MESSAGE_COLS "ORDER BY m.created_at DESC, m.id DESC LIMIT ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, chan);
  if (since) store_bind_text(s, q, 2, since);
  store_bind_int(s, q, since ? 3 : 2, limit);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* {============ handlers */

#define HANDLER_COLS                                                                                           \
  "SELECT h.id AS id, h.process AS process, COALESCE(c.name, h.pattern) AS channel, h.channel AS channel_id, " \
  "h.pattern AS pattern, h.predicate AS predicate, h.enabled AS enabled, h.epoch AS epoch, "                   \
  "h.last_error AS last_error, h.created_at AS created_at FROM handler h LEFT JOIN channel c ON c.id = h.channel "

/* A channel name with * or ? is a glob pattern over channel names (fnmatch). */
static int is_pattern (const char *name) { return strpbrk(name, "*?") != NULL; }

int store_m_handler_add (store_t *s, lua_State *L, const char *process, const char *channel, int t) {
  const char *predicate = store_opt_string(L, t, "predicate", NULL);
  if (predicate && *predicate == '\0') predicate = NULL;
  int pattern = is_pattern(channel);
  store_proc p;
  store_id chan, id;
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_proc_find(s, process, &p) <= 0 || (!pattern && store_chan_open(s, channel, chan) <= 0)) goto fail;
  /* Idempotent per (process, channel or pattern): re-enables, sets the predicate. */
  store_q *q =
      pattern
          ? store_q_get(
                s, "INSERT INTO handler (id, process, pattern, predicate, enabled, epoch, created_at) "
                   "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (pattern, process) WHERE pattern IS NOT NULL "
                   "DO UPDATE SET enabled = 1, predicate = excluded.predicate, last_error = NULL")
          : store_q_get(s,
                        "INSERT INTO handler (id, process, channel, predicate, enabled, epoch, created_at) "
                        "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (process, channel) "
                        "DO UPDATE SET enabled = 1, predicate = excluded.predicate, last_error = NULL");
  if (q == NULL) goto fail;
  store_uuid(s, id);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, p.id);
  store_bind_text(s, q, 3, pattern ? channel : chan);
  store_bind_text(s, q, 4, predicate);
  store_bind_int(s, q, 5, p.epoch);
  store_bind_text(s, q, 6, now);
  if (store_exec_q(s, q) < 0) goto fail;
  if (pattern && store_handler_gen_bump(s) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  q = pattern ? store_q_get(s, HANDLER_COLS "WHERE h.process = ? AND h.pattern = ?")
              : store_q_get(s, HANDLER_COLS "WHERE h.process = ? AND h.channel = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, p.id);
  store_bind_text(s, q, 2, pattern ? channel : chan);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

int store_m_handler_remove (store_t *s, lua_State *L, const char *id) {
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, "DELETE FROM handler WHERE id = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, id);
  if (store_exec_q(s, q) < 0) goto fail;
  if (store_changes(s) == 0) {
    store_failf(s, "unknown handler '%s'", id);
    goto fail;
  }
  if (store_handler_gen_bump(s) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, 1);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

int store_m_handler_list (store_t *s, lua_State *L, int t) {
  const char *process = store_opt_string(L, t, "process", NULL);
  store_q *q;
  store_proc p; /* bound below: must outlive the step */
  if (process) {
    if (store_proc_find(s, process, &p) <= 0) return store_push_fail(s, L);
    q = store_q_get(s, HANDLER_COLS "WHERE h.process = ? ORDER BY 3");
    if (q == NULL) return store_push_fail(s, L);
    store_bind_text(s, q, 1, p.id);
  } else {
    int64_t epoch = store_epoch(s);
    if (epoch < 0) return store_push_fail(s, L);
    q = store_q_get(s, HANDLER_COLS "WHERE h.epoch = ? ORDER BY 3, h.process");
    if (q == NULL) return store_push_fail(s, L);
    store_bind_int(s, q, 1, epoch);
  }
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* }============ */
