/* store_executor.c — the executor registry (cogos-spec §1.1 `executor`, §2.4):
 * the nodes that dispatch runs, with their tags and heartbeats, and the rule
 * T6 that matches a process's required_tags against the running ones.
 *
 * Lua API (db methods; lstore.c merges them through store_obs_methods):
 *   db:executor_register(executor_id [, {tags = {"gpu", ...}, heartbeat_ms = 60000}]) -> row
 *        upsert by executor_id: tags replaced, status idle, heartbeat now (so
 *        registering again revives a stale or dead one); dispatch_type 'local'.
 *        | nil, "executor tags must be a list of non-empty strings"
 *        | nil, "heartbeat_ms must be a positive integer"
 *   db:executor_list() -> rows {id, executor_id, channel_type, executor_tags, dispatch_type,
 *        metadata = {heartbeat_ms}, status, current_run_id, last_heartbeat_at, registered_at}
 *   db:executor_set_status(executor_id, "idle"|"busy"|"stale"|"dead") -> row
 *        | nil, "unknown executor 'x'" | nil, "invalid executor status 'x' (...)"
 *
 * Running means idle or busy. db:heartbeat(id) refreshes an executor (a stale
 * one is idle again), db:reap marks those silent for three heartbeat intervals
 * stale, db:recover(id) marks it dead (store_run.c). */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MISSING_TAGS_CHANNEL "system:executor:error:missing-tags"
#define DEFAULT_HEARTBEAT_MS 60000 /* the node's default tick */
#define STALE_BEATS          3     /* heartbeats missed before an executor is stale (§2.4) */

#define EXECUTOR_COLS                                                                      \
  "SELECT id, executor_id, channel_type, executor_tags, dispatch_type, metadata, status, " \
  "current_run_id, last_heartbeat_at, registered_at FROM executor "

/* {============ T6 */

/* 1 when the string array at have holds every string of the array at need;
 * the strings it lacks are appended to the array at missing (0: none kept). */
static int holds_all (lua_State *L, int have, int need, int missing) {
  int all = 1;
  lua_Integer nh = (lua_Integer)lua_rawlen(L, have), nn = (lua_Integer)lua_rawlen(L, need);
  for (lua_Integer i = 1; i <= nn; i++) {
    lua_rawgeti(L, need, i);
    int found = 0;
    for (lua_Integer j = 1; j <= nh && !found; j++) {
      lua_rawgeti(L, have, j);
      found = lua_type(L, -1) == LUA_TSTRING && lua_rawequal(L, -1, -2);
      lua_pop(L, 1);
    }
    if (!found) {
      all = 0;
      if (missing) {
        lua_pushvalue(L, -1);
        lua_rawseti(L, missing, (lua_Integer)lua_rawlen(L, missing) + 1);
      }
    }
    lua_pop(L, 1);
  }
  return all;
}

/* "a, b, c" of the string array at idx. */
static void join (lua_State *L, int idx, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = '\0';
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, idx) && n < outlen; i++) {
    lua_rawgeti(L, idx, i);
    const char *v = lua_tostring(L, -1);
    int w = snprintf(out + n, outlen - n, "%s%s", i > 1 ? ", " : "", v ? v : "?");
    lua_pop(L, 1);
    if (w < 0) break;
    n += (size_t)w;
  }
}

/* The notice of a block: who, what it needs, what the node lacks. */
static int post_missing (store_t *s, lua_State *L, const store_proc *p, const char *name, int need,
                         int missing, const char *node_id, const char *now) {
  int top = lua_gettop(L);
  lua_createtable(L, 0, 6);
  lua_pushliteral(L, "executor:missing-tags");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, p->id);
  lua_setfield(L, -2, "process_id");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "process_name");
  lua_pushvalue(L, need);
  lua_setfield(L, -2, "required_tags");
  lua_pushvalue(L, missing);
  lua_setfield(L, -2, "missing_tags");
  if (node_id) {
    lua_pushstring(L, node_id);
    lua_setfield(L, -2, "node_id");
  }
  json_buf b = {0};
  char err[128];
  int r = json_encode(L, -1, &b, 0, err, sizeof err);
  lua_settop(L, top);
  if (r < 0) {
    json_buf_free(&b);
    return store_failf(s, "missing-tags notice: %s", err);
  }
  r = store_post_system(s, L, MISSING_TAGS_CHANNEL, b.data, b.len, now);
  json_buf_free(&b);
  return r;
}

