/* sandbox_limits.c — what caps a sandbox: memory, output, instruction budget, deadline, kills.
 *
 * A count hook charges the instruction budget and checks the deadline. A kill
 * sets sb->stop and re-arms the hook on every line and instruction (Redis);
 * pcall, xpcall, coroutine.resume/wrap/close and load (sandbox_lib.c) are our
 * own and re-raise once stopped, so nothing in the sandbox catches a kill.
 * Two consequences of raising from a hook are handled on purpose: a message
 * handler would run with hooks off, so xpcall calls its handler only after
 * unwinding; a thread killed by the hook keeps hooks off, so its to-be-closed
 * variables are never run after a kill. __gc metamethods run with hooks off
 * too, so setmetatable refuses them.
 * On the run thread (never in a user coroutine) the hook also yields; sb:run
 * then lets sched run other work (sched_yield_ready) or resumes at once.
 * Allocation failures are kills too ("memory limit exceeded").
 */
#include "sandbox_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SANDBOX_CO_COUNT 1000 /* hook period in user coroutines (they yield on their own) */

const char *const sandbox_stop_msg[] = {
    NULL, "instruction budget exhausted", "deadline exceeded", "memory limit exceeded", NULL,
};

static const char stop_key[4];    /* registry of S: the interned kill messages */
static const char exit_token = 0; /* the error value of exit() */

uint64_t sandbox_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* {====================================================== allocator */

static int pool_class (size_t n) { return (int)((n - 1) / SANDBOX_POOL_GRAIN); }

static int pool_owns (const sandbox_pool *pl, const void *p) {
  const char *c = p;
  for (int i = 0; i < pl->nslabs; i++)
    if (c >= pl->slab[i] && c < pl->slab[i] + SANDBOX_POOL_SLAB) return 1;
  return 0;
}

/* A block of n bytes (n <= SANDBOX_POOL_MAX): from the class's free list, the
 * newest slab, a new slab, or (all slabs taken) malloc. */
static void *pool_alloc (sandbox_pool *pl, size_t n) {
  int c = pool_class(n);
  size_t size = (size_t)(c + 1) * SANDBOX_POOL_GRAIN;
  void *p = pl->free[c];
  if (p) {
    pl->free[c] = *(void **)p;
    return p;
  }
  if ((size_t)(pl->bump_end - pl->bump) < size) {
    char *slab;
    if (pl->nslabs == SANDBOX_POOL_SLABS || (slab = malloc(SANDBOX_POOL_SLAB)) == NULL) return malloc(n);
    pl->slab[pl->nslabs++] = slab;
    pl->bump = slab;
    pl->bump_end = slab + SANDBOX_POOL_SLAB;
  }
  p = pl->bump;
  pl->bump += size;
  return p;
}

static void pool_release (sandbox_pool *pl, void *p, size_t osize) {
  if (osize <= SANDBOX_POOL_MAX && pool_owns(pl, p)) {
    int c = pool_class(osize);
    *(void **)p = pl->free[c];
    pl->free[c] = p;
  } else {
    free(p);
  }
}

static void *block_alloc (sandbox_pool *pl, size_t n) {
  return n <= SANDBOX_POOL_MAX ? pool_alloc(pl, n) : malloc(n);
}

/* Resizes a block: in place within its size class, by realloc between two
 * malloc blocks, else by moving it. */
static void *block_realloc (sandbox_pool *pl, void *ptr, size_t osize, size_t nsize) {
  int owned = osize <= SANDBOX_POOL_MAX && pool_owns(pl, ptr);
  void *p;
  if (owned && nsize <= SANDBOX_POOL_MAX && pool_class(nsize) == pool_class(osize)) return ptr;
  if (!owned && nsize > SANDBOX_POOL_MAX) return realloc(ptr, nsize);
  p = block_alloc(pl, nsize);
  if (p == NULL) return NULL;
  memcpy(p, ptr, osize < nsize ? osize : nsize);
  pool_release(pl, ptr, osize);
  return p;
}

void sandbox_pool_free (sandbox *sb) {
  sandbox_pool *pl = &sb->pool;
  for (int i = 0; i < pl->nslabs; i++) free(pl->slab[i]);
  memset(pl, 0, sizeof *pl);
}

/* One VM instruction can do work in C proportional to the memory it makes (a
 * concatenation, string.rep, upper, a table.concat): every ALLOC_SLICE bytes
 * the allocator charges them to the budget (one unit per ALLOC_UNIT bytes) and
 * checks the deadline, so neither waits for the next count hook. It cannot
 * raise here: a kill arms the run thread's hook to fire at its next instruction
 * (lua_sethook may be called at any time; a user coroutine's own hook sees
 * the kill within SANDBOX_CO_COUNT instructions). */
#define ALLOC_SLICE (1024 * 1024)
#define ALLOC_UNIT  64

static void alloc_slice (sandbox *sb) {
  long long units = (long long)(sb->grown / ALLOC_UNIT);
  sb->grown = 0;
  if (!sb->stop)
    sb->instr_used = units > sb->instr_budget - sb->instr_used ? sb->instr_budget : sb->instr_used + units;
  if (sandbox_poll(sb) && sb->co) sandbox_arm(sb, sb->co);
}

void *sandbox_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  sandbox *sb = ud;
  size_t old = ptr ? osize : 0; /* without a block, osize is only a type tag */
  void *p;
  if (nsize == 0) {
    if (ptr) pool_release(&sb->pool, ptr, osize);
    sb->mem -= old;
    return NULL;
  }
  if (nsize > old && (sb->mem > sb->mem_limit || nsize - old > sb->mem_limit - sb->mem)) return NULL;
  p = ptr ? block_realloc(&sb->pool, ptr, osize, nsize) : block_alloc(&sb->pool, nsize);
  if (p == NULL) {
    if (nsize > old) return NULL;
    p = ptr; /* Lua assumes a shrink cannot fail: keep the bigger block (freed by its size
              * class, or by free(), either way safely) */
  }
  sb->mem = sb->mem - old + nsize;
  if (nsize > old && (sb->grown += nsize - old) >= ALLOC_SLICE) alloc_slice(sb);
  return p;
}

