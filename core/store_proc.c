/* store_proc.c — rules for processes (upsert, status, cascading disable),
 * capability types and grants. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Column positions in store_process_table (store_table.c). */
enum {
  P_ID,
  P_EPOCH,
  P_NAME,
  P_MODE,
  P_CONTENT,
  P_PRIORITY,
  P_RESOURCES,
  P_REQUIRED_TAGS,
  P_EXECUTOR,
  P_STATUS,
  P_RUNNABLE_SINCE,
  P_PARENT,
  P_PREEMPTIBLE,
  P_MODEL,
  P_MODEL_CONSTRAINTS,
  P_RETURN_SCHEMA,
  P_IDLE_TIMEOUT_MS,
  P_MAX_DURATION_MS,
  P_MAX_RETRIES,
  P_RETRY_COUNT,
  P_RETRY_BACKOFF_MS,
  P_RETRY_AT,
  P_CLEAR_CONTEXT,
  P_TTY,
  P_METADATA,
  P_OUTPUT_EVENTS,
  P_SCHEMA_ID,
  P_CREATED_AT,
  P_UPDATED_AT,
  P__COUNT
};

enum { C_ID, C_NAME, C_CREATED_AT = 10, C_UPDATED_AT = 11, C__COUNT = 12 };

/* Pushes the process row with this id; 1, or a failure pushed (2). */
static int push_process (store_t *s, lua_State *L, const char *id) {
  store_q *q = store_q_get(s, s->sql_proc_by_id);
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, id);
  int r = store_push_one(s, L, q);
  if (r == 1) return 1;
  if (r == 0) store_failf(s, "unknown process '%s'", id);
  return store_push_fail(s, L);
}

static int val_is (const store_val *v, const char *text) {
  return v->state == STORE_VTEXT && v->n == strlen(text) && memcmp(v->s, text, v->n) == 0;
}

/* A process (re)created under a name whose stdin channel already exists (an
 * earlier epoch's, or one used before) gets its handler there now. */
static int ensure_stdin (store_t *s, const char *pid, const char *name, size_t namelen, int64_t epoch,
                         const char *now) {
  char small[256], *cname = small;
  if (namelen + 10 > sizeof small && (cname = malloc(namelen + 10)) == NULL)
    return store_failf(s, "out of memory");
  memcpy(cname, "io:stdin:", 9);
  memcpy(cname + 9, name, namelen + 1);
  store_id cid;
  int r = store_chan_find(s, cname, cid); /* mostly absent: a read is cheaper than the insert */
  if (r > 0) r = store_implicit_handler(s, pid, cname, epoch, now);
  if (cname != small) free(cname);
  return r;
}

/* Raises unless the value at t is a grant table {capability=, name=, config=}
 * (misuse, like a wrong type). */
static void grant_check (lua_State *L, int t, const char *what) {
  if (lua_type(L, t) != LUA_TTABLE)
    luaL_error(L, "%s: a grant must be a table {capability=, name=, config=}", what);
  if (store_opt_string(L, t, "capability", NULL) == NULL)
    luaL_error(L, "%s: field 'capability' is required", what);
  store_opt_string(L, t, "name", NULL);
  int type = lua_getfield(L, t, "config");
  lua_pop(L, 1);
  if (type != LUA_TNIL && type != LUA_TTABLE) luaL_error(L, "%s: a grant's config must be a table", what);
}

/* Inside an operation: gives process (pid, epoch) the grant at t (checked by
 * grant_check), replacing the one of that name but keeping its id, epoch and
 * created_at. With push, pushes the row as written, in GRANT_COLS' shape. */
