/* term.c — the interactive terminal for `cogos shell` (see term.h).
 *
 * libedit is not linked: only the line editor and its history need it, so the
 * first of those opens it (sys_lib) and calls go through term_edit. Without it
 * readline, history_add and history_clear raise, and history_load/save return
 * nil, "term: cannot load libedit.so.2: <dlerror>".
 */
#include "term.h"
#include "host.h"
#include "lcore.h"
#include "loop.h"
#include "sys.h"

#include <histedit.h>
#include <lauxlib.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static struct {
  EditLine *el;
  History *hist;
  char *prompt;
  lua_State *L;      /* the caller of readline, for the completer */
  int completer_ref; /* LUA_NOREF without one */
  int key_intr;      /* Ctrl-C pressed during readline */
  int last_tab;      /* the previous key was an unsuccessful Tab: list the candidates */
  int interrupts;    /* interrupts(true) is in effect */
  struct sigaction old_int;
  int loop_intr; /* Ctrl-C stopped run_loop */
} T = {.completer_ref = LUA_NOREF};

static volatile sig_atomic_t term_sigint;

/* {============ libedit, opened on first use */

/* Every libedit function used here: X(return type, name, parameters). */
#define TERM_EDIT_FNS(X)                                         \
  X(History *, history_init, (void))                             \
  X(int, history, (History *, HistEvent *, int, ...))            \
  X(EditLine *, el_init, (const char *, FILE *, FILE *, FILE *)) \
  X(int, el_set, (EditLine *, int, ...))                         \
  X(const char *, el_gets, (EditLine *, int *))                  \
  X(const LineInfo *, el_line, (EditLine *))                     \
  X(int, el_insertstr, (EditLine *, const char *))

/* A mistyped entry would compile silently and break at run time. */
#define TERM_EDIT_CHECK(ret, name, params) \
  _Static_assert(_Generic(&name, ret(*) params : 1, default : 0), #name " prototype");
TERM_EDIT_FNS(TERM_EDIT_CHECK)

#define TERM_EDIT_FIELD(ret, name, params) ret(*name) params;
static struct { TERM_EDIT_FNS(TERM_EDIT_FIELD) } E;

#define TERM_EDIT_NAME(ret, name, params) #name,
static const char *const term_edit_names[] = {TERM_EDIT_FNS(TERM_EDIT_NAME) NULL};
static sys_fn term_edit_fns[sizeof term_edit_names / sizeof term_edit_names[0]];
static sys_lib term_edit_lib = {.soname = "libedit.so.2", .names = term_edit_names, .fns = term_edit_fns};

/* Returns NULL once E is usable, else the error text. */
static const char *term_edit_load (void) {
  if (E.el_init) return NULL;
  const char *err = sys_lib_load(&term_edit_lib);
  if (err) return err;
  size_t i = 0;
#define TERM_EDIT_SET(ret, name, params) E.name = (ret(*) params)term_edit_fns[i++];
  TERM_EDIT_FNS(TERM_EDIT_SET)
  return NULL;
}

/* }============ */

static void term_on_sigint (int sig) {
  (void)sig;
  term_sigint = 1;
}

static void term_catch (void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = term_on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: a blocking wait returns EINTR */
  sigaction(SIGINT, &sa, NULL);
}

/* {============ line editing */

static char *term_prompt (EditLine *el) {
  (void)el;
  return T.prompt ? T.prompt : (char *)"";
}

/* Ctrl-C while editing: drop the line (readline returns false). */
static unsigned char term_key_intr (EditLine *el, int ch) {
  (void)el;
  (void)ch;
  T.key_intr = 1;
  fputs("^C", stdout);
  return CC_NEWLINE;
}

/* Prints candidates in columns under the line being edited. */
static void term_list (lua_State *L, int list, int n) {
  size_t widest = 0;
  for (int i = 1; i <= n; i++) {
    size_t len;
    lua_rawgeti(L, list, i);
    lua_tolstring(L, -1, &len);
    if (len > widest) widest = len;
    lua_pop(L, 1);
  }
  struct winsize ws;
  size_t cols = 80;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
  size_t per = cols / (widest + 2);
  if (per == 0) per = 1;
  fputc('\n', stdout);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    const char *s = lua_tostring(L, -1);
    if ((size_t)i % per == 0 || i == n)
      fprintf(stdout, "%s\n", s);
    else
      fprintf(stdout, "%-*s", (int)(widest + 2), s);
    lua_pop(L, 1);
  }
  fflush(stdout);
}

/* Keeps the string candidates of the table at idx that extend `word`: a new
 * array on top of the stack; returns their number. */
