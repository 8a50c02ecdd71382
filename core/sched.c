/* sched.c — runs as coroutines on the node's loop: dispatch, yields, resumes.
 *
 * Every task is a thread of the node state whose extra space points at its
 * task record. Ready tasks and the dispatcher run from a check handle, so a
 * wake-up that arrives during the loop's poll phase is dispatched in the same
 * loop turn; an idle handle keeps the poll from blocking while work is ready.
 * The dispatcher draws runnable processes by softmax over effective priority
 * and claims them in one transaction per pass. A run parked in a wait
 * (core.sched.park) is resumed by the store's wake callback for its process
 * instead of a new dispatch.
 */
#include "sched.h"
#include "host.h"
#include "lcore.h"
#include "loop.h"
#include "store.h"

#include <lauxlib.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A full userdata whose user value is its thread, so both live and die with
 * the node state (a task still waiting at exit is freed by lua_close). */
typedef struct sched_task {
  lua_State *co;
  int ref;    /* anchors the task (and so its thread) in the registry */
  int nargs;  /* values waiting on co for the next resume */
  int is_run; /* a dispatched run: frees a slot when it ends */
  int started;
  int fetch_wait;               /* resume with db:wait_results(parked_pid) */
  char parked_pid[64];          /* non-empty while parked in a wait (core.sched.park) */
  struct sched_task *next;      /* ready queue */
  struct sched_task *park_next; /* parked list */
} sched_task;

static const char wait_token = 0; /* yielded value: "someone will resume me" */

static struct {
  lua_State *L; /* main thread of the node state */
  uv_check_t *check;
  uv_idle_t *idle;
  sched_task *ready_head, *ready_tail;
  int dispatch_pending;
  /* dispatcher, when started */
  int db_ref, run_ref;
  char node_id[64];
  int slots, running;
  store_t *store;     /* the dispatcher's db (anchored by db_ref) */
  uint64_t rng;       /* splitmix64 state of the selection draws */
  sched_task *parked; /* runs parked in a wait, newest first */
  int nparked;
} S = {.db_ref = LUA_NOREF, .run_ref = LUA_NOREF, .rng = 0x9E3779B97F4A7C15u};

static sched_task *task_of (lua_State *co) { return *(sched_task **)lua_getextraspace(co); }

static void arm(void);

static void push_ready (sched_task *t) {
  t->next = NULL;
  if (S.ready_tail)
    S.ready_tail->next = t;
  else
    S.ready_head = t;
  S.ready_tail = t;
  arm();
}

int sched_can_yield (lua_State *L) {
  sched_task *t = task_of(L);
  return t != NULL && t->co == L && lua_isyieldable(L);
}

int sched_yield_wait (lua_State *L, lua_KContext ctx, lua_KFunction k) {
  lua_pushlightuserdata(L, (void *)&wait_token);
  return lua_yieldk(L, 1, ctx, k);
}

int sched_yield_ready (lua_State *L, lua_KContext ctx, lua_KFunction k) { return lua_yieldk(L, 0, ctx, k); }

static void task_end (sched_task *t) {
  lua_State *L = S.L;
  *(sched_task **)lua_getextraspace(t->co) = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  if (t->is_run) {
    S.running--;
    sched_wake(); /* a slot is free, and the run may have left more work */
  }
}

/* Resumes t with the values already on its stack and files it by outcome. */
static void task_step (sched_task *t) {
  lua_State *co = t->co;
  int nres = 0;
  int nargs = t->nargs;
  t->nargs = 0;
  if (!t->started) {
    t->started = 1;
    nargs = lua_gettop(co) - 1; /* the function itself sits below its arguments */
  }
  /* A slice's writes share one commit (store.h, group commit): the next task
   * sees them committed. A failed commit lost writes the task saw succeed:
   * the node stops, and the lease recovers its runs (never half a slice). */
  if (S.store) store_group_open(S.store);
  int status = lua_resume(co, S.L, nargs, &nres);
  if (S.store && store_group_close(S.store) < 0) {
    fprintf(stderr, "cogos: store commit failed, stopping the node: %s\n", store_error(S.store));
    exit(1);
  }
  if (status == LUA_YIELD) {
    int waiting = nres == 1 && lua_touserdata(co, -1) == (void *)&wait_token;
    lua_pop(co, nres);
    if (!waiting) push_ready(t);
    return;
  }
  if (status != LUA_OK) {
    const char *msg = lua_tostring(co, -1);
    luaL_traceback(S.L, co, msg ? msg : "(error object is not a string)", 0);
    fprintf(stderr, "cogos: task failed: %s\n", lua_tostring(S.L, -1));
    lua_pop(S.L, 1);
  }
  task_end(t);
}

