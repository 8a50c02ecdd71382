/* store_chan.c — rules for channels, messages (send: deliveries and wake-ups)
 * and handlers. */
#include "store_int.h"

#include <lauxlib.h>

#include <string.h>

#define CHANNEL_COLS \
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
      if (lua_istable(L, -1)) inline_schema = 1;
      else if (!lua_isnil(L, -1))
        return luaL_error(L, "channel_create: bad field 'inline_schema' (table expected, got %s)",
                          luaL_typename(L, -1));
    }
    int rc = inline_schema ? store_json(s, L, -1, "schema") : 0;
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
    store_q *q = store_q_get(s,
      "INSERT INTO channel (id, name, owner, schema_id, inline_schema, channel_type, auto_close, created_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (q == NULL) goto fail;
    store_uuid(s, id);
    store_bind_text(s, q, 1, id);
    store_bind_text(s, q, 2, name);
    store_bind_text(s, q, 3, owner ? p.id : NULL);
    store_bind_text(s, q, 4, schema_name ? schema_id : NULL);
    if (inline_schema) store_bind_ltext(s, q, 5, s->jb.data, s->jb.len);
    else store_bind_null(s, q, 5);
    store_bind_text(s, q, 6, type);
    store_bind_int(s, q, 7, auto_close);
    store_bind_text(s, q, 8, now);
    if (store_exec_q(s, q) < 0) goto fail;
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  if (push_channel(s, L, name) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, found == 0);
  return 2;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

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

/* T4: a child:exited message from sender to a waiting process that waits on a
 * condition: the sender leaves the condition's pending list; wait/wait_any
 * resolve at once, wait_all when nobody is left; a resolved condition wakes
 * the process. Process-linked conditions go first, then the newest run-linked. */
static int resolve_waits (store_t *s, lua_State *L, const char *chan, const char *sender, const char *now) {
  store_id waiters[16];
  size_t n = 0;
  store_q *q = store_q_get(s,
    "SELECT p.id FROM handler h JOIN process p ON p.id = h.process "
    "WHERE h.channel = ? AND h.enabled = 1 AND p.status = 'waiting' "
    "AND EXISTS (SELECT 1 FROM wait_condition w WHERE w.process = p.id AND w.status = 'pending')");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, chan);
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW && n < sizeof waiters / sizeof waiters[0])
    store_col_copy(s, q, 0, waiters[n++], sizeof(store_id));
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  for (size_t i = 0; i < n; i++) {
    store_id wid;
    char type[16];
    q = store_q_get(s,
      "SELECT id, type, pending FROM wait_condition WHERE process = ? AND status = 'pending' "
      "ORDER BY CASE WHEN run IS NULL THEN 0 ELSE 1 END, created_at DESC LIMIT 1");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, waiters[i]);
    if ((rc = store_step(s, q)) == STORE_ROW) {
      store_col_copy(s, q, 0, wid, sizeof wid);
      store_col_copy(s, q, 1, type, sizeof type);
      size_t len;
      const char *pending = store_col_text(s, q, 2, &len);
      if (!json_decode(L, pending ? pending : "[]", pending ? len : 2) || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
      }
    }
    store_reset(s, q);
    if (rc == STORE_ERR) return -1;
    if (rc == STORE_DONE) continue;
    /* The pending list without the sender. */
    lua_Integer left = 0, total = (lua_Integer)lua_rawlen(L, -1);
    lua_newtable(L);
    json_push_array_mt(L);
    lua_setmetatable(L, -2);
    for (lua_Integer k = 1; k <= total; k++) {
      lua_rawgeti(L, -2, k);
      const char *v = lua_tostring(L, -1);
      if (v && strcmp(v, sender) == 0) lua_pop(L, 1);
      else lua_rawseti(L, -2, ++left);
    }
    int r = store_json(s, L, -1, "pending");
    lua_pop(L, 2);
    if (r < 0) return -1;
    int resolved = strcmp(type, "wait_all") != 0 || left == 0;
    q = store_q_get(s, "UPDATE wait_condition SET pending = ?, status = ?, resolved_at = ? WHERE id = ?");
    if (q == NULL) return -1;
    store_bind_ltext(s, q, 1, s->jb.data, s->jb.len);
    store_bind_text(s, q, 2, resolved ? "resolved" : "pending");
    store_bind_text(s, q, 3, resolved ? now : NULL);
    store_bind_text(s, q, 4, wid);
    if (store_exec_q(s, q) < 0) return -1;
    if (!resolved) continue;
    q = store_q_get(s, "UPDATE process SET status = 'runnable', runnable_since = ?, updated_at = ? "
                       "WHERE id = ? AND status = 'waiting' AND NOT EXISTS (SELECT 1 FROM wait_condition w "
                       "WHERE w.process = process.id AND w.status = 'pending')");
    if (q == NULL) return -1;
    store_bind_text(s, q, 1, now);
    store_bind_text(s, q, 2, now);
    store_bind_text(s, q, 3, waiters[i]);
    if (store_exec_q(s, q) < 0) return -1;
    if (store_changes(s) > 0 && store_wake_add(s, waiters[i]) < 0) return -1;
  }
  return 0;
}

