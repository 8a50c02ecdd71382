/* store_table.c — tables written field by field from Lua (process, capability):
 * column descriptors, merging given fields over a row or defaults, generated SQL. */
#include "store_int.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Order matters: store_proc.c indexes these (P_* there), and column 0 is the id. */
static const store_col process_cols[] = {
    {"id", STORE_KTEXT, 0, NULL},
    {"epoch", STORE_KINT, 0, "0"},
    {"name", STORE_KTEXT, 1, NULL},
    {"mode", STORE_KTEXT, 1, "one_shot"},
    {"content", STORE_KTEXT, 1, ""},
    {"priority", STORE_KREAL, 1, "0"},
    {"resources", STORE_KJSON, 1, "[]"},
    {"required_tags", STORE_KJSON, 1, "[]"},
    {"executor", STORE_KTEXT, 1, "llm"},
    {"status", STORE_KTEXT, 1, NULL}, /* default by mode, see process_upsert */
    {"runnable_since", STORE_KTEXT, 0, NULL},
    {"parent_process", STORE_KTEXT, 0, NULL}, /* name or id: resolved by process_upsert */
    {"preemptible", STORE_KBOOL, 1, "0"},
    {"model", STORE_KTEXT, 1, NULL},
    {"model_constraints", STORE_KJSON, 1, "{}"},
    {"return_schema", STORE_KJSON, 1, NULL},
    {"idle_timeout_ms", STORE_KINT, 1, NULL},
    {"max_duration_ms", STORE_KINT, 1, NULL},
    {"max_retries", STORE_KINT, 1, "0"},
    {"retry_count", STORE_KINT, 1, "0"},
    {"retry_backoff_ms", STORE_KINT, 1, NULL},
    {"retry_at", STORE_KTEXT, 0, NULL},
    {"clear_context", STORE_KBOOL, 1, "0"},
    {"tty", STORE_KBOOL, 1, "0"},
    {"metadata", STORE_KJSON, 1, "{}"},
    {"output_events", STORE_KJSON, 1, "[]"},
    {"schema_id", STORE_KTEXT, 1, NULL},
    {"created_at", STORE_KTEXT, 0, NULL},
    {"updated_at", STORE_KTEXT, 0, NULL},
};

static const store_col capability_cols[] = {
    {"id", STORE_KTEXT, 0, NULL},           {"name", STORE_KTEXT, 1, NULL},
    {"description", STORE_KTEXT, 1, ""},    {"instructions", STORE_KTEXT, 1, ""},
    {"handler", STORE_KTEXT, 1, ""},        {"schema", STORE_KJSON, 1, "{}"},
    {"iam_role_arn", STORE_KTEXT, 1, NULL}, {"enabled", STORE_KBOOL, 1, "1"},
    {"metadata", STORE_KJSON, 1, "{}"},     {"event_types", STORE_KJSON, 1, "[]"},
    {"created_at", STORE_KTEXT, 0, NULL},   {"updated_at", STORE_KTEXT, 0, NULL},
};

const store_table store_process_table = {"process", process_cols,
                                         (int)(sizeof process_cols / sizeof process_cols[0])};
const store_table store_capability_table = {"capability", capability_cols,
                                            (int)(sizeof capability_cols / sizeof capability_cols[0])};

int store_col_index (const store_table *t, const char *name) {
  for (int i = 0; i < t->ncols; i++)
    if (strcmp(t->cols[i].name, name) == 0) return i;
  return -1;
}

void store_val_text (store_val *v, const char *text) {
  v->in_jb = 0;
  if (text == NULL) {
    v->state = STORE_VNULL;
    return;
  }
  v->state = STORE_VTEXT;
  v->s = text;
  v->n = strlen(text);
}

void store_val_int (store_val *v, int64_t i) {
  v->state = STORE_VINT;
  v->i = i;
}

