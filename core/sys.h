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
#endif
