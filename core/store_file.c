/* store_file.c — the versioned file store (cogos-spec §6.1): an identical
 * write makes no version; includes are derived from @{key} references. */
#include "store_int.h"

#include <lauxlib.h>

#include <string.h>

/* Pushes the JSON array (as text) of the keys referenced as @{key} in content:
 * unique, in order, trimmed, without the file's own key. Encoded into s->jb. */
static int derive_includes (store_t *s, lua_State *L, const char *key, const char *c, size_t n) {
  const char *end = c + n, *p = c;
  lua_Integer count = 0;
  lua_newtable(L); /* the list */
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  lua_newtable(L); /* seen */
  while ((p = memchr(p, '@', (size_t)(end - p))) != NULL) {
    if (p + 1 >= end || p[1] != '{') {
      p++;
      continue;
    }
    const char *k = p + 2, *q = k;
    while (q < end && *q != '}' && *q != '\r' && *q != '\n') q++;
    if (q >= end || *q != '}') {
      p = q;
      continue;
    }
    const char *a = k, *b = q;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    p = q + 1;
    size_t len = (size_t)(b - a);
    if (len == 0 || (len == strlen(key) && memcmp(a, key, len) == 0)) continue;
    lua_pushlstring(L, a, len);
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, a, len);
      lua_pushvalue(L, -1);
      lua_rawseti(L, -4, ++count);
      lua_pushboolean(L, 1);
      lua_rawset(L, -3);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  int r = store_json(s, L, -1, "includes");
  lua_pop(L, 1);
  return r;
}

static void push_write_result (lua_State *L, const char *id, const char *key, int64_t version, int created,
                               int changed) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, key);
  lua_setfield(L, -2, "key");
  lua_pushinteger(L, (lua_Integer)version);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, created);
  lua_setfield(L, -2, "created");
  lua_pushboolean(L, changed);
  lua_setfield(L, -2, "changed");
}

