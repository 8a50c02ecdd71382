/* store_wait.c — rules for the process tree's notifications and waits:
 * child:exited (posted once, when a child finishes for good), wait
 * conditions (add, resolve, read) and the children's results. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXIT_ERROR 1000 /* bytes of a child's error in child:exited */

int store_spawn_channel (store_t *s, const char *from, const char *to, const char *now, store_id id,
                         char *name, size_t namelen) {
  snprintf(name, namelen, "spawn:%s" STORE_ARROW "%s", from, to);
  store_id nid;
  store_uuid(s, nid);
  store_q *q = store_q_get(s, "INSERT INTO channel (id, name, owner, channel_type, auto_close, created_at) "
                              "VALUES (?, ?, ?, 'spawn', 0, ?) ON CONFLICT (name) DO NOTHING");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, nid);
  store_bind_text(s, q, 2, name);
  store_bind_text(s, q, 3, from);
  store_bind_text(s, q, 4, now);
  if (store_exec_q(s, q) < 0) return -1;
  return store_chan_find(s, name, id) == 1 ? 0 : -1;
}

/* Length of at most max bytes of v that ends on a UTF-8 character boundary. */
static size_t utf8_cut (const char *v, size_t n, size_t max) {
  if (n <= max) return n;
  while (max > 0 && ((unsigned char)v[max] & 0xC0) == 0x80) max--;
  return max;
}

int store_post_exit (store_t *s, lua_State *L, const char *id, int exit_code, const char *run_id,
                     const char *error, int64_t duration_ms, const char *now) {
  char name[1024];
  store_id parent, chan;
  store_q *q = store_q_get(s, "SELECT name, parent_process FROM process WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, id);
  int rc = store_step(s, q);
  int has_parent = rc == STORE_ROW && store_col_type(s, q, 1) != STORE_TNULL;
  if (has_parent) {
    store_col_copy(s, q, 0, name, sizeof name);
    store_col_copy(s, q, 1, parent, sizeof parent);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (!has_parent) return 0; /* no parent, nobody to tell */
  char cname[128];
  if (store_spawn_channel(s, id, parent, now, chan, cname, sizeof cname) < 0) return -1;
  int top = lua_gettop(L);
  lua_createtable(L, 0, 7);
  lua_pushliteral(L, "child:exited");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, id);
  lua_setfield(L, -2, "process_id");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "process_name");
  lua_pushinteger(L, exit_code);
  lua_setfield(L, -2, "exit_code");
  if (run_id) {
    lua_pushstring(L, run_id);
    lua_setfield(L, -2, "run_id");
  }
  if (error) {
    lua_pushlstring(L, error, utf8_cut(error, strlen(error), MAX_EXIT_ERROR));
    lua_setfield(L, -2, "error");
  }
  if (duration_ms >= 0) {
    lua_pushinteger(L, (lua_Integer)duration_ms);
    lua_setfield(L, -2, "duration_ms");
  }
  json_buf b = {0};
  char err[128];
  int r = json_encode(L, -1, &b, 0, err, sizeof err);
  lua_settop(L, top);
  if (r < 0) {
    json_buf_free(&b);
    return store_failf(s, "child:exited: %s", err);
  }
  store_send_args a;
  memset(&a, 0, sizeof a);
  a.channel = cname;
  a.payload = b.data;
  a.plen = b.len;
  a.sender = id;
  a.sender_run = run_id;
  a.child_exited = 1;
  a.system = 1;
  store_send_res res;
  r = store_send(s, L, &a, &res);
  json_buf_free(&b);
  return r;
}

/* {============ wait conditions */

#define WAIT_COLS \
  "SELECT id, run, process, type, status, pending, created_at, resolved_at FROM wait_condition "
/* A process's pending condition: process-linked first, then the newest run-linked. */
#define WAIT_PENDING                                    \
  WAIT_COLS "WHERE process = ? AND status = 'pending' " \
            "ORDER BY CASE WHEN run IS NULL THEN 0 ELSE 1 END, created_at DESC, id DESC LIMIT 1"