static int grant_put (store_t *s, lua_State *L, const char *pid, int64_t epoch, int t, int push) {
  const char *cap = store_opt_string(L, t, "capability", NULL);
  const char *gname = store_opt_string(L, t, "name", cap);
  if (lua_getfield(L, t, "config") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  int rc = store_json(s, L, -1, "config");
  lua_pop(L, 1);
  if (rc < 0) return -1;
  if (s->jb.data[0] != '{') return store_failf(s, "config must be a JSON object");
  store_id cap_id, id;
  char created[STORE_TS_LEN + 1];
  int enabled = 0;
  store_q *q = store_q_get(s, "SELECT id, enabled FROM capability WHERE name = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, cap);
  rc = store_step(s, q);
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, cap_id, sizeof cap_id);
    enabled = (int)store_col_int(s, q, 1);
  }
  store_reset(s, q);
  if (rc == STORE_DONE) return store_failf(s, "unknown capability '%s'", cap);
  if (rc != STORE_ROW) return -1;
  q = store_q_get(s, "SELECT id, epoch, created_at FROM process_capability WHERE process = ? AND name = ?");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, pid);
  store_bind_text(s, q, 2, gname);
  rc = store_step(s, q);
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, id, sizeof id);
    epoch = store_col_int(s, q, 1);
    store_col_copy(s, q, 2, created, sizeof created);
  }
  store_reset(s, q);
  if (rc == STORE_ERR) return -1;
  if (rc == STORE_DONE) {
    store_uuid(s, id);
    store_now(s, created);
  }
  q = store_q_get(s,
                  "INSERT INTO process_capability (id, process, capability, name, config, epoch, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (process, name) DO UPDATE SET "
                  "capability = excluded.capability, config = excluded.config");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, pid);
  store_bind_text(s, q, 3, cap_id);
  store_bind_text(s, q, 4, gname);
  store_bind_ltext(s, q, 5, s->jb.data, s->jb.len);
  store_bind_int(s, q, 6, epoch);
  store_bind_text(s, q, 7, created);
  if (store_exec_q(s, q) < 0) return -1;
  if (!push) return 0;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, pid);
  lua_setfield(L, -2, "process");
  lua_pushstring(L, cap);
  lua_setfield(L, -2, "capability");
  lua_pushstring(L, gname);
  lua_setfield(L, -2, "name");
  if (!json_decode(L, s->jb.data, s->jb.len)) return store_failf(s, "grant: config is not JSON");
  lua_setfield(L, -2, "config");
  lua_pushinteger(L, (lua_Integer)epoch);
  lua_setfield(L, -2, "epoch");
  lua_pushstring(L, created);
  lua_setfield(L, -2, "created_at");
  lua_pushboolean(L, enabled);
  lua_setfield(L, -2, "enabled");
  return 0;
}

