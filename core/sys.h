/* sys.h — operating-system services for policy Lua (core.sys):
 *   now_ms() -> integer wall clock ms        monotonic_ms() -> float
 *   iso_now() -> "2026-11-21T06:52:02.123Z"  uuid() -> v4 string
 *   getenv(name)  getpid()  kill(pid, sig) -> bool  sleep_ms(ms)
 *   mkdir_p(path) -> true | nil, err        rm_rf(path) -> true | nil, err
 *   listdir(path) -> {names} | nil, err     stat(path) -> {type="file"|"dir", size=, mtime=} | nil
 *   lock(path) -> fd | nil, err, holder_pid (exclusive flock held until unlock or exit;
 *                  the file holds the holder's pid)          unlock(fd)
 *   daemonize(logfile [, lockfd]) -> pid in the parent (child continues with 0 and
 *                  writes its pid into lockfd)
 *   isatty(fd)   exe() -> path of the running binary
 */
#ifndef COGOS_SYS_H
#define COGOS_SYS_H

/* Optional shared libraries (libcurl, libedit) are not linked: each is opened
 * with dlopen on first use, as systemd does, so a process that never needs one
 * never maps it nor its dependency tree (libcurl's is ~5 MiB resident). The
 * user lists the functions it calls and casts each resolved sys_fn back to
 * its prototype. */
typedef void (*sys_fn)(void);

typedef struct sys_lib {
  const char *soname;       /* "libcurl.so.4" */
  const char *const *names; /* the functions to resolve, NULL-terminated */
  sys_fn *fns;              /* filled in the order of names */
  void *handle;             /* set once loaded */
  char err[512];            /* set once failed: "cannot load <soname>: <dlerror>" */
} sys_lib;

/* Loads lib once (RTLD_NOW | RTLD_LOCAL). Returns NULL when it is loaded, else
 * lib->err; a failure is final, later calls return the same text. */
const char *sys_lib_load(sys_lib *lib);

#endif
