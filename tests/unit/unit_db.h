/* unit_db.h — for tests of the store: a fresh SQLite file per test in one
 * temporary folder, and sql() on a second connection (what the API hides). */
#ifndef COGOS_UNIT_DB_H
#define COGOS_UNIT_DB_H

#include "json.h"
#include "lcore.h"
#include "store.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>
#include <sqlite3.h>

#include <stdlib.h>
#include <unistd.h>

static char unit_db_dir[64];
static char dbpath[256]; /* the current test's database */
static int unit_db_n;

/* Makes the folder, /tmp/cogos-test-<name>-XXXXXX; 0, or -1 after a message. */
static int unit_db_begin (const char *name) {
  snprintf(unit_db_dir, sizeof unit_db_dir, "/tmp/cogos-test-%s-XXXXXX", name);
  if (mkdtemp(unit_db_dir) != NULL) return 0;
  perror("mkdtemp");
  return -1;
}

/* The next test's database path (in dbpath). */
static const char *unit_db_next (void) {
  snprintf(dbpath, sizeof dbpath, "%s/t%d.db", unit_db_dir, ++unit_db_n);
  return dbpath;
}

/* Removes a database and its WAL files. */
static void unit_db_remove (const char *path) {
  char p[300];
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

static void unit_db_end (void) { rmdir(unit_db_dir); }

static int unit_db_first_value (void *ud, int n, char **vals, char **names) {
  (void)names;
  char **out = ud;
  if (*out == NULL && n > 0 && vals[0]) *out = strdup(vals[0]);
  return 0;
}

/* sql(statements [, path]) -> the first column of the first row (text) or nil,
 * on a second connection to path (default: the current test's database). */
static int unit_db_sql (lua_State *L) {
  const char *q = luaL_checkstring(L, 1);
  const char *path = luaL_optstring(L, 2, dbpath);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK) return luaL_error(L, "sql: cannot open");
  sqlite3_busy_timeout(db, 5000);
  char *val = NULL, *err = NULL;
  int rc = sqlite3_exec(db, q, unit_db_first_value, &val, &err);
  sqlite3_close(db);
  if (rc != SQLITE_OK) {
    lua_pushfstring(L, "sql: %s", err ? err : "?");
    sqlite3_free(err);
    free(val);
    return lua_error(L);
  }
  if (val)
    lua_pushstring(L, val);
  else
    lua_pushnil(L);
  free(val);
  return 1;
}

/* Opens the standard libraries, json and store in L, and sets check, sql and
 * DBPATH (a new database, unit_db_next). */
static void unit_db_openlibs (lua_State *L) {
  luaL_openlibs(L);
  luaL_requiref(L, "json", json_luaopen, 0);
  luaL_requiref(L, "store", store_luaopen, 0);
  lua_pop(L, 2);
  lua_register(L, "check", unit_lua_check);
  lua_register(L, "sql", unit_db_sql);
  lua_pushstring(L, unit_db_next());
  lua_setglobal(L, "DBPATH");
}

#endif