int store_executor_gate (store_t *s, lua_State *L, const store_proc *p, const char *node_id, int block,
                         const char *now) {
  int top = lua_gettop(L), need = 0;
  char name[512];
  store_q *q = store_q_get(s, "SELECT required_tags, name FROM process WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, p->id);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    size_t n;
    const char *v = store_col_text(s, q, 0, &n);
    store_col_copy(s, q, 1, name, sizeof name);
    /* most processes need nothing: no decoding for them */
    if (v && !(n == 2 && memcmp(v, "[]", 2) == 0)) {
      if (json_decode(L, v, n) && lua_istable(L, -1) && lua_rawlen(L, -1) > 0)
        need = lua_gettop(L);
      else
        lua_settop(L, top);
    }
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (rc == STORE_DONE) return store_failf(s, "unknown process '%s'", p->id);
  if (!need) return 1;

  lua_newtable(L); /* the required tags the node lacks */
  int missing = lua_gettop(L);
  json_push_array_mt(L);
  lua_setmetatable(L, missing);
  int mine = 0, seen = 0, other = 0;
  q = store_q_get(s, "SELECT executor_id, executor_tags, status FROM executor "
                     "WHERE executor_id = ? OR status = 'idle' OR status = 'busy'");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, node_id); /* NULL matches no row */
  while ((rc = store_step(s, q)) == STORE_ROW) {
    const char *eid = store_col_text(s, q, 0, NULL);
    const char *st = store_col_text(s, q, 2, NULL);
    size_t n;
    const char *tags = store_col_text(s, q, 1, &n);
    int is_node = node_id && eid && strcmp(eid, node_id) == 0;
    int running = st && (strcmp(st, "idle") == 0 || strcmp(st, "busy") == 0);
    int have = lua_gettop(L) + 1;
    if (tags == NULL || !json_decode(L, tags, n) || !lua_istable(L, -1)) {
      lua_settop(L, have - 1);
      lua_newtable(L);
    }
    int all = holds_all(L, have, need, is_node ? missing : 0);
    lua_settop(L, have - 1);
    if (is_node) { /* the dispatching node counts whatever its row says: it is alive */
      seen = 1;
      mine = all;
    } else if (running && all) {
      other = 1;
    }
  }
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  if (mine) {
    lua_settop(L, top);
    return 1;
  }
  if (!seen) /* an unregistered node carries nothing */
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, need); i++) {
      lua_rawgeti(L, need, i);
      lua_rawseti(L, missing, i);
    }
  char list[400], lacks[400];
  join(L, need, list, sizeof list);
  join(L, missing, lacks, sizeof lacks);
  if (other) {
    lua_settop(L, top);
    store_failf(s, "node '%s' lacks the tags %s that process '%s' requires; a running node carries them",
                node_id ? node_id : "(none)", lacks, name);
    return 0;
  }
  if (block && (store_proc_set(s, p, "blocked", NULL, p->retry_count, now) < 0 ||
                post_missing(s, L, p, name, need, missing, node_id, now) < 0))
    goto fail;
  lua_settop(L, top);
  store_failf(s, "no running node carries the tags process '%s' requires (%s)", name, list);
  return 2;
fail:
  lua_settop(L, top);
  return -1;
}

/* }============ */

/* {============ heartbeats and liveness */

int store_executor_beat (store_t *s, const char *executor_id, const char *now) {
  store_q *q = store_q_get(s, "UPDATE executor SET last_heartbeat_at = ?, "
                              "status = CASE WHEN status = 'stale' THEN 'idle' ELSE status END "
                              "WHERE executor_id = ? AND status <> 'dead'");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, now);
  store_bind_text(s, q, 2, executor_id);
  return store_exec_q(s, q);
}

int store_executor_mark (store_t *s, const char *executor_id, const char *status) {
  store_q *q = store_q_get(s, "UPDATE executor SET status = ?, "
                              "current_run_id = CASE WHEN ? = 'busy' THEN current_run_id ELSE NULL END "
                              "WHERE executor_id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, status);
  store_bind_text(s, q, 2, status);
  store_bind_text(s, q, 3, executor_id);
  return store_exec_q(s, q);
}

int store_executor_reap (store_t *s, lua_State *L, int64_t now_ms) {
  store_id *v = NULL;
  size_t n = 0, cap = 0;
  int top = lua_gettop(L);
  store_q *q = store_q_get(s, "SELECT executor_id, metadata, last_heartbeat_at FROM executor "
                              "WHERE status = 'idle' OR status = 'busy'");
  if (q == NULL) return -1;
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    int64_t beat_ms = DEFAULT_HEARTBEAT_MS;
    size_t mlen;
    const char *meta = store_col_text(s, q, 1, &mlen);
    if (meta && json_decode(L, meta, mlen) && lua_istable(L, -1)) {
      lua_getfield(L, -1, "heartbeat_ms");
      if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) beat_ms = (int64_t)lua_tointeger(L, -1);
    }
    lua_settop(L, top);
    const char *last = store_col_text(s, q, 2, NULL);
    if (last && now_ms - store_ts_ms(last) <= STALE_BEATS * beat_ms) continue;
    store_id *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    store_col_copy(s, q, 0, v[n++], sizeof(store_id));
  }
  store_reset(s, q);
  for (size_t i = 0; i < n && rc != STORE_ERR; i++)
    if (store_executor_mark(s, v[i], "stale") < 0) rc = STORE_ERR;
  free(v);
  return rc == STORE_ERR ? -1 : 0;
}

/* }============ */

/* {============ Lua methods */

