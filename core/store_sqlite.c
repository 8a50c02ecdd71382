/* store_sqlite.c — the SQLite driver of the store: WAL, busy timeout, foreign keys. */
#include "store_int.h"

#include <sqlite3.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

/* s->db: the connection and its transaction statements (prepared once: parsing
 * BEGIN/COMMIT on every rule would cost more than running them). */
typedef struct sq_conn {
  sqlite3 *db;
  sqlite3_stmt *begin, *commit, *rollback;
} sq_conn;

#define CONN(s) ((sq_conn *)(s)->db)
#define DB(s)   (CONN(s)->db)
#define ST(st)  ((sqlite3_stmt *)(st))

static int sq_fail (store_t *s, const char *what) {
  snprintf(s->err, sizeof s->err, "store: %s: %s", what, sqlite3_errmsg(DB(s)));
  return -1;
}

static int sq_exec (store_t *s, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(DB(s), sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
  snprintf(s->err, sizeof s->err, "store: %s", msg ? msg : sqlite3_errmsg(DB(s)));
  sqlite3_free(msg);
  return -1;
}

static void sq_close (store_t *s) {
  sq_conn *c = CONN(s);
  if (c == NULL) return;
  sqlite3_finalize(c->begin);
  sqlite3_finalize(c->commit);
  sqlite3_finalize(c->rollback);
  sqlite3_close(c->db); /* the store finalized its statements first */
  sqlite3_free(c);
  s->db = NULL;
}

/* Waits for another connection's write lock: 50 µs doubling to 1 ms, up to
 * 5 s in all. SQLite's own timeout handler sleeps 1, 2, 5, 10 ms..., so a
 * writer waiting on a short transaction (a node's slice) would sleep far
 * longer than the transaction lasts. */
static int sq_busy (void *ud, int n) {
  (void)ud;
  int64_t us = n < 5 ? 50 << n : 1000;
  int64_t waited = n < 5 ? 50 * ((1 << n) - 1) : 1550 + (int64_t)(n - 5) * 1000;
  if (waited >= 5000000) return 0;
  struct timespec ts = {0, (long)us * 1000};
  nanosleep(&ts, NULL);
  return 1;
}

static int sq_open (store_t *s, const char *path, int sync_full) {
  /* Memory statistics take a global mutex on every allocation; we never read
   * them. This only works before SQLite initialises, hence the first open. */
  static int configured;
  if (!configured) {
    configured = 1;
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  }
  sq_conn *c = sqlite3_malloc(sizeof *c);
  if (c == NULL) return store_failf(s, "store: out of memory");
  memset(c, 0, sizeof *c);
  s->db = c;
  int rc =
      sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(s->err, sizeof s->err, "store: %s: %s", path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
    sq_close(s);
    return -1;
  }
  sqlite3_busy_handler(c->db, sq_busy, NULL);
  /* A larger lookaside: statement cursors and records come from it, not malloc. */
  sqlite3_db_config(c->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 512, 2048);
  sqlite3_extended_result_codes(c->db, 1);
  /* WAL: readers never block the writer; NORMAL loses at most the last
   * transactions on power loss (never corrupts); FULL syncs every commit.
   * Checkpoints are rarer than the default (1000 pages): hot pages are then
   * copied back once for many commits instead of once for a few. Temporary
   * storage in memory: every operation inside a transaction is a savepoint,
   * whose journal would otherwise be written to a temporary file. */
  if (sq_exec(s, "PRAGMA journal_mode = WAL") < 0 || sq_exec(s, "PRAGMA foreign_keys = ON") < 0 ||
      sq_exec(s, sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL") < 0 ||
      sq_exec(s, "PRAGMA wal_autocheckpoint = 8000") < 0 || sq_exec(s, "PRAGMA temp_store = MEMORY") < 0 ||
      sqlite3_prepare_v3(c->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &c->begin, NULL) ||
      sqlite3_prepare_v3(c->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &c->commit, NULL) ||
      sqlite3_prepare_v3(c->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &c->rollback, NULL)) {
    if (s->err[0] == '\0') sq_fail(s, "open");
    sq_close(s);
    return -1;
  }
  return 0;
}

static store_stmt *sq_prepare (store_t *s, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(DB(s), sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    sq_fail(s, "prepare");
    return NULL;
  }
  return (store_stmt *)st;
}

static void sq_finalize (store_stmt *st) { sqlite3_finalize(ST(st)); }
static void sq_bind_null (store_stmt *st, int i) { sqlite3_bind_null(ST(st), i); }
static void sq_bind_int (store_stmt *st, int i, int64_t v) { sqlite3_bind_int64(ST(st), i, v); }
static void sq_bind_float (store_stmt *st, int i, double v) { sqlite3_bind_double(ST(st), i, v); }

static void sq_bind_text (store_stmt *st, int i, const char *v, size_t n) {
  sqlite3_bind_text64(ST(st), i, v, n, SQLITE_STATIC, SQLITE_UTF8);
}

static int sq_step (store_stmt *st) {
  int rc = sqlite3_step(ST(st));
  if (rc == SQLITE_ROW) return STORE_ROW;
  if (rc == SQLITE_DONE) return STORE_DONE;
  return STORE_ERR;
}

static void sq_reset (store_stmt *st) { sqlite3_reset(ST(st)); }
static int sq_column_count (store_stmt *st) { return sqlite3_column_count(ST(st)); }
static const char *sq_column_name (store_stmt *st, int i) { return sqlite3_column_name(ST(st), i); }

static int sq_column_type (store_stmt *st, int i) {
  switch (sqlite3_column_type(ST(st), i)) {
  case SQLITE_INTEGER:
    return STORE_TINT;
  case SQLITE_FLOAT:
    return STORE_TFLOAT;
  case SQLITE_NULL:
    return STORE_TNULL;
  default:
    return STORE_TTEXT;
  }
}

static int64_t sq_column_int (store_stmt *st, int i) { return sqlite3_column_int64(ST(st), i); }
static double sq_column_float (store_stmt *st, int i) { return sqlite3_column_double(ST(st), i); }

static const char *sq_column_text (store_stmt *st, int i, size_t *len) {
  const char *v = (const char *)sqlite3_column_text(ST(st), i);
  *len = v ? (size_t)sqlite3_column_bytes(ST(st), i) : 0;
  return v;
}

static int64_t sq_changes (store_t *s) { return sqlite3_changes64(DB(s)); }

static int sq_run (store_t *s, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : sq_fail(s, what);
}

/* IMMEDIATE takes the write lock up front, so two nodes never deadlock
 * upgrading read transactions; the busy timeout makes the loser wait. */
static int sq_begin (store_t *s) { return sq_run(s, CONN(s)->begin, "begin"); }
static int sq_commit (store_t *s) { return sq_run(s, CONN(s)->commit, "commit"); }

static int sq_rollback (store_t *s) {
  if (sqlite3_get_autocommit(DB(s))) return 0; /* SQLite already rolled back (e.g. on I/O error) */
  return sq_run(s, CONN(s)->rollback, "rollback");
}

static const char *sq_errmsg (store_t *s) { return sqlite3_errmsg(DB(s)); }

static const store_driver sqlite_driver = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .bind_null = sq_bind_null,
    .bind_int = sq_bind_int,
    .bind_float = sq_bind_float,
    .bind_text = sq_bind_text,
    .step = sq_step,
    .reset = sq_reset,
    .column_count = sq_column_count,
    .column_name = sq_column_name,
    .column_type = sq_column_type,
    .column_int = sq_column_int,
    .column_float = sq_column_float,
    .column_text = sq_column_text,
    .changes = sq_changes,
    .exec = sq_exec,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .errmsg = sq_errmsg,
};

const store_driver *store_sqlite_driver (void) { return &sqlite_driver; }