int store_wait_resolve (store_t *s, lua_State *L, const char *waiter, const char *sender, const char *now) {
  store_id wid;
  char type[16];
  store_q *q = store_q_get(s, WAIT_PENDING);
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, waiter);
  int rc = store_step(s, q);
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, wid, sizeof wid);
    store_col_copy(s, q, 3, type, sizeof type);
    size_t len;
    const char *pending = store_col_text(s, q, 5, &len);
    if (!json_decode(L, pending ? pending : "[]", pending ? len : 2) || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
  }
  store_reset(s, q);
  if (rc != STORE_ROW) return rc == STORE_ERR ? -1 : 0;
  /* The pending list without the sender (membership is not required: any
   * child:exited delivered to the waiter counts for wait and wait_any). */
  lua_Integer left = 0, total = (lua_Integer)lua_rawlen(L, -1);
  lua_newtable(L);
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  for (lua_Integer k = 1; k <= total; k++) {
    lua_rawgeti(L, -2, k);
    const char *v = lua_tostring(L, -1);
    if (v && strcmp(v, sender) == 0)
      lua_pop(L, 1);
    else
      lua_rawseti(L, -2, ++left);
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
  if (!resolved) return 0;
  /* Resolved for good only when no other condition of the process is pending. */
  q = store_q_get(s, "SELECT 1 FROM wait_condition WHERE process = ? AND status = 'pending' LIMIT 1");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, waiter);
  rc = store_step(s, q);
  store_reset(s, q);
  return rc == STORE_ERR ? -1 : rc == STORE_DONE;
}

/* Pushes the newest child:exited payload of child on spawn:<child>→<parent>:
 * 1 pushed, 0 none, -1 error. */
static int push_exit (store_t *s, lua_State *L, const char *child, const char *parent) {
  char name[128];
  snprintf(name, sizeof name, "spawn:%s" STORE_ARROW "%s", child, parent);
  store_q *q =
      store_q_get(s, "SELECT m.payload FROM channel_message m JOIN channel c ON c.id = m.channel "
                     "WHERE c.name = ? AND m.sender_process = ? ORDER BY m.created_at DESC, m.id DESC");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, name);
  store_bind_text(s, q, 2, child);
  int rc, found = 0;
  while (!found && (rc = store_step(s, q)) == STORE_ROW) {
    size_t len;
    const char *v = store_col_text(s, q, 0, &len);
    if (!json_decode(L, v, len)) {
      lua_pop(L, 1);
      continue;
    }
    lua_getfield(L, -1, "type");
    found = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "child:exited") == 0;
    lua_pop(L, found ? 1 : 2);
  }
  store_reset(s, q);
  if (!found && rc == STORE_ERR) return -1;
  return found;
}

