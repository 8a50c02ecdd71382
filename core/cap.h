/* cap.h — grants: scopes kept in C, the userdata a sandbox sees, calls into the node.
 *
 * A cap_set holds the grants of one sandbox, parsed once from the node-side
 * description given to core.sandbox.new (see sandbox.h). Scopes live only in
 * these C structs: nothing reachable from sandbox Lua can read or change them.
 *
 * In the sandbox state each grant is a full userdata with a private metatable
 * (__metatable = "locked"); indexing a declared method returns a C closure,
 * anything else raises "files has no method 'x'". Calling a method:
 *   1. drops a leading self argument (grant:method(...) == grant.method(...));
 *   2. checks the op against scope.ops and argument number `target` against
 *      scope.prefix (string prefix) and scope.names (globs with * and ?);
 *      a violation raises "permission denied: <grant>.<method>: ...";
 *      a target that is not a string is a violation when the grant has a
 *      prefix or names scope (no guessing of defaults);
 *   3. in a protected call on the node thread: deep-copies the arguments
 *      (sandbox_copy), calls dispatch(grant_name, method_name, args...);
 *   4. copies every result back; a dispatch error becomes an error raised in
 *      the sandbox carrying the message only (nothing of the node's stack).
 * Parking: when can_park says the calling thread can yield all the way out to
 * sb:run (and the node's coroutine can yield to sched), step 3 only copies the
 * arguments onto the node thread and the calling thread yields; sb:run makes
 * the call with lua_pcallk, so dispatch may itself yield (HTTP, timers), and
 * resumes the sandbox, where step 4 happens. Otherwise (say, inside a
 * string.gsub callback) the call is made in place and dispatch cannot yield.
 * Empty lists are strict: ops = {} allows no op, names = {} no target.
 * Other scope keys are left to the node side (dispatch knows the grant).
 */
#ifndef COGOS_CAP_H
#define COGOS_CAP_H

#include <lua.h>
#include <stddef.h>

typedef struct cap_method {
  char *name;
  char *op;  /* defaults to the method name */
  char *doc; /* may be NULL */
  int target; /* argument number checked against the scope; 0 = none */
} cap_method;

typedef struct cap_grant {
  char *name, *type, *description; /* type/description may be NULL */
  cap_method *methods;             /* sorted by name */
  int nmethods;
  char **ops; /* nops < 0: any op */
  int nops;
  char *prefix; /* NULL: any target */
  size_t prefix_len;
  char **names; /* nnames < 0: any target */
  int nnames;
} cap_grant;

typedef struct cap_set {
  cap_grant *grants;
  int n;
  /* The bridge, set by sb:run() for its duration. */
  lua_State *node; /* the node thread running sb:run() */
  int dispatch;    /* index of dispatch() in that thread's current C frame */
  size_t max_bytes; /* per value copied across */
  /* Parking, driven by sandbox.c. */
  int (*can_park)(lua_State *L); /* L: the calling sandbox thread */
  int parked;                    /* CAP_PARK_* */
  int park_base;                 /* node stack top below the parked call */
  int park_status;               /* how the call ended, once CAP_PARK_DONE */
} cap_set;

enum {
  CAP_PARK_NONE,
  CAP_PARK_CALL, /* on the node's stack: message handler, dispatch, its arguments */
  CAP_PARK_DONE, /* on the node's stack: message handler, then results or the error */
};

/* Frees everything parsed into cs and zeroes it; safe on a partial parse. */
void cap_set_free(cap_set *cs);

/* Parses the `grants` list at idx of the node state L into an empty cs
 * (nil = no grants). Misuse raises; the partial result stays in cs, so the
 * caller must own cs through something with a __gc. */
void cap_set_parse(lua_State *L, int idx, cap_set *cs); /* may raise */

/* 1 when the whole of s[0..len) matches pattern (* any run, ? any byte). */
int cap_glob_match(const char *pattern, const char *s, size_t len);

/* Checks calling m of g with the arguments starting at `first` on L.
 * Returns 1, or 0 with the reason (without the "permission denied" prefix). */
int cap_check(const cap_grant *g, const cap_method *m, lua_State *L, int first, char *why,
              size_t whylen);

/* For sb:run, after a thread yielded with cs->parked == CAP_PARK_CALL: the
 * number of arguments to pass when it calls the parked dispatch with
 *   lua_pcallk(node, cap_parked_nargs(cs), LUA_MULTRET, cs->park_base + 1, ctx, k)
 * and, once that call ended (also in k), cap_parked_end(cs, status) before
 * resuming the sandbox. */
int cap_parked_nargs(const cap_set *cs);
void cap_parked_end(cap_set *cs, int status);

/* Pushes a new userdata for grant i of cs onto the sandbox state L. cs must
 * outlive L. */
void cap_push_grant(lua_State *L, cap_set *cs, int i); /* may raise */

/* The grant behind the value at idx of a sandbox state, or NULL. */
const cap_grant *cap_to_grant(lua_State *L, int idx);

/* help(grant): "<name> (<type>): <description>" then one line per method. */
void cap_push_help(lua_State *L, const cap_grant *g); /* may raise */

/* dir(grant): sorted array of method names. */
void cap_push_dir(lua_State *L, const cap_grant *g); /* may raise */

#endif
