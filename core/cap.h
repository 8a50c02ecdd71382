/* cap.h — grants: scopes kept in C, the userdata a sandbox sees, calls into the node.
 *
 * A cap_set holds the grants of one sandbox, parsed once from the node-side
 * description given to core.sandbox.new (see sandbox.h), plus the grants made
 * during its runs (narrowed copies and sub-grants, below). Scopes live only in
 * these C structs: nothing reachable from sandbox Lua can read or change them.
 *
 * Scope algebra (cap_scope.c). One table of typed keys drives parsing,
 * checking, narrowing and covering:
 *   ops, methods, process_ids  set of strings: a call's op (ops) must be listed;
 *                              narrower = subset (methods compare case-blind)
 *   prefix       string: the target must start with it; narrower = extends it.
 *                Targets and prefixes with "." or ".." path segments are refused,
 *                so "notes/../secret" cannot escape "notes/".
 *   names, keys  glob patterns (* any run, ? one byte): the target must match
 *                one; narrower = every pattern covered by a wider one (checked
 *                conservatively: pattern against pattern)
 *   domains, hosts  host names: the target is a URL (or a bare host) whose host
 *                equals one or is a subdomain; narrower = same rule per entry
 *   key          string fixed once set (a single-file handle); narrower = equal
 *   read_only    boolean, sticky: once true stays true
 *   max_bytes, query_budget  integers: narrower = not larger
 * A key absent from a scope means "unrestricted on that key"; an empty list
 * allows nothing. Keys outside this table are kept for the node side only
 * and make a scope impossible to narrow ("has no narrowing rule").
 * narrow(parent, child): the child's keys where it restates them (each must be
 * equal or narrower, else an error naming the key), the parent's elsewhere.
 * covers(parent, child): narrow succeeds and the child restates every key the
 * parent has, i.e. narrow(parent, child) == child (a scoped parent never
 * covers an unscoped child). Lua (node side):
 *   core.sandbox.narrow(parent, child) -> scope | nil, err
 *   core.sandbox.covers(parent, child) -> true | false, why
 *   core.sandbox.allows(scope, key, value) -> true | false, why   (one target,
 *     checked the way a call is)
 *   core.sandbox.GRANT  the metatable of grant descriptors (below)
 * A malformed scope given to them raises.
 *
 * In the sandbox state each grant is a full userdata with a private metatable
 * (__metatable = "locked"); indexing a declared method returns a C closure,
 * anything else raises "files has no method 'x'". Every grant also has
 * `scope`: grant:scope{prefix = "notes/a/"} returns a new grant of the same
 * type and methods whose scope is narrow(grant's scope, {...}); a wider
 * request raises "permission denied: files.scope: ..."; the original is
 * untouched. Calling a method:
 *   1. drops a leading self argument (grant:method(...) == grant.method(...));
 *   2. checks the op against scope.ops and argument number `target` (or its
 *      field `field` when the method spec names one) against every target key
 *      of the scope (prefix, names, keys, domains, hosts); a violation raises
 *      "permission denied: <grant>.<method>: ..."; a target that is not a
 *      string is a violation when the grant has such a key;
 *   3. in a protected call on the node thread: deep-copies the arguments
 *      (sandbox_copy; a grant userdata anywhere in them, up to a depth of 8,
 *      arrives as a grant descriptor, below; such an argument is charged to
 *      one byte budget, max_bytes, however often it shares subtables), calls
 *      dispatch(grant, method_name, args...) where grant is the grant's name
 *      (a string) for the grants given to core.sandbox.new and a descriptor
 *      for grants made later;
 *   4. copies every result back; a result that is a grant descriptor with
 *      `methods` becomes a new grant userdata (a sub-grant: say fs_dir.get
 *      returning a handle of type file limited to one key). Only results at
 *      the top level are turned into grants (a nested one would arrive as plain
 *      data: node code must not nest them). A dispatch error becomes an error
 *      raised in the sandbox carrying the message only.
 * Grant descriptor: a node-side table {name=, type=, scope=, description=,
 * methods=} whose metatable is core.sandbox.GRANT (unforgeable from the
 * sandbox: copies never carry metatables). Node code makes them for
 * sub-grants (methods as in sandbox.h); the sandbox's grants arrive as them
 * when passed as arguments (say to procs.spawn), so delegation sees the real
 * type and scope.
 * Parking: when can_park says the calling thread can yield all the way out to
 * sb:run (and the node's coroutine can yield to sched), step 3 only copies the
 * arguments onto the node thread and the calling thread yields; sb:run makes
 * the call with lua_pcallk, so dispatch may itself yield (HTTP, timers), and
 * resumes the sandbox, where step 4 happens. Otherwise (say, inside a
 * string.gsub callback) the call is made in place and dispatch cannot yield.
 */
#ifndef COGOS_CAP_H
#define COGOS_CAP_H

