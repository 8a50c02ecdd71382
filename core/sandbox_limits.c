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

static const char stop_key[4];   /* registry of S: the interned kill messages */
static const char exit_token = 0; /* the error value of exit() */

uint64_t sandbox_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* {====================================================== allocator */

void *sandbox_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  sandbox *sb = ud;
  size_t old = ptr ? osize : 0; /* without a block, osize is only a type tag */
  void *p;
  if (nsize == 0) {
    free(ptr);
    sb->mem -= old;
    return NULL;
  }
  if (nsize > old && (sb->mem > sb->mem_limit || nsize - old > sb->mem_limit - sb->mem))
    return NULL;
  p = realloc(ptr, nsize);
  if (p == NULL) {
    if (nsize > old) return NULL;
    p = ptr; /* Lua assumes a shrink cannot fail: keep the bigger block */
  }
  sb->mem = sb->mem - old + nsize;
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

static void sandbox_hook (lua_State *L, lua_Debug *ar);

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
    if (sb->instr_used >= sb->instr_budget) sb->stop = STOP_BUDGET;
    else if (sandbox_now() >= sb->deadline) sb->stop = STOP_DEADLINE;
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
  if (sb->stop == STOP_EXIT) lua_pushlightuserdata(L, (void *)&exit_token);
  else lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_key[sb->stop]);
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
  if (sb->instr_used >= sb->instr_budget || n > room) sb->instr_used = sb->instr_budget;
  else sb->instr_used += (long long)n;
  sandbox_poll(sb);
  sandbox_recheck(L, sb, LUA_OK);
}

/* }====================================================== */