int store_vals_from_lua (store_t *s, lua_State *L, int idx, const store_table *t, store_val *vals,
                         const char *what, const char *const *skip) {
  char err[256];
  idx = lua_absindex(L, idx);
  s->jb.len = 0;
  for (int i = 0; i < t->ncols; i++) vals[i].state = STORE_VABSENT;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: field names must be strings (got %s)", what, luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2);
    int skipped = 0;
    for (int k = 0; skip && skip[k] && !skipped; k++) skipped = strcmp(key, skip[k]) == 0;
    if (skipped) {
      lua_pop(L, 1);
      continue;
    }
    int c = store_col_index(t, key);
    if (c < 0) luaL_error(L, "%s: unknown field '%s'", what, key);
    const store_col *col = &t->cols[c];
    if (!col->settable) luaL_error(L, "%s: field '%s' cannot be set", what, key);
    store_val *v = &vals[c];
    v->in_jb = 0;
    int type = lua_type(L, -1);
    if (type == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == json_null) {
      if (col->def != NULL) luaL_error(L, "%s: field '%s' cannot be null", what, key);
      v->state = STORE_VNULL;
    } else if (col->kind == STORE_KJSON) {
      size_t off = s->jb.len;
      if (json_encode(L, -1, &s->jb, 0, err, sizeof err) < 0) {
        lua_pop(L, 2);
        return store_failf(s, "%s: field '%s': %s", what, key, err);
      }
      v->state = STORE_VTEXT;
      v->in_jb = 1;
      v->jb_off = off;
      v->n = s->jb.len - off;
    } else if (col->kind == STORE_KTEXT) {
      if (type != LUA_TSTRING)
        luaL_error(L, "%s: bad field '%s' (string expected, got %s)", what, key, luaL_typename(L, -1));
      v->state = STORE_VTEXT;
      v->s = lua_tolstring(L, -1, &v->n); /* the argument table keeps it alive */
    } else if (col->kind == STORE_KBOOL) {
      if (type != LUA_TBOOLEAN)
        luaL_error(L, "%s: bad field '%s' (boolean expected, got %s)", what, key, luaL_typename(L, -1));
      store_val_int(v, lua_toboolean(L, -1));
    } else if (col->kind == STORE_KINT) {
      int ok;
      lua_Integer i = lua_tointegerx(L, -1, &ok);
      if (type != LUA_TNUMBER || !ok)
        luaL_error(L, "%s: bad field '%s' (integer expected, got %s)", what, key, luaL_typename(L, -1));
      store_val_int(v, (int64_t)i);
    } else {
      if (type != LUA_TNUMBER)
        luaL_error(L, "%s: bad field '%s' (number expected, got %s)", what, key, luaL_typename(L, -1));
      v->state = STORE_VFLOAT;
      v->f = (double)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  /* Every JSON field is encoded: the buffer no longer moves. */
  for (int i = 0; i < t->ncols; i++)
    if (vals[i].state == STORE_VTEXT && vals[i].in_jb) vals[i].s = s->jb.data + vals[i].jb_off;
  return 0;
}

void store_vals_merge (store_t *s, const store_table *t, store_val *vals, store_q *q) {
  for (int i = 0; i < t->ncols; i++) {
    store_val *v = &vals[i];
    if (v->state != STORE_VABSENT) continue;
    v->in_jb = 0;
    switch (store_col_type(s, q, i)) {
    case STORE_TNULL:
      v->state = STORE_VNULL;
      break;
    case STORE_TINT:
      store_val_int(v, store_col_int(s, q, i));
      break;
    case STORE_TFLOAT:
      v->state = STORE_VFLOAT;
      v->f = store_col_float(s, q, i);
      break;
    default:
      v->state = STORE_VTEXT;
      v->s = store_col_text(s, q, i, &v->n); /* valid until q is reset */
    }
  }
}

void store_vals_defaults (const store_table *t, store_val *vals) {
  for (int i = 0; i < t->ncols; i++) {
    store_val *v = &vals[i];
    const store_col *col = &t->cols[i];
    if (v->state != STORE_VABSENT) continue;
    v->in_jb = 0;
    if (col->def == NULL) {
      v->state = STORE_VNULL;
    } else if (col->kind == STORE_KINT || col->kind == STORE_KBOOL) {
      store_val_int(v, strtoll(col->def, NULL, 10));
    } else if (col->kind == STORE_KREAL) {
      v->state = STORE_VFLOAT;
      v->f = strtod(col->def, NULL);
    } else {
      store_val_text(v, col->def);
    }
  }
}

void store_vals_push (lua_State *L, const store_table *t, const store_val *vals) {
  lua_createtable(L, 0, t->ncols);
  for (int i = 0; i < t->ncols; i++) {
    const store_val *v = &vals[i];
    char kind = t->cols[i].kind;
    switch (v->state) {
    case STORE_VINT:
      if (kind == STORE_KBOOL)
        lua_pushboolean(L, v->i != 0);
      else
        lua_pushinteger(L, (lua_Integer)v->i);
      break;
    case STORE_VFLOAT:
      lua_pushnumber(L, (lua_Number)v->f);
      break;
    case STORE_VTEXT:
      if (kind != STORE_KJSON) {
        lua_pushlstring(L, v->s, v->n);
      } else if (!json_decode(L, v->s, v->n)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v->s, v->n);
      }
      break;
    default:
      continue; /* NULL: absent, as in a row read back */
    }
    lua_setfield(L, -2, t->cols[i].name);
  }
}