/* }====================================================== */

/* {====================================================== output */

/* Appends beyond the cap (notes, the error); drops text when malloc fails. */
void sandbox_out_raw (sandbox *sb, const char *s, size_t len) {
  if (len > sb->out_size - sb->out_len) {
    size_t size = sb->out_size ? sb->out_size : 256;
    char *p;
    while (size - sb->out_len < len) size *= 2;
    p = realloc(sb->out, size);
    if (p == NULL) return;
    sb->out = p;
    sb->out_size = size;
  }
  memcpy(sb->out + sb->out_len, s, len);
  sb->out_len += len;
}

void sandbox_out_add (sandbox *sb, const char *s, size_t len) {
  static const char note[] = "\n[output truncated]\n";
  if (sb->out_cut) return;
  if (len > sb->out_max - sb->out_len) {
    len = sb->out_max - sb->out_len;
    sb->out_cut = 1;
  }
  sandbox_out_raw(sb, s, len);
  if (sb->out_cut) sandbox_out_raw(sb, note, sizeof note - 1);
}

void sandbox_out_reset (sandbox *sb) {
  sb->out_len = 0;
  sb->out_cut = 0;
  sb->err[0] = '\0';
  if (sb->out_size > 4 * sb->out_max + 65536) { /* don't keep a big buffer around */
    free(sb->out);
    sb->out = NULL;
    sb->out_size = 0;
  }
}

/* }====================================================== */

/* {====================================================== limits */

static void sandbox_hook(lua_State *L, lua_Debug *ar);

/* Puts the hook on co as the current mode wants it: every instruction once
 * stopped; else every slice on the run thread (its forced yields) and more
 * often in user coroutines, whose short lives would escape a long count. Left
 * alone when already right, so a count survives the coroutine's yields. */
void sandbox_arm (sandbox *sb, lua_State *co) {
  int mask = LUA_MASKCOUNT, count;
  if (sb->stop) {
    mask |= LUA_MASKLINE;
    count = 1;
  } else if (co == sb->co || co == sb->S || sb->slice < SANDBOX_CO_COUNT) {
    count = sb->slice;
  } else {
    count = SANDBOX_CO_COUNT;
  }
  if (lua_gethook(co) != sandbox_hook || lua_gethookmask(co) != mask || lua_gethookcount(co) != count)
    lua_sethook(co, sandbox_hook, mask, count);
}

/* Notes a kill and arms the current thread and the run thread. */
void sandbox_stop (lua_State *L, sandbox *sb, int why) {
  if (!sb->stop) sb->stop = why;
  sandbox_arm(sb, L);
  if (sb->co && sb->co != L) sandbox_arm(sb, sb->co);
}

int sandbox_poll (sandbox *sb) {
  if (!sb->stop) {
    if (sb->instr_used >= sb->instr_budget)
      sb->stop = STOP_BUDGET;
    else if (sandbox_now() >= sb->deadline)
      sb->stop = STOP_DEADLINE;
  }
  return sb->stop;
}

/* Interns the kill messages in S's registry, for sandbox_raise_stop. */
void sandbox_intern_stops (lua_State *S) { /* may raise */
  for (int k = STOP_BUDGET; k <= STOP_MEMORY; k++) {
    lua_pushstring(S, sandbox_stop_msg[k]);
    lua_rawsetp(S, LUA_REGISTRYINDEX, &stop_key[k]);
  }
}

/* Raises the kill's own value (interned: raising must not allocate). */
int sandbox_raise_stop (lua_State *L, sandbox *sb) { /* may raise */
  if (sb->stop == STOP_EXIT)
    lua_pushlightuserdata(L, (void *)&exit_token);
  else
    lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_key[sb->stop]);
  return lua_error(L);
}

/* After a protected call or resume ended with status: kills stay kills. */
void sandbox_recheck (lua_State *L, sandbox *sb, int status) { /* may raise */
  if (status == LUA_ERRMEM) sandbox_stop(L, sb, STOP_MEMORY);
  if (sb->stop) {
    sandbox_stop(L, sb, sb->stop);
    sandbox_raise_stop(L, sb);
  }
}

static void sandbox_hook (lua_State *L, lua_Debug *ar) { /* may raise */
  sandbox *sb = sandbox_of(L);
  if (!sb->stop && ar->event == LUA_HOOKCOUNT) sb->instr_used += lua_gethookcount(L);
  sandbox_poll(sb);
  sandbox_recheck(L, sb, LUA_OK);
  /* Only the run thread: in a user coroutine the yield would look like the
   * code's own coroutine.yield. */
  if (L == sb->co && lua_isyieldable(L)) {
    sb->forced = 1;
    lua_yield(L, 0);
  }
}

/* Charges n units of C work chosen by the code, before it runs. */
void sandbox_charge (lua_State *L, lua_Unsigned n) { /* may raise */
  sandbox *sb = sandbox_of(L);
  lua_Unsigned room = (lua_Unsigned)(sb->instr_budget - sb->instr_used);
  if (sb->instr_used >= sb->instr_budget || n > room)
    sb->instr_used = sb->instr_budget;
  else
    sb->instr_used += (long long)n;
  sandbox_poll(sb);
  sandbox_recheck(L, sb, LUA_OK);
}

/* }====================================================== */