static int term_filter (lua_State *L, int idx, const char *word, size_t wlen) {
  int n = 0;
  lua_Unsigned len = lua_rawlen(L, idx);
  lua_createtable(L, (int)(len < 256 ? len : 256), 0);
  for (lua_Unsigned i = 1; i <= len; i++) {
    size_t clen;
    if (lua_rawgeti(L, idx, (lua_Integer)i) == LUA_TSTRING) {
      const char *c = lua_tolstring(L, -1, &clen);
      if (clen >= wlen && memcmp(c, word, wlen) == 0) {
        lua_rawseti(L, -2, ++n);
        continue;
      }
    }
    lua_pop(L, 1);
  }
  return n;
}

/* Tab: asks the Lua completer for candidates of the word before the cursor. */
static unsigned char term_key_complete (EditLine *el, int ch) {
  (void)ch;
  lua_State *L = T.L;
  const LineInfo *li = E.el_line(el);
  if (L == NULL || T.completer_ref == LUA_NOREF) return CC_REFRESH_BEEP;
  const char *w = li->cursor;
  while (w > li->buffer && w[-1] != ' ' && w[-1] != '\t') w--;
  size_t wlen = (size_t)(li->cursor - w);
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) return CC_REFRESH_BEEP;
  lua_pushlstring(L, w, wlen); /* top + 1: the word, kept below the results */
  lua_rawgeti(L, LUA_REGISTRYINDEX, T.completer_ref);
  lua_pushvalue(L, top + 1);
  lua_pushlstring(L, li->buffer, (size_t)(li->cursor - li->buffer));
  if (host_pcall(L, 2, 1) != LUA_OK || !lua_istable(L, -1)) {
    lua_settop(L, top);
    return CC_REFRESH_BEEP;
  }
  const char *wd = lua_tostring(L, top + 1);
  int n = term_filter(L, top + 2, wd, wlen);
  int list = lua_gettop(L);
  unsigned char rc = CC_REFRESH_BEEP;
  if (n > 0) {
    /* the longest common prefix of the candidates */
    size_t lcp;
    const char *first;
    lua_rawgeti(L, list, 1);
    first = lua_tolstring(L, -1, &lcp);
    for (int i = 2; i <= n; i++) {
      size_t clen, k = 0;
      lua_rawgeti(L, list, i);
      const char *c = lua_tolstring(L, -1, &clen);
      while (k < lcp && k < clen && c[k] == first[k]) k++;
      lcp = k;
      lua_pop(L, 1);
    }
    if (lcp > wlen || n == 1) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      luaL_addlstring(&b, first + wlen, lcp - wlen);
      if (n == 1 && (lcp == 0 || first[lcp - 1] != '/')) luaL_addchar(&b, ' ');
      luaL_pushresult(&b);
      E.el_insertstr(el, lua_tostring(L, -1));
      T.last_tab = 0;
      rc = CC_REFRESH;
    } else if (T.last_tab) {
      term_list(L, list, n);
      T.last_tab = 0;
      rc = CC_REDISPLAY;
    } else {
      T.last_tab = 1;
      rc = CC_REFRESH_BEEP;
    }
  }
  lua_settop(L, top);
  return rc;
}

/* Returns NULL, or why libedit cannot be used. */
static const char *term_init (void) {
  HistEvent ev;
  if (T.el) return NULL;
  const char *err = term_edit_load();
  if (err) return err;
  T.hist = E.history_init();
  E.history(T.hist, &ev, H_SETSIZE, 1000);
  T.el = E.el_init("cogos", stdin, stdout, stderr);
  E.el_set(T.el, EL_EDITOR, "emacs");
  E.el_set(T.el, EL_SIGNAL, 1);
  E.el_set(T.el, EL_PROMPT, term_prompt);
  E.el_set(T.el, EL_HIST, E.history, T.hist);
  /* Ctrl-C arrives as a key while editing, so it clears the line, not the shell. */
  E.el_set(T.el, EL_SETTY, "-d", "-isig", NULL);
  E.el_set(T.el, EL_ADDFN, "cogos-intr", "clear the line", term_key_intr);
  E.el_set(T.el, EL_BIND, "^C", "cogos-intr", NULL);
  E.el_set(T.el, EL_ADDFN, "cogos-complete", "complete the word", term_key_complete);
  E.el_set(T.el, EL_BIND, "^I", "cogos-complete", NULL);
  E.el_set(T.el, EL_BIND, "^R", "em-inc-search-prev", NULL);
  return NULL;
}