int store_m_send (store_t *s, lua_State *L, const char *channel, int payload, int t) {
  const char *sender = store_opt_string(L, t, "sender_process", NULL);
  const char *sender_run = store_opt_string(L, t, "sender_run_id", NULL);
  const char *idem = store_opt_string(L, t, "idempotency_key", NULL);
  const char *trace_id = store_opt_string(L, t, "trace_id", NULL);
  /* The payload (and trace_meta) are encoded before the transaction starts. */
  size_t poff, plen, toff = 0, tlen = 0;
  if (lua_type(L, payload) != LUA_TTABLE) {
    store_failf(s, "payload must be a JSON object");
    return store_push_fail(s, L);
  }
  s->jb.len = 0;
  if (store_json_add(s, L, payload, "payload", &poff, &plen) < 0) return store_push_fail(s, L);
  if (s->jb.data[poff] != '{') {
    store_failf(s, "payload must be a JSON object");
    return store_push_fail(s, L);
  }
  if (t) {
    lua_getfield(L, t, "trace_meta");
    int rc = lua_isnil(L, -1) ? 0 : store_json_add(s, L, -1, "trace_meta", &toff, &tlen);
    lua_pop(L, 1);
    if (rc < 0) return store_push_fail(s, L);
  }
  const char *ptext = s->jb.data + poff, *ttext = tlen ? s->jb.data + toff : NULL;
  lua_pushliteral(L, "type");
  int child_exited = lua_rawget(L, payload) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "child:exited") == 0;
  lua_pop(L, 1);

  store_id chan, mid;
  char now[STORE_TS_LEN + 1];
  int base = lua_gettop(L);
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_chan_find(s, channel, chan) <= 0) goto fail;
  store_q *q;
  if (idem) { /* a repeated key returns the first message and does nothing else */
    q = store_q_get(s, "SELECT id FROM channel_message WHERE channel = ? AND idempotency_key = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, chan);
    store_bind_text(s, q, 2, idem);
    int rc = store_step(s, q);
    if (rc == STORE_ROW) store_col_copy(s, q, 0, mid, sizeof mid);
    store_reset(s, q);
    if (rc == STORE_ERR) goto fail;
    if (rc == STORE_ROW) {
      if (store_op_commit(s) < 0) return store_push_fail(s, L);
      push_send_result(L, mid, channel, 0, NULL, 0, 1);
      return 1;
    }
  }
  q = store_q_get(s,
    "INSERT INTO channel_message (id, channel, sender_process, sender_run_id, payload, idempotency_key, "
    "trace_id, trace_meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (q == NULL) goto fail;
  store_uuid(s, mid);
  store_bind_text(s, q, 1, mid);
  store_bind_text(s, q, 2, chan);
  store_bind_text(s, q, 3, sender);
  store_bind_text(s, q, 4, sender_run);
  store_bind_ltext(s, q, 5, ptext, plen);
  store_bind_text(s, q, 6, idem);
  store_bind_text(s, q, 7, trace_id);
  if (ttext) store_bind_ltext(s, q, 8, ttext, tlen);
  else store_bind_null(s, q, 8);
  store_bind_text(s, q, 9, now);
  if (store_exec_q(s, q) < 0) goto fail;

  /* One delivery per enabled handler, in one statement. */
  q = store_q_get(s,
    "INSERT INTO delivery (message, handler, process, status, trace_id, epoch, created_at) "
    "SELECT ?, h.id, h.process, 'pending', ?, h.epoch, ? FROM handler h WHERE h.channel = ? AND h.enabled = 1");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, mid);
  store_bind_text(s, q, 2, trace_id);
  store_bind_text(s, q, 3, now);
  store_bind_text(s, q, 4, chan);
  if (store_exec_q(s, q) < 0) goto fail;
  int64_t deliveries = store_changes(s);

  /* T3: each waiting handler process without a pending wait condition ->
   * runnable. Found by a join, then updated by key: an IN (subquery) or
   * RETURNING would build a temporary table on every send. */
  size_t woken0 = s->nwoken;
  if (deliveries > 0) {
    q = store_q_get(s,
      "SELECT p.id FROM handler h JOIN process p ON p.id = h.process "
      "WHERE h.channel = ? AND h.enabled = 1 AND p.status = 'waiting' "
      "AND NOT EXISTS (SELECT 1 FROM wait_condition w WHERE w.process = p.id AND w.status = 'pending')");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, chan);
    int rc;
    while ((rc = store_step(s, q)) == STORE_ROW) {
      const char *pid = store_col_text(s, q, 0, NULL);
      if (pid && store_wake_add(s, pid) < 0) {
        store_reset(s, q);
        goto fail;
      }
    }
    store_reset(s, q);
    if (rc == STORE_ERR) goto fail;
    for (size_t i = woken0; i < s->nwoken; i++) {
      q = store_q_get(s, "UPDATE process SET status = 'runnable', runnable_since = ?, updated_at = ? "
                         "WHERE id = ? AND status = 'waiting'");
      if (q == NULL) goto fail;
      store_bind_text(s, q, 1, now);
      store_bind_text(s, q, 2, now);
      store_bind_text(s, q, 3, s->woken[i]);
      if (store_exec_q(s, q) < 0) goto fail;
    }
  }
  if (deliveries > 0 && child_exited && sender && resolve_waits(s, L, chan, sender, now) < 0) goto fail;
  /* The result is built before the commit, which hands the wake list to the callback. */
  push_send_result(L, mid, channel, deliveries, s->woken + woken0, s->nwoken - woken0, 0);
  if (store_op_commit(s) < 0) {
    lua_settop(L, base);
    return store_push_fail(s, L);
  }
  return 1;