int store_m_process_upsert (store_t *s, lua_State *L, int t) {
  const store_table *T = &store_process_table;
  store_val vals[P__COUNT];
  luaL_checktype(L, t, LUA_TTABLE);
  /* parent_process is given by name or id and resolved below. */
  lua_getfield(L, t, "parent_process");
  const char *parent = NULL;
  int clear_parent = lua_touserdata(L, -1) == json_null;
  if (!clear_parent && !lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "process_upsert: bad field 'parent_process' (string expected, got %s)",
                        luaL_typename(L, -1));
    parent = lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  /* grants: given with the process, written in the same operation. */
  int grants = lua_getfield(L, t, "grants") == LUA_TNIL ? 0 : lua_absindex(L, -1);
  if (grants) {
    lua_Integer n = lua_type(L, grants) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, grants) : -1;
    for (lua_pushnil(L); n >= 0 && lua_next(L, grants); lua_pop(L, 1))
      if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) n = -1;
    if (n < 0) return luaL_error(L, "process_upsert: field 'grants' must be a list");
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, grants, i);
      grant_check(L, -1, "process_upsert");
      lua_pop(L, 1);
    }
  }
  static const char *const handled[] = {"parent_process", "grants", NULL};
  if (store_vals_from_lua(s, L, t, T, vals, "process_upsert", handled) < 0) return store_push_fail(s, L);
  if (vals[P_NAME].state != STORE_VTEXT) return luaL_error(L, "process_upsert: field 'name' is required");
  if (vals[P_NAME].n == 0) {
    store_failf(s, "process name must not be empty");
    return store_push_fail(s, L);
  }
  if (vals[P_MODE].state == STORE_VTEXT && !val_is(&vals[P_MODE], "daemon") &&
      !val_is(&vals[P_MODE], "one_shot")) {
    store_failf(s, "invalid mode '%.*s'", (int)vals[P_MODE].n, vals[P_MODE].s);
    return store_push_fail(s, L);
  }
  int status_given = vals[P_STATUS].state == STORE_VTEXT;
  if (status_given) {
    char st[16];
    snprintf(st, sizeof st, "%.*s", (int)(vals[P_STATUS].n < 15 ? vals[P_STATUS].n : 15), vals[P_STATUS].s);
    if (vals[P_STATUS].n >= sizeof st || !store_valid_status(st)) {
      store_failf(s, "invalid status '%.*s'", (int)vals[P_STATUS].n, vals[P_STATUS].s);
      return store_push_fail(s, L);
    }
  }
  char name[1024];
  if (vals[P_NAME].n >= sizeof name) return luaL_error(L, "process_upsert: name too long");
  memcpy(name, vals[P_NAME].s, vals[P_NAME].n);
  name[vals[P_NAME].n] = '\0';

  char now[STORE_TS_LEN + 1];
  store_id id;
  store_proc pp;
  int base = lua_gettop(L);
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  int64_t epoch = store_epoch(s);
  if (epoch < 0) goto fail;
  if (parent && store_proc_find(s, parent, &pp) <= 0) goto fail;

  store_q *sel = store_q_get(s, s->sql_proc_by_name);
  if (sel == NULL) goto fail;
  store_bind_text(s, sel, 1, name);
  store_bind_int(s, sel, 2, epoch);
  int rc = store_step(s, sel);
  if (rc == STORE_ERR) goto fail;
  int exists = rc == STORE_ROW;
  int was_runnable = 0;
  if (exists) {
    store_col_copy(s, sel, P_ID, id, sizeof id);
    size_t n;
    const char *old = store_col_text(s, sel, P_STATUS, &n);
    was_runnable = old && n == 8 && memcmp(old, "runnable", 8) == 0;
    store_vals_merge(s, T, vals, sel); /* keeps id, parent and whatever was not given */
  } else {
    store_uuid(s, id);
    store_val_text(&vals[P_ID], id);
    store_val_int(&vals[P_EPOCH], epoch);
    store_val_text(&vals[P_CREATED_AT], now);
    /* T1/T2: a one_shot starts runnable, a daemon waits for messages. */
    if (!status_given)
      store_val_text(&vals[P_STATUS], val_is(&vals[P_MODE], "daemon") ? "waiting" : "runnable");
    store_vals_defaults(T, vals);
  }
  if (parent) store_val_text(&vals[P_PARENT], pp.id);
  if (clear_parent) store_val_text(&vals[P_PARENT], NULL);
  int runnable = val_is(&vals[P_STATUS], "runnable");
  if (!runnable)
    store_val_text(&vals[P_RUNNABLE_SINCE], NULL);
  else if (!was_runnable)
    store_val_text(&vals[P_RUNNABLE_SINCE], now);
  if (status_given) store_val_text(&vals[P_RETRY_AT], NULL); /* an explicit status overrides a backoff */
  store_val_text(&vals[P_UPDATED_AT], now);

  store_q *w = store_q_get(s, exists ? s->sql_proc_update : s->sql_proc_insert);
  if (w == NULL) goto fail;
  store_vals_bind(s, w, T, vals, exists ? 1 : 0);
  rc = store_exec_q(s, w);
  if (rc == 0) store_vals_push(L, T, vals); /* the row as written: no read back */
  store_reset(s, sel);                      /* the merged values pointed into its row */
  if (rc < 0) goto fail;
  if (runnable && !was_runnable && store_wake_add(s, id) < 0) goto fail;
  if (ensure_stdin(s, id, name, strlen(name), epoch, now) < 0) goto fail;
  for (lua_Integer i = 1, n = grants ? (lua_Integer)lua_rawlen(L, grants) : 0; i <= n; i++) {
    lua_rawgeti(L, grants, i);
    rc = grant_put(s, L, id, epoch, lua_gettop(L), 0);
    lua_pop(L, 1);
    if (rc < 0) goto fail;
  }
  return store_op_end(s, L, base, 1);
fail:
  return store_op_end(s, L, base, 0);
}

int store_m_process_get (store_t *s, lua_State *L, const char *name_or_id) {
  int r;
  if (store_is_uuid(name_or_id, strlen(name_or_id))) {
    store_q *q = store_q_get(s, s->sql_proc_by_id);
    if (q == NULL) return store_push_fail(s, L);
    store_bind_text(s, q, 1, name_or_id);
    if ((r = store_push_one(s, L, q)) != 0) return r > 0 ? 1 : store_push_fail(s, L);
  }
  int64_t epoch = store_epoch(s);
  store_q *q = epoch < 0 ? NULL : store_q_get(s, s->sql_proc_by_name);
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, name_or_id);
  store_bind_int(s, q, 2, epoch);
  if ((r = store_push_one(s, L, q)) > 0) return 1;
  if (r == 0) store_failf(s, "unknown process '%s'", name_or_id);
  return store_push_fail(s, L);
}

