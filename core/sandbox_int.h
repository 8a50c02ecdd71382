/* sandbox_int.h — internals shared by the sandbox files; not part of the sandbox.h contract.
 *
 * Layout of one sandbox:
 *   - a node-side full userdata (struct sandbox) owning the sandbox state S,
 *     the grants (cap.h), the per-call output buffer and the limits; its user
 *     value holds dispatch();
 *   - S, made by lua_newstate with a capped allocator; its extra space points
 *     back at the struct (threads copy it); its registry keeps the pristine
 *     library (never reachable from sandbox code) and the grant userdata;
 *   - per run(): fresh copies of the library tables, the grants, `event` and
 *     opts.globals are set in S's globals (user globals persist), the code is
 *     loaded in text mode and resumed as a new thread T of S.
 *
 * Files:
 *   sandbox.c         the core.sandbox object (new/run/close/stats) and the run loop
 *   sandbox_limits.c  capped allocator, output buffer, budget/deadline hook, kills
 *   sandbox_lib.c     the library S sees: stripped stdlib, print, help, dir, exit,
 *                     kill-aware pcall/xpcall/coroutine, charged C loops
 *   sandbox_copy.c    sandbox_copy (sandbox.h), shared with cap.c
 *   sandbox_pred.c    sandbox_predicate (sandbox.h): one long-lived state per thread
 *   sandbox_match.c   string.find/match/gmatch/gsub with a step budget
 */
#ifndef COGOS_SANDBOX_INT_H
#define COGOS_SANDBOX_INT_H

#include "cap.h"
#include "sandbox.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#define SANDBOX_ERR_MAX 4096 /* bytes of an error message kept */

/* Why a run is being killed; STOP_EXIT is exit(), which ends it without error. */
enum { STOP_NONE, STOP_BUDGET, STOP_DEADLINE, STOP_MEMORY, STOP_EXIT };

/* Small blocks (most of a fresh state) come from a few slabs with a free list
 * per size class: creating and closing a sandbox is mostly malloc/free, and
 * this is cheaper. The slabs are at most SANDBOX_POOL_SLABS * SANDBOX_POOL_SLAB
 * bytes beyond what the memory limit counts; past them blocks come from malloc. */
#define SANDBOX_POOL_GRAIN 16
#define SANDBOX_POOL_MAX   512 /* the largest block a slab serves */
#define SANDBOX_POOL_SLAB  (32 * 1024)
#define SANDBOX_POOL_SLABS 8

typedef struct sandbox_pool {
  void *free[SANDBOX_POOL_MAX / SANDBOX_POOL_GRAIN]; /* one list per size class */
  char *slab[SANDBOX_POOL_SLABS];
  int nslabs;
  char *bump, *bump_end; /* the unused rest of the newest slab */
} sandbox_pool;

typedef struct sandbox {
  lua_State *S;  /* NULL once closed */
  lua_State *co; /* the thread running the code, during run() */
  cap_set caps;
  size_t mem, mem_limit, mem_max; /* bytes Lua asked for, not counting pool slack */
  sandbox_pool pool;
  long long instr_used, instr_budget;
  size_t grown;      /* bytes allocated since the allocator last charged them (sandbox_limits.c) */
  uint64_t deadline; /* monotonic ns */
  int slice;
  int stop;        /* STOP_* */
  int forced;      /* the hook yielded, not the code */
  int running;     /* inside run(), possibly parked in sched */
  int node_yields; /* the node's coroutine can yield to sched during this run */
  int park_ok;     /* the threads resuming the running one can all yield (cap.h) */
  size_t out_max;
  char *out; /* per-call output: print() up to out_max, then notes and the error */
  size_t out_len, out_size;
  int out_cut;
  char err[SANDBOX_ERR_MAX + 4];
} sandbox;

/* The sandbox owning S or any of its threads (S's extra space, set by new()). */
static inline sandbox *sandbox_of (lua_State *L) { return *(sandbox **)lua_getextraspace(L); }

/* Registry keys of S (their addresses): name -> pristine builtin, name -> number of
 * fields of a pristine library table, name -> grant userdata. */
extern const char sandbox_lib_key, sandbox_libsize_key, sandbox_grants_key;

/* The error message of each kill; NULL for STOP_NONE and STOP_EXIT. */
extern const char *const sandbox_stop_msg[];

/* sandbox_limits.c */
uint64_t sandbox_now(void);                                           /* monotonic ns */
void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize); /* lua_Alloc; ud: sandbox */
void sandbox_pool_free(sandbox *sb);                                  /* after lua_close */
void sandbox_out_raw(sandbox *sb, const char *s, size_t len);         /* past the cap */
void sandbox_out_add(sandbox *sb, const char *s, size_t len);         /* up to out_max */
void sandbox_out_reset(sandbox *sb);
void sandbox_intern_stops(lua_State *S); /* may raise */
void sandbox_arm(sandbox *sb, lua_State *co);
void sandbox_stop(lua_State *L, sandbox *sb, int why);
int sandbox_poll(sandbox *sb);
int sandbox_raise_stop(lua_State *L, sandbox *sb);           /* raises */
void sandbox_recheck(lua_State *L, sandbox *sb, int status); /* may raise */
void sandbox_charge(lua_State *L, lua_Unsigned n);           /* may raise */

/* sandbox_match.c: puts the budgeted find/match/gmatch/gsub in the string table on top. */
void sandbox_match_install(lua_State *S); /* may raise */

/* sandbox_lib.c: opens the library of a new S (protected; 1: the sandbox as light userdata). */
int sandbox_open_p(lua_State *S); /* may raise */

#endif