void sched_resume (lua_State *co, int nargs) {
  sched_task *t = task_of(co);
  if (t == NULL) return;
  t->nargs = nargs;
  task_step(t);
}

/* Creates a task from the function and nargs arguments on top of L's stack. */
static sched_task *task_new (lua_State *L, int nargs, int is_run) { /* may raise */
  sched_task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  lua_State *co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->co = co;
  t->is_run = is_run;
  *(sched_task **)lua_getextraspace(co) = t;
  lua_xmove(L, co, nargs + 1);
  push_ready(t);
  return t;
}

/* {============ selection (reference §2.3)
 *
 * effective priority = priority + 0.1 per minute since runnable_since; the
 * slots are drawn by softmax (temperature 1) without replacement, the weights
 * of those left renormalised after every draw. Seeded, so a test can replay. */

#define SCHED_CANDIDATES 200

static uint64_t sched_rand64 (uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static double sched_uniform (uint64_t *state) { /* [0, 1) */
  return (double)(sched_rand64(state) >> 11) * 0x1.0p-53;
}

static int64_t sched_now_ms (void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A store timestamp ("2026-11-21T06:52:02.123Z") in ms since the epoch, or -1. */
static int64_t sched_ts_ms (const char *ts) {
  struct tm tm;
  int ms = 0;
  memset(&tm, 0, sizeof tm);
  if (ts == NULL || sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm) * 1000 + ms;
}

double sched_effective_priority (double priority, const char *runnable_since, int64_t now_ms) {
  int64_t since = sched_ts_ms(runnable_since);
  if (since < 0 || now_ms <= since) return priority;
  return priority + 0.1 * (double)(now_ms - since) / 60000.0;
}

int sched_softmax_pick (const double *ep, int n, int k, uint64_t *rng, int *out) {
  double w[SCHED_CANDIDATES];
  char taken[SCHED_CANDIDATES];
  if (n > SCHED_CANDIDATES) n = SCHED_CANDIDATES;
  if (k > n) k = n;
  memset(taken, 0, sizeof taken);
  int stale = 1; /* weights need (re)computing relative to the max of those left */
  for (int d = 0; d < k; d++) {
    double total = 0;
    if (!stale) {
      for (int i = 0; i < n; i++)
        if (!taken[i]) total += w[i];
      stale = !(total > 0); /* everything left underflowed: rebase on their max */
    }
    if (stale) {
      double max = -HUGE_VAL;
      for (int i = 0; i < n; i++)
        if (!taken[i] && ep[i] > max) max = ep[i];
      total = 0;
      for (int i = 0; i < n; i++) {
        w[i] = taken[i] ? 0 : exp(ep[i] - max);
        total += w[i];
      }
      stale = 0;
    }
    double r = sched_uniform(rng) * total;
    int pick = -1;
    for (int i = 0; i < n; i++) {
      if (taken[i]) continue;
      pick = i; /* the last one left absorbs rounding */
      if (r < w[i]) break;
      r -= w[i];
    }
    if (pick < 0) return d; /* not reached: d < k <= n leaves one */
    taken[pick] = 1;
    out[d] = pick;
  }
  return k < 0 ? 0 : k;
}

/* Picks up to k of the candidate rows in the list at idx ({priority, runnable_since}). */
static int select_rows (lua_State *L, int idx, int k, int64_t now_ms, uint64_t *rng, int *out) {
  double ep[SCHED_CANDIDATES];
  int n = (int)luaL_len(L, idx);
  if (n > SCHED_CANDIDATES) n = SCHED_CANDIDATES;
  for (int i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    lua_getfield(L, -1, "priority");
    lua_getfield(L, -2, "runnable_since");
    ep[i] = sched_effective_priority(lua_tonumber(L, -2), lua_tostring(L, -1), now_ms);
    lua_pop(L, 3);
  }
  return sched_softmax_pick(ep, n, k, rng, out);
}

/* }============ */

/* {============ the dispatcher */

/* Calls db:method(args) on the main thread; leaves one result, or returns 0
 * after reporting the error. */
static int db_call (const char *method, int nargs) {
  lua_State *L = S.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S.db_ref);
  lua_getfield(L, -1, method);
  lua_insert(L, -2 - nargs);
  lua_insert(L, -1 - nargs); /* stack: method db args... */
  if (host_pcall(L, nargs + 1, 1) != LUA_OK) {
    fprintf(stderr, "cogos: dispatcher: db:%s failed: %s\n", method, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* One pass: draws the free slots from the candidates and claims them in one
 * transaction (group commit); the runs start once it is committed. Returns
 * the number of runs started, or -1 when nothing more can be done now. */
static int dispatch_pass (void) {
  lua_State *L = S.L;
  int out[SCHED_CANDIDATES];
  int base = lua_gettop(L);
  lua_pushinteger(L, SCHED_CANDIDATES);
  if (!db_call("runnable", 1)) return -1;
  int list = lua_gettop(L);
  if (!lua_istable(L, list) || luaL_len(L, list) == 0) {
    lua_settop(L, base);
    return -1;
  }
  int n = (int)luaL_len(L, list);
  int k = select_rows(L, list, S.slots - S.running, sched_now_ms(), &S.rng, out);
  lua_newtable(L); /* the claimed runs */
  int runs = lua_gettop(L), claimed = 0;
  if (!db_call("begin", 0)) {
    lua_settop(L, base);
    return -1;
  }
  lua_pop(L, 1);
  for (int i = 0; i < k; i++) {
    lua_geti(L, list, out[i] + 1);
    lua_getfield(L, -1, "id");
    lua_remove(L, -2);
    lua_pushstring(L, S.node_id);
    if (!db_call("dispatch", 2)) continue;
    if (lua_istable(L, -1))
      lua_rawseti(L, runs, ++claimed);
    else
      lua_pop(L, 1); /* claimed elsewhere, or blocked by a resource */
  }
  if (!db_call("commit", 0)) {
    if (db_call("rollback", 0)) lua_pop(L, 1);
    lua_settop(L, base);
    return -1;
  }
  lua_pop(L, 1);
  for (int i = 1; i <= claimed; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, S.run_ref);
    lua_rawgeti(L, runs, i);
    S.running++;
    task_new(L, 1, 1);
  }
  lua_settop(L, base);
  /* A process that was not claimed is no longer runnable (or blocked now), so
   * the next pass sees the rest; k < n means candidates were left undrawn. */
  return claimed > 0 || k < n ? claimed : -1;
}

static void dispatch (void) {
  if (S.db_ref == LUA_NOREF) return;
  for (int passes = 0; S.running < S.slots && passes < 64; passes++)
    if (dispatch_pass() < 0) return;
}

/* }============ */

/* {============ runs parked in a wait */

static sched_task *unpark (const char *process_id) {
  for (sched_task **pp = &S.parked; *pp; pp = &(*pp)->park_next) {
    sched_task *t = *pp;
    if (strcmp(t->parked_pid, process_id) == 0) {
      *pp = t->park_next;
      t->park_next = NULL; /* parked_pid stays until the resume reads it */
      S.nparked--;
      return t;
    }
  }
  return NULL;
}

/* 1 when process_id still has a pending wait: woken for another reason (an
 * out-of-band status change), so its parked run must not resume yet. */
static int still_waiting (const char *process_id) {
  lua_State *L = S.L;
  lua_pushstring(L, process_id);
  if (!db_call("wait_get", 1)) return 0;
  int pending = lua_istable(L, -1);
  lua_pop(L, 1);
  return pending;
}

static void repark (sched_task *t) {
  t->park_next = S.parked;
  S.parked = t;
  S.nparked++;
}

/* Before a parked task's resume: its wait results become park()'s return values. */
static void push_wait_results (sched_task *t, const char *process_id) {
  lua_State *L = S.L;
  lua_pushstring(L, process_id);
  if (db_call("wait_results", 1)) {
    lua_xmove(L, t->co, 1);
    t->nargs = 1;
  } else {
    lua_pushnil(t->co);
    lua_pushliteral(t->co, "wait: the results could not be read");
    t->nargs = 2;
  }
}

/* }============ */

static void on_check (uv_check_t *h) {
  (void)h;
  if (S.dispatch_pending) {
    S.dispatch_pending = 0;
    dispatch();
  }
  /* Run what is ready now; tasks re-queued while we run wait for the next turn. */
  sched_task *t = S.ready_head, *end = S.ready_tail;
  S.ready_head = S.ready_tail = NULL;
  while (t) {
    sched_task *next = t == end ? NULL : t->next;
    if (t->fetch_wait) {
      t->fetch_wait = 0;
      if (still_waiting(t->parked_pid)) {
        repark(t);
        sched_wake(); /* what woke it is the dispatcher's business */
        t = next;
        continue;
      }
      push_wait_results(t, t->parked_pid);
      t->parked_pid[0] = '\0';
    }
    task_step(t);
    t = next;
  }
  if (S.ready_head == NULL && !S.dispatch_pending) {
    uv_idle_stop(S.idle);
    uv_check_stop(S.check);
  }
}

static void on_idle (uv_idle_t *h) { (void)h; }

static void arm (void) {
  if (S.check == NULL) {
    S.check = malloc(sizeof *S.check);
    S.idle = malloc(sizeof *S.idle);
    if (S.check == NULL || S.idle == NULL) abort();
    uv_check_init(loop_get(), S.check);
    uv_idle_init(loop_get(), S.idle);
  }
  uv_check_start(S.check, on_check);
  uv_idle_start(S.idle, on_idle);
}

void sched_wake (void) {
  S.dispatch_pending = 1;
  arm();
}

/* The store made process_id runnable, or resolved the wait of a run parked
 * in it: that run resumes (in this loop turn) instead of a new dispatch. */
static void store_woke (void *ud, const char *process_id) {
  (void)ud;
  sched_task *t = unpark(process_id);
  if (t == NULL) {
    sched_wake();
    return;
  }
  t->fetch_wait = 1;
  push_ready(t);
}

/* {============ Lua API */

static int l_sched_spawn (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  task_new(L, lua_gettop(L) - 1, 0);
  return 0;
}

static void free_handle (uv_handle_t *h) { free(h); }

static void sleep_done (uv_timer_t *h) {
  lua_State *co = h->data;
  uv_close((uv_handle_t *)h, free_handle);
  sched_resume(co, 0);
}

static int l_sched_sleep (lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  if (!sched_can_yield(L)) return luaL_error(L, "sleep: not inside a sched coroutine");
  /* A 0 ms timer restarted from timer callbacks would keep the timer phase busy. */
  if (ms <= 0) return sched_yield_ready(L, 0, NULL);
  uv_timer_t *h = malloc(sizeof *h);
  if (h == NULL) return luaL_error(L, "out of memory");
  uv_timer_init(loop_get(), h);
  h->data = L;
  uv_timer_start(h, sleep_done, (uint64_t)(ms < 0 ? 0 : ms), 0);
  return sched_yield_wait(L, 0, NULL);
}

static int l_sched_in_coroutine (lua_State *L) {
  lua_pushboolean(L, sched_can_yield(L));
  return 1;
}

static uint64_t seed_arg (lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return (uint64_t)lua_tointeger(L, idx);
  return (uint64_t)luaL_checknumber(L, idx);
}

static int l_sched_start (lua_State *L) {
  store_t *store = store_check(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (S.db_ref != LUA_NOREF) return luaL_error(L, "the dispatcher is already started");
  lua_getfield(L, 3, "node_id");
  snprintf(S.node_id, sizeof S.node_id, "%s", luaL_checkstring(L, -1));
  lua_getfield(L, 3, "slots");
  S.slots = (int)luaL_optinteger(L, -1, 64);
  if (lua_getfield(L, 3, "seed") != LUA_TNIL)
    S.rng = seed_arg(L, -1);
  else
    S.rng = (uint64_t)sched_now_ms() ^ ((uint64_t)(uintptr_t)&S << 16);
  lua_pop(L, 3);
  if (S.slots < 1) return luaL_argerror(L, 3, "slots must be at least 1");
  lua_pushvalue(L, 1);
  S.db_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  S.run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  store_set_wake(store, store_woke, NULL);
  S.store = store;
  sched_wake();
  return 0;
}

static int l_sched_wake (lua_State *L) {
  (void)L;
  sched_wake();
  return 0;
}

static int l_sched_running (lua_State *L) {
  lua_pushinteger(L, S.running);
  return 1;
}

static int l_sched_park (lua_State *L) {
  size_t len;
  const char *pid = luaL_checklstring(L, 1, &len);
  sched_task *t = task_of(L);
  if (!sched_can_yield(L)) return luaL_error(L, "park: not inside a sched coroutine");
  if (S.db_ref == LUA_NOREF) return luaL_error(L, "park: the dispatcher is not started");
  if (len == 0 || len >= sizeof t->parked_pid) return luaL_argerror(L, 1, "not a process id");
  for (sched_task *p = S.parked; p; p = p->park_next)
    if (strcmp(p->parked_pid, pid) == 0) return luaL_error(L, "park: process '%s' is already parked", pid);
  memcpy(t->parked_pid, pid, len + 1);
  repark(t);
  lua_settop(L, 0);
  return sched_yield_wait(L, 0, NULL);
}

static int l_sched_unpark (lua_State *L) {
  const char *pid = luaL_checkstring(L, 1);
  int n = lua_gettop(L) - 1;
  sched_task *t = unpark(pid);
  if (t == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  t->parked_pid[0] = '\0';
  lua_checkstack(t->co, n + LUA_MINSTACK);
  lua_xmove(L, t->co, n);
  t->nargs = n;
  push_ready(t);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_sched_parked (lua_State *L) {
  int i = 0;
  lua_createtable(L, S.nparked, 0);
  for (sched_task *t = S.parked; t; t = t->park_next) {
    lua_pushstring(L, t->parked_pid);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int l_sched_seed (lua_State *L) {
  S.rng = seed_arg(L, 1);
  return 0;
}

static int l_sched_select (lua_State *L) {
  int out[SCHED_CANDIDATES];
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer k = luaL_checkinteger(L, 2);
  luaL_argcheck(L, k >= 0, 2, "slots must not be negative");
  luaL_argcheck(L, luaL_len(L, 1) <= SCHED_CANDIDATES, 1, "at most 200 candidates");
  int64_t now = sched_now_ms();
  uint64_t local, *rng = &S.rng;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "now_ms") != LUA_TNIL) now = (int64_t)luaL_checknumber(L, -1);
    if (lua_getfield(L, 3, "seed") != LUA_TNIL) {
      local = seed_arg(L, -1);
      rng = &local;
    }
    lua_pop(L, 2);
  }
  int n = select_rows(L, 1, k > SCHED_CANDIDATES ? SCHED_CANDIDATES : (int)k, now, rng, out);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, out[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

int sched_luaopen (lua_State *L) {
  static const luaL_Reg fns[] = {
      {"spawn", l_sched_spawn}, {"sleep", l_sched_sleep},   {"in_coroutine", l_sched_in_coroutine},
      {"start", l_sched_start}, {"wake", l_sched_wake},     {"running", l_sched_running},
      {"park", l_sched_park},   {"unpark", l_sched_unpark}, {"parked", l_sched_parked},
      {"seed", l_sched_seed},   {"select", l_sched_select}, {NULL, NULL},
  };
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  S.L = lua_tothread(L, -1);
  lua_pop(L, 1);
  /* Threads copy the main thread's extra space: NULL means "not a task". */
  *(sched_task **)lua_getextraspace(S.L) = NULL;
  luaL_newlib(L, fns);
  return 1;
}
