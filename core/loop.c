/* loop.c — the node's single libuv loop: timers, signals, local wake-ups. */
#include "loop.h"
#include "host.h"
#include "lcore.h"

#include <lauxlib.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static uv_loop_t loop_storage;
static uv_loop_t *loop;
static lua_State *loop_L; /* main thread of the node state: callbacks run there */

uv_loop_t *loop_get (void) {
  if (loop == NULL) {
    uv_loop_init(&loop_storage);
    loop = &loop_storage;
  }
  return loop;
}

static void free_handle (uv_handle_t *h) { free(h); }

static void close_walk (uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, free_handle);
}

void loop_close (void) {
  if (loop == NULL) return;
  /* Handles still open at exit are malloc'd with the handle first (loop.h). */
  uv_walk(loop, close_walk, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  loop = NULL;
}

/* Calls the function referenced by ref with nargs arguments already pushed
 * below nothing: the caller pushes the arguments after this pushes the function. */
static void call_ref (int ref, const char *argstr, size_t arglen, int with_arg) {
  lua_State *L = loop_L;
  if (L == NULL) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  if (with_arg) lua_pushlstring(L, argstr, arglen);
  if (host_pcall(L, with_arg, 0) != LUA_OK) {
    fprintf(stderr, "cogos: loop callback failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* {============ timers */

typedef struct loop_timer loop_timer;

typedef struct {
  loop_timer *t; /* NULL once the timer stopped */
} timer_box;

struct loop_timer {
  uv_timer_t h;        /* first: loop_close may free the handle */
  int fn_ref, box_ref; /* the box stays anchored while the timer runs */
  timer_box *box;
};

static void timer_stop (loop_timer *t) {
  uv_timer_stop(&t->h);
  t->box->t = NULL;
  if (loop_L) {
    luaL_unref(loop_L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(loop_L, LUA_REGISTRYINDEX, t->box_ref);
  }
  uv_close((uv_handle_t *)&t->h, free_handle);
}

static void timer_fired (uv_timer_t *h) {
  loop_timer *t = (loop_timer *)h;
  int once = uv_timer_get_repeat(h) == 0;
  call_ref(t->fn_ref, NULL, 0, 0);
  if (once && t->box->t == t) timer_stop(t);
}

static int l_loop_timer (lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  lua_Integer rep = luaL_optinteger(L, 2, 0);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  timer_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->t = NULL;
  luaL_setmetatable(L, "cogos.loop.timer");
  loop_timer *t = calloc(1, sizeof *t);
  if (t == NULL) return luaL_error(L, "out of memory");
  uv_timer_init(loop_get(), &t->h);
  t->box = box;
  box->t = t;
  lua_pushvalue(L, 3);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  t->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_start(&t->h, timer_fired, (uint64_t)(ms < 0 ? 0 : ms), (uint64_t)(rep < 0 ? 0 : rep));
  return 1;
}

static int l_timer_stop (lua_State *L) {
  timer_box *box = luaL_checkudata(L, 1, "cogos.loop.timer");
  if (box->t) timer_stop(box->t);
  return 0;
}

/* }============ */

/* {============ signals */

static void signal_fired (uv_signal_t *h, int signum) {
  (void)signum;
  call_ref((int)(intptr_t)h->data, NULL, 0, 0);
}

static int l_loop_on_signal (lua_State *L) {
  static const char *const names[] = {"SIGINT", "SIGTERM", "SIGHUP", NULL};
  static const int nums[] = {SIGINT, SIGTERM, SIGHUP};
  int which = luaL_checkoption(L, 1, NULL, names);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  uv_signal_t *h = malloc(sizeof *h);
  if (h == NULL) return luaL_error(L, "out of memory");
  uv_signal_init(loop_get(), h);
  lua_pushvalue(L, 2);
  h->data = (void *)(intptr_t)luaL_ref(L, LUA_REGISTRYINDEX);
  uv_signal_start(h, signal_fired, nums[which]);
  uv_unref((uv_handle_t *)h); /* a signal watch alone must not keep the node alive */
  return 0;
}

/* }============ */

/* {============ local wake-ups over a unix socket */

typedef struct {
  uv_pipe_t h;
  int ref;
} loop_listener;

static void alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void client_read (uv_stream_t *client, ssize_t n, const uv_buf_t *buf) {
  loop_listener *srv = client->data;
  if (n > 0) call_ref(srv->ref, buf->base, (size_t)n, 1);
  free(buf->base);
  if (n < 0) uv_close((uv_handle_t *)client, free_handle);
}

static void on_connection (uv_stream_t *server, int status) {
  if (status < 0) return;
  uv_pipe_t *client = malloc(sizeof *client);
  if (client == NULL) return;
  uv_pipe_init(loop_get(), client, 0);
  client->data = server->data;
  if (uv_accept(server, (uv_stream_t *)client) != 0 ||
      uv_read_start((uv_stream_t *)client, alloc_cb, client_read) != 0)
    uv_close((uv_handle_t *)client, free_handle);
}

static int l_loop_listen (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  loop_listener *srv = malloc(sizeof *srv);
  if (srv == NULL) return luaL_error(L, "out of memory");
  uv_pipe_init(loop_get(), &srv->h, 0);
  srv->h.data = srv;
  unlink(path); /* a stale socket of a dead node; the node lock guards a live one */
  int rc = uv_pipe_bind(&srv->h, path);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->h, 64, on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&srv->h, free_handle);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s: %s", path, uv_strerror(rc));
    return 2;
  }
  lua_pushvalue(L, 2);
  srv->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 1);
  return 1;
}

/* Blocking: used by other processes (the CLI) to poke a running node. */
static int l_loop_notify (lua_State *L) {
  size_t plen, dlen;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_optlstring(L, 2, "wake", &dlen);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (plen >= sizeof addr.sun_path) return luaL_argerror(L, 1, "socket path too long");
  memcpy(addr.sun_path, path, plen + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
           write(fd, data, dlen) == (ssize_t)dlen;
  int err = errno;
  if (fd >= 0) close(fd);
  if (!ok) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(err));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* }============ */

static int l_loop_run (lua_State *L) {
  (void)L;
  uv_run(loop_get(), UV_RUN_DEFAULT);
  return 0;
}

static int l_loop_stop (lua_State *L) {
  (void)L;
  uv_stop(loop_get());
  return 0;
}

int loop_luaopen (lua_State *L) {
  static const luaL_Reg fns[] = {
      {"run", l_loop_run},
      {"stop", l_loop_stop},
      {"timer", l_loop_timer},
      {"on_signal", l_loop_on_signal},
      {"listen", l_loop_listen},
      {"notify", l_loop_notify},
      {NULL, NULL},
  };
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  loop_L = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, "cogos.loop.timer")) {
    lua_newtable(L);
    lua_pushcfunction(L, l_timer_stop);
    lua_setfield(L, -2, "stop");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