static store_t *exec_db (lua_State *L) {
  store_t *s = store_check(L, 1);
  store_guard(s);
  return s;
}

static int push_executor (store_t *s, lua_State *L, const char *executor_id) {
  store_q *q = store_q_get(s, EXECUTOR_COLS "WHERE executor_id = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, executor_id);
  int r = store_push_one(s, L, q);
  if (r == 1) return 1;
  if (r == 0) store_failf(s, "unknown executor '%s'", executor_id);
  return store_push_fail(s, L);
}

/* The tags option as a fresh array (pushed), or -1 with s->err. */
static int check_tags (store_t *s, lua_State *L, int t) {
  if (t)
    lua_getfield(L, t, "tags");
  else
    lua_pushnil(L);
  int given = lua_gettop(L);
  lua_newtable(L);
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  if (lua_isnil(L, given)) {
    lua_remove(L, given);
    return 0;
  }
  int ok = lua_istable(L, given);
  lua_Integer n = ok ? (lua_Integer)lua_rawlen(L, given) : 0;
  if (ok) { /* a list: 1..n and nothing else */
    lua_Integer keys = 0;
    lua_pushnil(L);
    while (lua_next(L, given)) {
      keys++;
      lua_pop(L, 1);
    }
    ok = keys == n;
  }
  for (lua_Integer i = 1; ok && i <= n; i++) {
    lua_rawgeti(L, given, i);
    ok = lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0;
    if (ok)
      lua_rawseti(L, -2, i);
    else
      lua_pop(L, 1);
  }
  lua_remove(L, given);
  if (!ok) {
    lua_pop(L, 1);
    return store_failf(s, "executor tags must be a list of non-empty strings");
  }
  return 0;
}

static int l_register (lua_State *L) {
  store_t *s = exec_db(L);
  size_t idlen;
  const char *executor_id = luaL_checklstring(L, 2, &idlen);
  int t = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    t = 3;
  }
  lua_settop(L, 3);
  if (idlen == 0) {
    store_failf(s, "executor_id must not be empty");
    return store_push_fail(s, L);
  }
  int64_t beat = DEFAULT_HEARTBEAT_MS;
  if (t && lua_getfield(L, t, "heartbeat_ms") != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0) {
      store_failf(s, "heartbeat_ms must be a positive integer");
      return store_push_fail(s, L);
    }
    beat = (int64_t)lua_tointeger(L, -1);
  }
  lua_settop(L, 3);
  if (check_tags(s, L, t) < 0) return store_push_fail(s, L);
  int tags = lua_gettop(L);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, (lua_Integer)beat);
  lua_setfield(L, -2, "heartbeat_ms");
  int meta = lua_gettop(L);
  size_t off[2], len[2];
  s->jb.len = 0;
  if (store_json_add(s, L, tags, "tags", &off[0], &len[0]) < 0 ||
      store_json_add(s, L, meta, "metadata", &off[1], &len[1]) < 0)
    return store_push_fail(s, L);
  char now[STORE_TS_LEN + 1];
  store_id id;
  store_now(s, now);
  store_uuid(s, id);
  store_q *q = store_q_get(
      s,
      "INSERT INTO executor (id, executor_id, channel_type, executor_tags, dispatch_type, metadata, status, "
      "last_heartbeat_at, registered_at) VALUES (?, ?, 'node', ?, 'local', ?, 'idle', ?, ?) "
      "ON CONFLICT (executor_id) DO UPDATE SET executor_tags = excluded.executor_tags, "
      "metadata = excluded.metadata, status = 'idle', current_run_id = NULL, "
      "last_heartbeat_at = excluded.last_heartbeat_at, registered_at = excluded.registered_at");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, executor_id);
  store_bind_ltext(s, q, 3, s->jb.data + off[0], len[0]);
  store_bind_ltext(s, q, 4, s->jb.data + off[1], len[1]);
  store_bind_text(s, q, 5, now);
  store_bind_text(s, q, 6, now);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  return push_executor(s, L, executor_id);
}

static int l_list (lua_State *L) {
  store_t *s = exec_db(L);
  store_q *q = store_q_get(s, EXECUTOR_COLS "ORDER BY registered_at DESC, executor_id");
  if (q == NULL || store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

static int l_set_status (lua_State *L) {
  store_t *s = exec_db(L);
  const char *executor_id = luaL_checkstring(L, 2);
  const char *status = luaL_checkstring(L, 3);
  static const char *const all[] = {"idle", "busy", "stale", "dead"};
  int valid = 0;
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) valid |= strcmp(status, all[i]) == 0;
  if (!valid) {
    store_failf(s, "invalid executor status '%s' (idle, busy, stale or dead)", status);
    return store_push_fail(s, L);
  }
  if (store_executor_mark(s, executor_id, status) < 0) return store_push_fail(s, L);
  return push_executor(s, L, executor_id);
}

/* }============ */

const luaL_Reg store_executor_methods[] = {
    {"executor_register", l_register},
    {"executor_list", l_list},
    {"executor_set_status", l_set_status},
    {NULL, NULL},
};