fail:
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

/* }============ */

int store_m_messages (store_t *s, lua_State *L, const char *channel, int t) {
  int64_t limit = store_opt_int(L, t, "limit", 100, NULL);
  const char *since = store_opt_string(L, t, "since", NULL);
  store_id chan;
  if (store_chan_find(s, channel, chan) <= 0) return store_push_fail(s, L);
#define MESSAGE_COLS \
  "SELECT m.id AS id, c.name AS channel, m.sender_process AS sender_process, " \
  "m.sender_run_id AS sender_run_id, m.payload AS payload, m.idempotency_key AS idempotency_key, " \
  "m.trace_id AS trace_id, m.trace_meta AS trace_meta, m.created_at AS created_at " \
  "FROM channel_message m JOIN channel c ON c.id = m.channel WHERE m.channel = ? "
  /* Newest first; with since, a cursor: strictly newer, oldest first. */
  store_q *q = since
    ? store_q_get(s, MESSAGE_COLS "AND m.created_at > ? ORDER BY m.created_at, m.id LIMIT ?")
    : store_q_get(s, MESSAGE_COLS "ORDER BY m.created_at DESC, m.id DESC LIMIT ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, chan);
  if (since) store_bind_text(s, q, 2, since);
  store_bind_int(s, q, since ? 3 : 2, limit);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* {============ handlers */

#define HANDLER_COLS \
  "SELECT h.id AS id, h.process AS process, c.name AS channel, h.channel AS channel_id, " \
  "h.pattern AS pattern, h.predicate AS predicate, h.enabled AS enabled, h.epoch AS epoch, " \
  "h.created_at AS created_at FROM handler h LEFT JOIN channel c ON c.id = h.channel "

int store_m_handler_add (store_t *s, lua_State *L, const char *process, const char *channel) {
  store_proc p;
  store_id chan, id;
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_proc_find(s, process, &p) <= 0 || store_chan_find(s, channel, chan) <= 0) goto fail;
  store_q *q = store_q_get(s,
    "INSERT INTO handler (id, process, channel, enabled, epoch, created_at) VALUES (?, ?, ?, 1, ?, ?) "
    "ON CONFLICT (process, channel) DO UPDATE SET enabled = 1");
  if (q == NULL) goto fail;
  store_uuid(s, id);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, p.id);
  store_bind_text(s, q, 3, chan);
  store_bind_int(s, q, 4, p.epoch);
  store_bind_text(s, q, 5, now);
  if (store_exec_q(s, q) < 0) goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  q = store_q_get(s, HANDLER_COLS "WHERE h.process = ? AND h.channel = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, p.id);
  store_bind_text(s, q, 2, chan);
  if (store_push_one(s, L, q) != 1) return store_push_fail(s, L);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

int store_m_handler_remove (store_t *s, lua_State *L, const char *id) {
  store_q *q = store_q_get(s, "DELETE FROM handler WHERE id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  if (store_changes(s) == 0) {
    store_failf(s, "unknown handler '%s'", id);
    return store_push_fail(s, L);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int store_m_handler_list (store_t *s, lua_State *L, int t) {
  const char *process = store_opt_string(L, t, "process", NULL);
  store_q *q;
  store_proc p; /* bound below: must outlive the step */
  if (process) {
    if (store_proc_find(s, process, &p) <= 0) return store_push_fail(s, L);
    q = store_q_get(s, HANDLER_COLS "WHERE h.process = ? ORDER BY c.name");
    if (q == NULL) return store_push_fail(s, L);
    store_bind_text(s, q, 1, p.id);
  } else {
    int64_t epoch = store_epoch(s);
    if (epoch < 0) return store_push_fail(s, L);
    q = store_q_get(s, HANDLER_COLS "WHERE h.epoch = ? ORDER BY c.name, h.process");
    if (q == NULL) return store_push_fail(s, L);
    store_bind_int(s, q, 1, epoch);
  }
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* }============ */