static int l_term_readline (lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  const char *err = term_init();
  if (err) return luaL_error(L, "term: %s", err); /* nil would read as end of input */
  char *copy = strdup(prompt);
  if (copy == NULL) return luaL_error(L, "out of memory");
  free(T.prompt);
  T.prompt = copy;
  T.L = L;
  T.key_intr = 0;
  T.last_tab = 0;
  int count = 0;
  const char *line = E.el_gets(T.el, &count);
  T.L = NULL;
  if (T.key_intr) {
    T.key_intr = 0;
    fputc('\n', stdout);
    fflush(stdout);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (line == NULL || count <= 0) {
    lua_pushnil(L);
    return 1;
  }
  size_t len = strlen(line);
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
  lua_pushlstring(L, line, len);
  return 1;
}

static int l_term_set_completer (lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, T.completer_ref);
  T.completer_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    T.completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* }============ */

/* {============ history */

static int l_term_history_add (lua_State *L) {
  HistEvent ev;
  const char *line = luaL_checkstring(L, 1);
  const char *err = term_init();
  if (err) return luaL_error(L, "term: %s", err);
  if (line[0] != '\0') E.history(T.hist, &ev, H_ENTER, line);
  return 0;
}

static int l_term_history_clear (lua_State *L) {
  HistEvent ev;
  const char *err = term_init();
  if (err) return luaL_error(L, "term: %s", err);
  E.history(T.hist, &ev, H_CLEAR);
  return 0;
}

static int term_history_file (lua_State *L, int op, const char *what) {
  HistEvent ev;
  const char *path = luaL_checkstring(L, 1);
  const char *err = term_init();
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L, "term: %s", err);
    return 2;
  }
  errno = 0;
  if (E.history(T.hist, &ev, op, path) < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot %s history %s: %s", what, path, errno ? strerror(errno) : "bad file");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_term_history_load (lua_State *L) { return term_history_file(L, H_LOAD, "load"); }
static int l_term_history_save (lua_State *L) { return term_history_file(L, H_SAVE, "save"); }

/* }============ */

/* {============ terminal facts and interrupts */

static int l_term_isatty (lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 0)));
  return 1;
}

static int l_term_width (lua_State *L) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return 0;
  lua_pushinteger(L, ws.ws_col);
  return 1;
}

static int l_term_interrupts (lua_State *L) {
  int on = lua_toboolean(L, 1);
  if (on && !T.interrupts) {
    sigaction(SIGINT, NULL, &T.old_int);
    term_catch();
  } else if (!on && T.interrupts) {
    sigaction(SIGINT, &T.old_int, NULL);
  }
  T.interrupts = on;
  term_sigint = 0;
  return 0;
}

static int l_term_interrupted (lua_State *L) {
  lua_pushboolean(L, term_sigint);
  term_sigint = 0;
  return 1;
}

static int l_term_wait (lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  int watch = lua_toboolean(L, 2);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  /* SIGINT stays blocked between the flag test and ppoll, which unblocks it atomically. */
  sigprocmask(SIG_BLOCK, &block, &old);
  const char *what = "timeout";
  if (term_sigint) {
    what = "interrupt";
  } else {
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    int r = ppoll(&p, watch ? 1 : 0, ms < 0 ? NULL : &ts, &old);
    if (r < 0 && errno == EINTR && term_sigint)
      what = "interrupt";
    else if (r > 0)
      what = "input";
  }
  term_sigint = 0;
  sigprocmask(SIG_SETMASK, &old, NULL);
  lua_pushstring(L, what);
  return 1;
}

static void term_free_handle (uv_handle_t *h) { free(h); }

static void term_loop_sigint (uv_signal_t *h, int sig) {
  (void)sig;
  T.loop_intr = 1;
  uv_stop(h->loop);
}

static int l_term_run_loop (lua_State *L) {
  uv_signal_t *h = malloc(sizeof *h);
  if (h == NULL) return luaL_error(L, "out of memory");
  uv_signal_init(loop_get(), h);
  uv_signal_start(h, term_loop_sigint, SIGINT);
  uv_unref((uv_handle_t *)h); /* the watch alone must not keep the loop running */
  T.loop_intr = 0;
  uv_run(loop_get(), UV_RUN_DEFAULT);
  uv_signal_stop(h);
  uv_close((uv_handle_t *)h, term_free_handle);
  if (T.interrupts) term_catch(); /* libuv put the default disposition back */
  term_sigint = 0;
  lua_pushboolean(L, !T.loop_intr);
  return 1;
}

/* }============ */

int term_luaopen (lua_State *L) {
  static const luaL_Reg fns[] = {
      {"readline", l_term_readline},
      {"set_completer", l_term_set_completer},
      {"history_add", l_term_history_add},
      {"history_clear", l_term_history_clear},
      {"history_load", l_term_history_load},
      {"history_save", l_term_history_save},
      {"isatty", l_term_isatty},
      {"width", l_term_width},
      {"interrupts", l_term_interrupts},
      {"interrupted", l_term_interrupted},
      {"wait", l_term_wait},
      {"run_loop", l_term_run_loop},
      {NULL, NULL},
  };
  luaL_newlib(L, fns);
  return 1;
}