static int insert_version (store_t *s, int64_t file_n, int64_t version, const char *content, size_t n,
                           const char *source, int read_only, const char *run_id, const char *now) {
  store_id id;
  store_q *q = store_q_get(
      s, "INSERT INTO file_version (id, file, version, content, source, read_only, run_id, size, created_at) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (q == NULL) return -1;
  store_uuid(s, id);
  store_bind_text(s, q, 1, id);
  store_bind_int(s, q, 2, file_n);
  store_bind_int(s, q, 3, version);
  store_bind_ltext(s, q, 4, content, n);
  store_bind_text(s, q, 5, source);
  store_bind_int(s, q, 6, read_only);
  store_bind_text(s, q, 7, run_id);
  store_bind_int(s, q, 8, (int64_t)n);
  store_bind_text(s, q, 9, now);
  return store_exec_q(s, q);
}

int store_m_file_write (store_t *s, lua_State *L, const char *key, int content_idx, int t) {
  size_t n;
  const char *content = luaL_checklstring(L, content_idx, &n);
  const char *source = store_opt_string(L, t, "source", "cogent");
  const char *run_id = store_opt_string(L, t, "run_id", NULL);
  int read_only = store_opt_bool(L, t, "read_only", 0);
  if (*key == '\0') {
    store_failf(s, "file key must not be empty");
    return store_push_fail(s, L);
  }
  /* Most contents reference nothing: skip the Lua work then. */
  const char *inc = "[]";
  size_t inclen = 2;
  if (memchr(content, '@', n) != NULL) {
    if (derive_includes(s, L, key, content, n) < 0) return store_push_fail(s, L);
    inc = s->jb.data;
    inclen = s->jb.len;
  }

  store_id file_id;
  char now[STORE_TS_LEN + 1];
  int64_t version = 1, file_n = 0;
  int created = 0, changed = 1;
  store_now(s, now);
  if (store_op_begin(s) < 0) return store_push_fail(s, L);
  store_q *q = store_q_get(
      s, "SELECT f.id, f.version, v.content, (SELECT MAX(version) FROM file_version WHERE file = f.n), f.n "
         "FROM file f LEFT JOIN file_version v ON v.file = f.n AND v.version = f.version WHERE f.key = ?");
  if (q == NULL) goto fail;
  store_bind_text(s, q, 1, key);
  int rc = store_step(s, q);
  if (rc == STORE_ERR) goto fail;
  if (rc == STORE_ROW) {
    store_col_copy(s, q, 0, file_id, sizeof file_id);
    file_n = store_col_int(s, q, 4);
    size_t alen;
    const char *active = store_col_text(s, q, 2, &alen);
    if (active && alen == n && memcmp(active, content, n) == 0) {
      changed = 0; /* identical to the active version */
      version = store_col_int(s, q, 1);
    } else {
      version = store_col_int(s, q, 3) + 1;
    }
  } else {
    created = 1;
  }
  store_reset(s, q);
  if (created) {
    q = store_q_get(s, "SELECT COALESCE(MAX(n), 0) + 1 FROM file");
    if (q == NULL) goto fail;
    rc = store_step(s, q);
    if (rc == STORE_ROW) file_n = store_col_int(s, q, 0);
    store_reset(s, q);
    if (rc != STORE_ROW) goto fail;
    q = store_q_get(s, "INSERT INTO file (id, key, version, includes, created_at, updated_at, n) "
                       "VALUES (?, ?, 1, ?, ?, ?, ?)");
    if (q == NULL) goto fail;
    store_uuid(s, file_id);
    store_bind_text(s, q, 1, file_id);
    store_bind_text(s, q, 2, key);
    store_bind_ltext(s, q, 3, inc, inclen);
    store_bind_text(s, q, 4, now);
    store_bind_text(s, q, 5, now);
    store_bind_int(s, q, 6, file_n);
    if (store_exec_q(s, q) < 0) goto fail;
  } else if (changed) {
    q = store_q_get(s, "UPDATE file SET version = ?, includes = ?, updated_at = ? WHERE id = ?");
    if (q == NULL) goto fail;
    store_bind_int(s, q, 1, version);
    store_bind_ltext(s, q, 2, inc, inclen);
    store_bind_text(s, q, 3, now);
    store_bind_text(s, q, 4, file_id);
    if (store_exec_q(s, q) < 0) goto fail;
  }
  if (changed && insert_version(s, file_n, version, content, n, source, read_only, run_id, now) < 0)
    goto fail;
  if (store_op_commit(s) < 0) return store_push_fail(s, L);
  push_write_result(L, file_id, key, version, created, changed);
  return 1;
fail:
  store_op_abort(s);
  return store_push_fail(s, L);
}

int store_m_file_get (store_t *s, lua_State *L, const char *key) {
  store_q *q = store_q_get(
      s, "SELECT f.id AS id, f.key AS key, f.includes AS includes, f.created_at AS created_at, "
         "f.updated_at AS updated_at, v.version AS version, v.content AS content, v.source AS source, "
         "v.read_only AS read_only, v.run_id AS run_id, v.size AS size, v.created_at AS version_created_at "
         "FROM file f JOIN file_version v ON v.file = f.n AND v.version = f.version WHERE f.key = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, key);
  int r = store_push_one(s, L, q);
  if (r == 1) return 1;
  if (r == 0) store_failf(s, "unknown file '%s'", key);
  return store_push_fail(s, L);
}

int store_m_file_list (store_t *s, lua_State *L, int t) {
  const char *prefix = store_opt_string(L, t, "prefix", "");
  int64_t limit = store_opt_int(L, t, "limit", INT64_MAX, NULL);
  /* A prefix is the key range [prefix, prefix with its last byte + 1): an
   * index range, and no LIKE escaping. */
  char upper[1024];
  size_t plen = strlen(prefix);
  int bounded = 0;
  if (plen > 0 && plen < sizeof upper) {
    memcpy(upper, prefix, plen + 1);
    for (size_t i = plen; i-- > 0;) {
      if ((unsigned char)upper[i] != 0xFF) {
        upper[i] = (char)((unsigned char)upper[i] + 1);
        upper[i + 1] = '\0';
        bounded = 1;
        break;
      }
    }
  } else if (plen >= sizeof upper) {
    return luaL_error(L, "file_list: prefix too long");
  }
#define FILE_LIST_COLS                                                                     \
  "SELECT f.key AS key, v.version AS version, f.updated_at AS updated_at, v.size AS size " \
  "FROM file f JOIN file_version v ON v.file = f.n AND v.version = f.version WHERE f.key >= ? "
  store_q *q = bounded ? store_q_get(s, FILE_LIST_COLS "AND f.key < ? ORDER BY f.key LIMIT ?")
                       : store_q_get(s, FILE_LIST_COLS "ORDER BY f.key LIMIT ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, prefix);
  if (bounded) store_bind_text(s, q, 2, upper);
  store_bind_int(s, q, bounded ? 3 : 2, limit);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

int store_m_file_history (store_t *s, lua_State *L, const char *key) {
  store_q *q = store_q_get(s, "SELECT n FROM file WHERE key = ?");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, key);
  int64_t file_n = 0;
  int rc = store_step(s, q);
  if (rc == STORE_ROW) file_n = store_col_int(s, q, 0);
  store_reset(s, q);
  if (rc == STORE_ERR) return store_push_fail(s, L);
  if (rc == STORE_DONE) {
    store_failf(s, "unknown file '%s'", key);
    return store_push_fail(s, L);
  }
  /* is_active: the version the file points at (exactly one). */
  q = store_q_get(
      s, "SELECT v.id AS id, v.version AS version, v.content AS content, v.source AS source, "
         "v.read_only AS read_only, v.version = f.version AS is_active, v.run_id AS run_id, v.size AS size, "
         "v.created_at AS created_at FROM file_version v JOIN file f ON f.n = v.file "
         "WHERE v.file = ? ORDER BY v.version");
  if (q == NULL) return store_push_fail(s, L);
  store_bind_int(s, q, 1, file_n);
  if (store_push_rows(s, L, q) < 0) return store_push_fail(s, L);
  return 1;
}

int store_m_file_delete (store_t *s, lua_State *L, const char *key) {
  store_q *q = store_q_get(s, "DELETE FROM file WHERE key = ?"); /* versions cascade */
  if (q == NULL) return store_push_fail(s, L);
  store_bind_text(s, q, 1, key);
  if (store_exec_q(s, q) < 0) return store_push_fail(s, L);
  if (store_changes(s) == 0) {
    store_failf(s, "unknown file '%s'", key);
    return store_push_fail(s, L);
  }
  lua_pushboolean(L, 1);
  return 1;
}
