/* sys.c — operating-system services for policy Lua (see sys.h). */
#include "sys.h"
#include "lcore.h"

#include <lauxlib.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int fail (lua_State *L, const char *what, const char *path) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(errno));
  return 2;
}

static int l_sys_now_ms (lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  return 1;
}

static int l_sys_monotonic_ms (lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

static int l_sys_iso_now (lua_State *L) {
  struct timespec ts;
  struct tm tm;
  char buf[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
  lua_pushstring(L, buf);
  return 1;
}

static int l_sys_uuid (lua_State *L) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) return luaL_error(L, "getrandom failed");
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  char s[37];
  snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  lua_pushstring(L, s);
  return 1;
}

static int l_sys_getenv (lua_State *L) {
  lua_pushstring(L, getenv(luaL_checkstring(L, 1)));
  return 1;
}

static int l_sys_getpid (lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_sys_kill (lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  lua_pushboolean(L, pid > 0 && kill(pid, sig) == 0);
  return 1;
}

static int l_sys_sleep_ms (lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
  return 0;
}

static int l_sys_mkdir_p (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return luaL_error(L, "path too long");
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return fail(L, "cannot create", buf);
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return fail(L, "cannot create", buf);
  lua_pushboolean(L, 1);
  return 1;
}

static int rm_rf (const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlink(path);
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  struct dirent *e;
  int rc = 0;
  char child[4096];
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) {
      errno = ENAMETOOLONG;
      rc = -1;
    } else {
      rc = rm_rf(child);
    }
  }
  closedir(d);
  return rc == 0 ? rmdir(path) : rc;
}

static int l_sys_rm_rf (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (rm_rf(path) != 0) return fail(L, "cannot remove", path);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_sys_listdir (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (d == NULL) return fail(L, "cannot list", path);
  lua_newtable(L);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

static int l_sys_stat (lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtime);
  lua_setfield(L, -2, "mtime");
  return 1;
}

static int write_pid(int fd);

/* An exclusive flock on path, held until the process exits; the file holds our
 * pid so a refusal can name the holder. */
static int l_sys_lock (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(L, "cannot open", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s is locked", path);
    lua_pushinteger(L, n > 0 ? atoi(buf) : 0);
    return 3;
  }
  if (write_pid(fd) != 0) {
    close(fd);
    return fail(L, "cannot write", path);
  }
  lua_pushinteger(L, fd);
  return 1;
}

static int l_sys_unlock (lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

static int write_pid (int fd) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
  return ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* Detach into the background: the parent gets the child's pid, the child
 * continues with 0, in a new session, stdio on logfile. The child inherits
 * the lock fd (if given) and writes its own pid there. */
static int l_sys_daemonize (lua_State *L) {
  const char *log = luaL_checkstring(L, 1);
  int lockfd = (int)luaL_optinteger(L, 2, -1);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return fail(L, "cannot fork for", log);
  if (pid > 0) {
    lua_pushinteger(L, pid);
    return 1;
  }
  setsid();
  if (lockfd >= 0 && write_pid(lockfd) != 0) _exit(1);
  int in = open("/dev/null", O_RDONLY);
  int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (in >= 0) dup2(in, 0);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (in > 2) close(in);
  if (out > 2) close(out);
  setvbuf(stdout, NULL, _IOLBF, 0);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_sys_exe (lua_State *L) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return 0;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static int l_sys_isatty (lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const char *sys_lib_fail (sys_lib *lib) {
  const char *e = dlerror();
  snprintf(lib->err, sizeof lib->err, "cannot load %s: %s", lib->soname, e ? e : "unknown error");
  return lib->err;
}

const char *sys_lib_load (sys_lib *lib) {
  if (lib->handle) return NULL;
  if (lib->err[0]) return lib->err;
  void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return sys_lib_fail(lib);
  for (size_t i = 0; lib->names[i]; i++) {
    void *p = dlsym(h, lib->names[i]);
    if (p == NULL) {
      sys_lib_fail(lib); /* before dlclose: it reads dlerror */
      dlclose(h);
      return lib->err;
    }
    lib->fns[i] = (sys_fn)p; /* POSIX: dlsym's void * holds a function's address */
  }
  lib->handle = h;
  return NULL;
}

int sys_luaopen (lua_State *L) {
  static const luaL_Reg fns[] = {
      {"now_ms", l_sys_now_ms},
      {"monotonic_ms", l_sys_monotonic_ms},
      {"iso_now", l_sys_iso_now},
      {"uuid", l_sys_uuid},
      {"getenv", l_sys_getenv},
      {"getpid", l_sys_getpid},
      {"kill", l_sys_kill},
      {"sleep_ms", l_sys_sleep_ms},
      {"mkdir_p", l_sys_mkdir_p},
      {"rm_rf", l_sys_rm_rf},
      {"listdir", l_sys_listdir},
      {"stat", l_sys_stat},
      {"lock", l_sys_lock},
      {"unlock", l_sys_unlock},
      {"daemonize", l_sys_daemonize},
      {"isatty", l_sys_isatty},
      {"exe", l_sys_exe},
      {NULL, NULL},
  };
  luaL_newlib(L, fns);
  return 1;
}