#include <lua.h>
#include <stddef.h>

#define CAP_GRANT_MT    "cogos.grant" /* node registry: metatable of grant descriptors */
#define CAP_MAX_DERIVED 16384         /* grants one sandbox may make during its runs */

/* The scope keys, in the order of the table in cap_scope.c. */
enum {
  CAP_S_OPS,
  CAP_S_METHODS,
  CAP_S_PROCESS_IDS,
  CAP_S_PREFIX,
  CAP_S_NAMES,
  CAP_S_KEYS,
  CAP_S_DOMAINS,
  CAP_S_HOSTS,
  CAP_S_KEY,
  CAP_S_READ_ONLY,
  CAP_S_MAX_BYTES,
  CAP_S_QUERY_BUDGET,
  CAP_S_N
};

typedef struct cap_sval {
  int set;     /* the key is present */
  char **list; /* sets, patterns, hosts */
  int n;
  char *str; /* prefix, key */
  size_t len;
  lua_Integer num; /* read_only (0/1), max_bytes, query_budget */
} cap_sval;

typedef struct cap_scope {
  cap_sval v[CAP_S_N];
  char *unknown; /* the first key without a rule, or NULL */
} cap_scope;

typedef struct cap_method {
  char *name;
  char *op;    /* defaults to the method name */
  char *doc;   /* may be NULL */
  int target;  /* argument number checked against the scope; 0 = none */
  char *field; /* when set, the target is that field of the argument (a table) */
} cap_method;

typedef struct cap_grant {
  char *name, *type, *description; /* type/description may be NULL */
  cap_method *methods;             /* sorted by name */
  int nmethods;
  cap_scope scope;
  int derived;  /* made during a run: dispatch gets a descriptor, not the name */
  int borrowed; /* name, type, description and methods are another grant's of the set */
} cap_grant;

typedef struct cap_set {
  cap_grant *grants; /* those given to core.sandbox.new */
  int n;
  cap_grant **derived; /* made during runs, each allocated apart (pointers stay valid) */
  int nderived, derived_size;
  /* The bridge, set by sb:run() for its duration. */
  lua_State *node;  /* the node thread running sb:run() */
  int dispatch;     /* index of dispatch() in that thread's current C frame */
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

/* {====== cap_scope.c: the scope algebra */

void cap_scope_free(cap_scope *s);

/* Parses the scope table at idx of L (nil = unscoped) into an empty s.
 * Returns 1, or 0 with the reason in err; s may then hold a partial parse. */
int cap_scope_parse(lua_State *L, int idx, cap_scope *s, char *err, size_t errlen);

/* Pushes s as a Lua table (unknown keys are not kept: see above). */
void cap_scope_push(lua_State *L, const cap_scope *s); /* may raise */

/* out = narrow(parent, child), see above. Returns 1, or 0 with the reason. */
int cap_scope_narrow(const cap_scope *parent, const cap_scope *child, cap_scope *out, char *err,
                     size_t errlen);

/* 1 when parent covers child (see above), else 0 with the reason. */
int cap_scope_covers(const cap_scope *parent, const cap_scope *child, char *why, size_t whylen);

/* Checks one target string against key k of s. Returns 1, or 0 with the reason. */
int cap_scope_allows(const cap_scope *s, int k, const char *v, size_t len, char *why, size_t whylen);

/* 1 when the whole of s[0..len) matches pattern (* any run, ? any byte). */
int cap_glob_match(const char *pattern, const char *s, size_t len);

/* Three empty scopes kept by L's state for parsing arguments, so a call
 * allocates nothing and a raise leaks nothing: what it leaves in them is freed
 * on the next use, or by the state's close. Not re-entrant: no Lua code may run
 * while they are in use. Pushes nothing. */
cap_scope *cap_scope_scratch(lua_State *L); /* may raise */

/* Adds narrow, covers, allows and GRANT to the table on top of L. */
void cap_luaopen(lua_State *L); /* may raise */

/* }====== */

/* Pushes the metatable of grant descriptors of the node state L, made once. */
void cap_push_grant_mt(lua_State *L); /* may raise */

/* Frees everything parsed into cs and zeroes it; safe on a partial parse. */
void cap_set_free(cap_set *cs);

/* Parses the `grants` list at idx of the node state L into an empty cs
 * (nil = no grants). Misuse raises; the partial result stays in cs, so the
 * caller must own cs through something with a __gc. */
void cap_set_parse(lua_State *L, int idx, cap_set *cs); /* may raise */

/* Checks calling m of g with the arguments starting at `first` on L.
 * Returns 1, or 0 with the reason (without the "permission denied" prefix). */
int cap_check(const cap_grant *g, const cap_method *m, lua_State *L, int first, char *why, size_t whylen);

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

/* dir(grant): sorted array of method names (with scope). */
void cap_push_dir(lua_State *L, const cap_grant *g); /* may raise */

#endif