static void bind_val (store_t *s, store_q *q, int param, const store_val *v) {
  switch (v->state) {
  case STORE_VINT:
    store_bind_int(s, q, param, v->i);
    break;
  case STORE_VFLOAT:
    store_bind_float(s, q, param, v->f);
    break;
  case STORE_VTEXT:
    store_bind_ltext(s, q, param, v->s, v->n);
    break;
  default:
    store_bind_null(s, q, param);
  }
}

void store_vals_bind (store_t *s, store_q *q, const store_table *t, store_val *vals, int from) {
  int p = 1;
  for (int i = from; i < t->ncols; i++) bind_val(s, q, p++, &vals[i]);
  for (int i = 0; i < from; i++) bind_val(s, q, p++, &vals[i]);
}

/* {============ generated SQL */

typedef struct sqlbuf {
  char *data;
  size_t len, cap;
  int oom;
} sqlbuf;

static void sb_add (sqlbuf *b, const char *text) {
  size_t n = strlen(text);
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 2048;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, text, n + 1);
  b->len += n;
}

/* Appends one NUL-terminated statement; returns its offset. */
static size_t sb_end (sqlbuf *b) {
  sb_add(b, "");
  if (!b->oom) b->len++; /* keep the NUL: statements sit side by side */
  return b->len;
}

static void sb_cols (sqlbuf *b, const store_table *t, int from, const char *suffix) {
  for (int i = from; i < t->ncols; i++) {
    if (i > from) sb_add(b, ", ");
    sb_add(b, t->cols[i].name);
    sb_add(b, suffix);
  }
}

static size_t gen_insert (sqlbuf *b, const store_table *t) {
  size_t at = b->len;
  sb_add(b, "INSERT INTO ");
  sb_add(b, t->name);
  sb_add(b, " (");
  sb_cols(b, t, 0, "");
  sb_add(b, ") VALUES (");
  for (int i = 0; i < t->ncols; i++) sb_add(b, i ? ", ?" : "?");
  sb_add(b, ")");
  sb_end(b);
  return at;
}

static size_t gen_update (sqlbuf *b, const store_table *t) {
  size_t at = b->len;
  sb_add(b, "UPDATE ");
  sb_add(b, t->name);
  sb_add(b, " SET ");
  sb_cols(b, t, 1, " = ?");
  sb_add(b, " WHERE id = ?");
  sb_end(b);
  return at;
}

static size_t gen_select (sqlbuf *b, const store_table *t, const char *tail) {
  size_t at = b->len;
  sb_add(b, "SELECT ");
  sb_cols(b, t, 0, "");
  sb_add(b, " FROM ");
  sb_add(b, t->name);
  sb_add(b, tail);
  sb_end(b);
  return at;
}

int store_table_sql (store_t *s) {
  sqlbuf b = {0};
  size_t pi = gen_insert(&b, &store_process_table);
  size_t pu = gen_update(&b, &store_process_table);
  size_t pn = gen_select(&b, &store_process_table, " WHERE name = ? AND epoch = ?");
  size_t pd = gen_select(&b, &store_process_table, " WHERE id = ?");
  size_t ci = gen_insert(&b, &store_capability_table);
  size_t cu = gen_update(&b, &store_capability_table);
  size_t cn = gen_select(&b, &store_capability_table, " WHERE name = ?");
  size_t ca = gen_select(&b, &store_capability_table, " ORDER BY name");
  if (b.oom) {
    free(b.data);
    return store_failf(s, "out of memory");
  }
  s->gen_sql = b.data;
  s->sql_proc_insert = b.data + pi;
  s->sql_proc_update = b.data + pu;
  s->sql_proc_by_name = b.data + pn;
  s->sql_proc_by_id = b.data + pd;
  s->sql_cap_insert = b.data + ci;
  s->sql_cap_update = b.data + cu;
  s->sql_cap_by_name = b.data + cn;
  s->sql_cap_all = b.data + ca;
  return 0;
}

/* }============ */
