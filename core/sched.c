/* sched.c — runs as coroutines on the node's loop: dispatch, yields, resumes.
 *
 * Every task is a thread of the node state whose extra space points at its
 * task record. Ready tasks and the dispatcher run from a check handle, so a
 * wake-up that arrives during the loop's poll phase is dispatched in the same
 * loop turn; an idle handle keeps the poll from blocking while work is ready.
 */
#include "sched.h"
#include "host.h"
#include "lcore.h"
#include "loop.h"
#include "store.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A full userdata whose user value is its thread, so both live and die with
 * the node state (a task still waiting at exit is freed by lua_close). */
typedef struct sched_task {
  lua_State *co;
  int ref;       /* anchors the task (and so its thread) in the registry */
  int nargs;     /* values waiting on co for the next resume */
  int is_run;    /* a dispatched run: frees a slot when it ends */
  int started;
  struct sched_task *next; /* ready queue */
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
} S = {.db_ref = LUA_NOREF, .run_ref = LUA_NOREF};

static sched_task *task_of (lua_State *co) { return *(sched_task **)lua_getextraspace(co); }

static void arm (void);

static void push_ready (sched_task *t) {
  t->next = NULL;
  if (S.ready_tail) S.ready_tail->next = t;
  else S.ready_head = t;
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

int sched_yield_ready (lua_State *L, lua_KContext ctx, lua_KFunction k) {
  return lua_yieldk(L, 0, ctx, k);
}

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
  int status = lua_resume(co, S.L, nargs, &nres);
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

static void dispatch (void) {
  lua_State *L = S.L;
  if (S.db_ref == LUA_NOREF) return;
  while (S.running < S.slots) {
    lua_pushinteger(L, S.slots - S.running);
    if (!db_call("runnable", 1)) return;
    int list = lua_gettop(L);
    lua_Integer n = lua_istable(L, list) ? luaL_len(L, list) : 0;
    int claimed = 0;
    for (lua_Integer i = 1; i <= n && S.running < S.slots; i++) {
      lua_geti(L, list, i);
      lua_getfield(L, -1, "id");
      lua_remove(L, -2);
      lua_pushstring(L, S.node_id);
      if (!db_call("dispatch", 2)) continue;
      if (!lua_istable(L, -1)) { /* someone else claimed it first */
        lua_pop(L, 1);
        continue;
      }
      lua_rawgeti(L, LUA_REGISTRYINDEX, S.run_ref);
      lua_insert(L, -2);
      S.running++;
      task_new(L, 1, 1);
      claimed++;
    }
    lua_settop(L, list - 1);
    if (claimed == 0) return;
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

static void store_woke (void *ud, const char *process_id) {
  (void)ud;
  (void)process_id;
  sched_wake();
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

static int l_sched_start (lua_State *L) {
  store_t *store = store_check(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (S.db_ref != LUA_NOREF) return luaL_error(L, "the dispatcher is already started");
  lua_getfield(L, 3, "node_id");
  snprintf(S.node_id, sizeof S.node_id, "%s", luaL_checkstring(L, -1));
  lua_getfield(L, 3, "slots");
  S.slots = (int)luaL_optinteger(L, -1, 64);
  lua_pop(L, 2);
  if (S.slots < 1) return luaL_argerror(L, 3, "slots must be at least 1");
  lua_pushvalue(L, 1);
  S.db_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  S.run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  store_set_wake(store, store_woke, NULL);
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

int sched_luaopen (lua_State *L) {
  static const luaL_Reg fns[] = {
    {"spawn", l_sched_spawn}, {"sleep", l_sched_sleep}, {"in_coroutine", l_sched_in_coroutine},
    {"start", l_sched_start}, {"wake", l_sched_wake},   {"running", l_sched_running},
    {NULL, NULL},
  };
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  S.L = lua_tothread(L, -1);
  lua_pop(L, 1);
  /* Threads copy the main thread's extra space: NULL means "not a task". */
  *(sched_task **)lua_getextraspace(S.L) = NULL;
  luaL_newlib(L, fns);
  return 1;
}