static int push_wait (store_t *s, lua_State *L, const char *id) {
  store_q *q = store_q_get(s, WAIT_COLS "WHERE id = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, id);
  return store_push_one(s, L, q) == 1 ? 0 : -1;
}

int store_m_wait_add (store_t *s, lua_State *L, int t) {
  luaL_checktype(L, t, LUA_TTABLE);
  const char *run = store_opt_string(L, t, "run", NULL);
  const char *process = store_opt_string(L, t, "process", NULL);
  const char *type = store_opt_string(L, t, "type", "wait");
  if (strcmp(type, "wait") != 0 && strcmp(type, "wait_any") != 0 && strcmp(type, "wait_all") != 0) {
    store_failf(s, "invalid wait type '%s' (wait, wait_any or wait_all)", type);
    return store_push_fail(s, L);
  }
  if (lua_getfield(L, t, "pending") != LUA_TTABLE)
    return luaL_error(L, "wait_add: field 'pending' (a list of process ids) is required");
  int plist = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, plist);
  if (n == 0) {
    store_failf(s, "wait_add: pending must name at least one process");
    return store_push_fail(s, L);
  }
  for (lua_Integer i = 1; i <= n; i++)
    if (lua_rawgeti(L, plist, i) != LUA_TSTRING)
      return luaL_error(L, "wait_add: pending must hold process ids");
    else
      lua_pop(L, 1);
  if (run == NULL && process == NULL) return luaL_error(L, "wait_add: field 'process' or 'run' is required");
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  store_proc p;
  store_id wid, run_id;
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (run) {
    store_q *q = store_q_get(s, "SELECT id, process FROM run WHERE id = ?");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, run);
    int rc = store_step(s, q);
    store_id rp;
    if (rc == STORE_ROW) {
      store_col_copy(s, q, 0, run_id, sizeof run_id);
      store_col_copy(s, q, 1, rp, sizeof rp);
    }
    store_reset(s, q);
    if (rc == STORE_ERR) goto fail;
    if (rc == STORE_DONE) {
      store_failf(s, "unknown run '%s'", run);
      goto fail;
    }
    if (store_proc_by_id(s, process ? process : rp, &p) <= 0) goto fail;
    if (strcmp(p.id, rp) != 0) {
      store_failf(s, "run '%s' is not a run of process '%s'", run, process);
      goto fail;
    }
  } else if (store_proc_find(s, process, &p) <= 0) {
    goto fail;
  }
  /* Children that already exited are not waited for; the waiter listens on
   * the exit channel of every other one. */
  lua_newtable(L);
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  int left_t = lua_gettop(L);
  lua_Integer left = 0, exited = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, plist, i);
    const char *child = lua_tostring(L, -1);
    store_proc cp;
    if (store_proc_by_id(s, child, &cp) <= 0) goto fail; /* ids only: a name would wait forever */
    if (cp.parent[0] == '\0') {
      store_failf(s, "process '%s' has no parent: it posts no child:exited", child);
      goto fail;
    }
    /* Its exit goes to spawn:<child>→<its parent>: the waiter may be the parent
     * or another process (a collector spawned to wait for its siblings). */
    int r = push_exit(s, L, child, cp.parent);
    if (r < 0) goto fail;
    if (r == 1) {
      lua_pop(L, 2);
      exited++;
      continue;
    }
    store_id chan, hid;
    char cname[128];
    if (store_spawn_channel(s, child, cp.parent, now, chan, cname, sizeof cname) < 0) goto fail;
    store_q *q = store_q_get(
        s, "INSERT INTO handler (id, process, channel, enabled, epoch, created_at) VALUES (?, ?, ?, 1, ?, ?) "
           "ON CONFLICT (process, channel) DO UPDATE SET enabled = 1");
    if (q == NULL) goto fail;
    store_uuid(s, hid);
    store_bind_text(s, q, 1, hid);
    store_bind_text(s, q, 2, p.id);
    store_bind_text(s, q, 3, chan);
    store_bind_int(s, q, 4, p.epoch);
    store_bind_text(s, q, 5, now);
    if (store_exec_q(s, q) < 0) goto fail;
    lua_rawseti(L, left_t, ++left);
  }
  int resolved = strcmp(type, "wait_all") == 0 ? left == 0 : exited > 0;
  if (store_json(s, L, left_t, "pending") < 0) goto fail;
  store_q *q = store_q_get(
      s, "INSERT INTO wait_condition (id, run, process, type, status, pending, created_at, resolved_at) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (q == NULL) goto fail;
  store_uuid(s, wid);
  store_bind_text(s, q, 1, wid);
  store_bind_text(s, q, 2, run ? run_id : NULL);
  store_bind_text(s, q, 3, p.id);
  store_bind_text(s, q, 4, type);
  store_bind_text(s, q, 5, resolved ? "resolved" : "pending");
  store_bind_ltext(s, q, 6, s->jb.data, s->jb.len);
  store_bind_text(s, q, 7, now);
  store_bind_text(s, q, 8, resolved ? now : NULL);
  if (store_exec_q(s, q) < 0) goto fail;
  lua_settop(L, base);
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  if (push_wait(s, L, wid) < 0) return store_push_fail(s, L);
  return 1;
fail:
  store_op_abort(s);
  lua_settop(L, base);
  return store_push_fail(s, L);
}

int store_m_wait_get (store_t *s, lua_State *L, const char *process) {
  store_proc p;
  if (store_proc_find(s, process, &p) <= 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, WAIT_PENDING);
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, p.id);
  int r = store_push_one(s, L, q);
  if (r < 0) return store_push_fail(s, L);
  if (r == 0) lua_pushnil(L);
  return 1;
}

int store_m_wait_results (store_t *s, lua_State *L, const char *process) {
  store_proc p;
  if (store_proc_find(s, process, &p) <= 0) return store_push_fail(s, L);
  store_id *kids = NULL;
  size_t n = 0, cap = 0;
  store_q *q = store_q_get(s, "SELECT id FROM process WHERE parent_process = ? ORDER BY id");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, p.id);
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    store_id *v = store_grow(s, kids, &cap, n, sizeof *v);
    if (v == NULL) {
      rc = STORE_ERR;
      break;
    }
    kids = v;
    store_col_copy(s, q, 0, kids[n++], sizeof(store_id));
  }
  store_reset(s, q);
  if (rc == STORE_ERR) {
    free(kids);
    return store_push_fail(s, L);
  }
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    int r = push_exit(s, L, kids[i], p.id);
    if (r < 0) {
      free(kids);
      return store_push_fail(s, L);
    }
    if (r == 1) lua_setfield(L, -2, kids[i]);
  }
  free(kids);
  lua_setfield(L, -2, "children");
  return 1;
}

/* }============ */