int store_m_process_list (store_t *s, lua_State *L, int t) {
  const char *status = store_opt_string(L, t, "status", NULL);
  int all = store_opt_bool(L, t, "all_epochs", 0);
  static const char *const sql[] = {
      "SELECT * FROM process WHERE epoch = ? ORDER BY name",
      "SELECT * FROM process WHERE epoch = ? AND status = ? ORDER BY name",
      "SELECT * FROM process ORDER BY name, epoch",
      "SELECT * FROM process WHERE status = ? ORDER BY name, epoch",
  };
  int64_t epoch = all ? 0 : store_epoch(s);
  if (epoch < 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, sql[(all ? 2 : 0) + (status ? 1 : 0)]);
  if (q == NULL) return store_push_fail(s, L);
  int p = 1;
  if (!all) store_bind_int(s, q, p++, epoch);
  if (status) store_bind_text(s, q, p, status);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

int store_m_process_set_status (store_t *s, lua_State *L, const char *id, const char *status) {
  store_proc p;
  char now[STORE_TS_LEN + 1];
  if (!store_valid_status(status)) {
    store_failf(s, "invalid status '%s'", status);
    return store_push_fail(s, L);
  }
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_proc_find(s, id, &p) <= 0 || store_proc_set(s, &p, status, NULL, p.retry_count, now) < 0) {
    store_op_abort(s);
    return store_push_fail(s, L);
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  return push_process(s, L, p.id);
}

/* T15: disable the process and every descendant, and resolve their waits. */
#define TREE                                     \
  "WITH RECURSIVE tree (id) AS (SELECT ? UNION " \
  "SELECT p.id FROM process p JOIN tree ON p.parent_process = tree.id) "

typedef struct gone {
  store_id id;
  int notify; /* not completed: its child:exited was not posted yet */
} gone;

int store_disable_tree (store_t *s, lua_State *L, const char *pid, const char *now, int64_t *count) {
  gone *v = NULL;
  size_t n = 0, cap = 0;
  store_q *q = store_q_get(s, TREE "SELECT p.id, p.status FROM process p "
                                   "WHERE p.id IN (SELECT id FROM tree) AND p.status <> 'disabled'");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, pid);
  int rc;
  while ((rc = store_step(s, q)) == STORE_ROW) {
    gone *bigger = store_grow(s, v, &cap, n, sizeof *v);
    if (bigger == NULL) {
      rc = STORE_ERR;
      break;
    }
    v = bigger;
    store_col_copy(s, q, 0, v[n].id, sizeof v[n].id);
    const char *st = store_col_text(s, q, 1, NULL);
    v[n++].notify = st && strcmp(st, "completed") != 0;
  }
  store_reset(s, q);
  if (rc == STORE_ERR) goto fail;
  q = store_q_get(
      s,
      TREE "UPDATE process SET status = 'disabled', runnable_since = NULL, retry_at = NULL, updated_at = ? "
           "WHERE id IN (SELECT id FROM tree) AND status <> 'disabled'");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, pid);
  store_bind_text(s, q, 2, now);
  if (store_exec_q(s, q) < 0) goto fail;
  q = store_q_get(s, TREE
                  "UPDATE wait_condition SET status = 'resolved', resolved_at = ? WHERE status = 'pending' "
                  "AND (process IN (SELECT id FROM tree) OR run IN "
                  "(SELECT r.id FROM run r WHERE r.process IN (SELECT id FROM tree)))");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, pid);
  store_bind_text(s, q, 2, now);
  if (store_exec_q(s, q) < 0) goto fail;
  /* A kill is a child's end: its parent hears child:exited (exit code 2). */
  for (size_t i = 0; i < n; i++) {
    if (!v[i].notify) continue;
    store_id run;
    q = store_q_get(s, "SELECT id FROM run WHERE process = ? ORDER BY created_at DESC, id DESC LIMIT 1");
    if (q == NULL) goto fail;
    store_bind_text(s, q, 1, v[i].id);
    rc = store_step(s, q);
    if (rc == STORE_ROW) store_col_copy(s, q, 0, run, sizeof run);
    store_reset(s, q);
    if (rc == STORE_ERR) goto fail;
    if (store_post_exit(s, L, v[i].id, 2, rc == STORE_ROW ? run : NULL, "process disabled", -1, now) < 0)
      goto fail;
  }
  free(v);
  *count = (int64_t)n;
  return 0;
fail:
  free(v);
  return -1;
}

int store_m_process_disable (store_t *s, lua_State *L, const char *id) {
  store_proc p;
  char now[STORE_TS_LEN + 1];
  int64_t n = 0;
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  if (store_proc_find(s, id, &p) <= 0 || store_disable_tree(s, L, p.id, now, &n) < 0) {
    store_op_abort(s);
    return store_push_fail(s, L);
  }
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* {============ capabilities and grants */

static int push_capability (store_t *s, lua_State *L, const char *name) {
  store_q *q = store_q_get(s, s->sql_cap_by_name);
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, name);
  int r = store_push_one(s, L, q);
  if (r == 1) return 1;
  if (r == 0) store_failf(s, "unknown capability '%s'", name);
  return store_push_fail(s, L);
}

int store_m_capability_upsert (store_t *s, lua_State *L, int t) {
  const store_table *T = &store_capability_table;
  store_val vals[C__COUNT];
  luaL_checktype(L, t, LUA_TTABLE);
  if (store_vals_from_lua(s, L, t, T, vals, "capability_upsert", NULL) < 0) return store_push_fail(s, L);
  if (vals[C_NAME].state != STORE_VTEXT || vals[C_NAME].n == 0)
    return luaL_error(L, "capability_upsert: field 'name' is required");
  char name[512];
  if (vals[C_NAME].n >= sizeof name) return luaL_error(L, "capability_upsert: name too long");
  memcpy(name, vals[C_NAME].s, vals[C_NAME].n);
  name[vals[C_NAME].n] = '\0';
  char now[STORE_TS_LEN + 1];
  store_id id;
  int base = lua_gettop(L);
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *sel = store_q_get(s, s->sql_cap_by_name);
  if (sel == NULL) goto fail;
  store_bind_text(s, sel, 1, name);
  int rc = store_step(s, sel);
  if (rc == STORE_ERR) goto fail;
  int exists = rc == STORE_ROW;
  if (exists) {
    store_vals_merge(s, T, vals, sel);
  } else {
    store_uuid(s, id);
    store_val_text(&vals[C_ID], id);
    store_val_text(&vals[C_CREATED_AT], now);
    store_vals_defaults(T, vals);
  }
  store_val_text(&vals[C_UPDATED_AT], now);
  store_q *w = store_q_get(s, exists ? s->sql_cap_update : s->sql_cap_insert);
  if (w == NULL) goto fail;
  store_vals_bind(s, w, T, vals, exists ? 1 : 0);
  rc = store_exec_q(s, w);
  if (rc == 0) store_vals_push(L, T, vals);
  store_reset(s, sel);
  if (rc < 0) goto fail;
  return store_op_end(s, L, base, 1);
fail:
  return store_op_end(s, L, base, 0);
}

int store_m_capability_get (store_t *s, lua_State *L, const char *name) {
  return push_capability(s, L, name);
}

int store_m_capability_list (store_t *s, lua_State *L) {
  store_q *q = store_q_get(s, s->sql_cap_all);
  if (q == NULL || store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

#define GRANT_COLS                                                                          \
  "SELECT g.id AS id, g.process AS process, c.name AS capability, g.name AS name, "         \
  "g.config AS config, g.epoch AS epoch, g.created_at AS created_at, c.enabled AS enabled " \
  "FROM process_capability g JOIN capability c ON c.id = g.capability "

int store_m_grant_add (store_t *s, lua_State *L, const char *process, int t) {
  grant_check(L, t, "grant_add");
  store_proc p;
  int base = lua_gettop(L);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  int ok = store_proc_find(s, process, &p) > 0 && grant_put(s, L, p.id, p.epoch, t, 1) == 0;
  return store_op_end(s, L, base, ok);
}

int store_m_grants (store_t *s, lua_State *L, const char *process) {
  store_proc p;
  if (store_proc_find(s, process, &p) <= 0) return store_push_fail(s, L);
  store_q *q = store_q_get(s, GRANT_COLS "WHERE g.process = ? ORDER BY g.name");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, p.id);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

/* }============ */
