/* http.c — HTTP client: one long-lived libcurl multi handle on the node's libuv loop.
 *
 * Inside a sched coroutine a request joins the multi handle and the coroutine
 * parks (sched_yield_wait). libuv reports socket readiness (one uv_poll_t per
 * socket curl asks about) and the single curl timeout (one uv_timer_t); each
 * event goes to curl_multi_socket_action, then finished transfers are collected
 * with curl_multi_info_read and their coroutines resumed with the result.
 * Everywhere else (the CLI) a request runs with curl_easy_perform and blocks;
 * those handles share one connection cache (CURLSH) so repeated calls reuse
 * connections as the multi handle does.
 *
 * A request is a full userdata with a __gc: every C resource it owns is freed
 * whether the call returns, raises, or the state closes mid-transfer. While a
 * transfer is in flight the registry holds the request, the coroutine and the
 * on_data function.
 *
 * on_data: in the blocking path it runs on the calling state. In the yield path
 * the calling coroutine is suspended, so it runs on the main thread (with
 * lua_pcall) from curl's write callback; it must not yield. An error it raises
 * aborts the transfer and becomes the request's error.
 *
 * libcurl is not linked: the first request opens it (http_lib.c) and every
 * call goes through http_curl. Without it a request returns nil and
 * "http: cannot load libcurl.so.4: <dlerror>".
 *
 * Nothing here logs; error texts carry the URL without query string or
 * credentials so keys passed in URLs never reach a message.
 */
#include "http.h"
#include "http_lib.h"
#include "lcore.h"
#include "loop.h"
#include "sched.h"

#include <lauxlib.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_DEFAULT_TIMEOUT_MS 300000
#define HTTP_MAX_BODY           ((size_t)128 << 20) /* responses beyond this are refused */
#define HTTP_MAX_HEAD           ((size_t)1 << 20)
#define HTTP_REQ_MT             "cogos.http.req"

/* curl keeps a receive buffer per transfer (and, for bodies over 64 KB, an
 * upload buffer) from connect to cleanup, the wait for the answer included.
 * While few transfers run, curl's defaults (16 KB, 64 KB) move bulk data
 * fastest; a transfer that joins when HTTP_CROWD are already in flight gets
 * curl's minimums instead: with thousands of runs waiting on their LLM, memory
 * runs out long before bandwidth does (1 MB arrives ~1 ms slower). */
#define HTTP_CROWD            64 /* the scheduler's default slots */
#define HTTP_CROWD_RECV_BUF   1024L
#define HTTP_CROWD_UPLOAD_BUF 16384L
#define HTTP_MAX_IDLE_CONNS   64L

typedef struct http_buf {
  char *data;
  size_t len, cap;
} http_buf;

typedef struct http_req {
  CURL *easy;
  struct curl_slist *hdrs;
  lua_State *cbL; /* state on_data runs on */
  lua_State *co;  /* parked coroutine (yield path) */
  int co_ref, self_ref, on_data_ref;
  int in_multi;
  int too_large;
  CURLcode rc;
  http_buf body, head;
  char *shown_url; /* URL for error texts: no query, fragment or userinfo */
  char *cb_err;    /* error raised by on_data */
  char errbuf[CURL_ERROR_SIZE];
} http_req;

typedef struct http_sock {
  uv_poll_t poll;
  curl_socket_t fd;
} http_sock;

static CURLM *http_multi;
static CURLSH *http_share;
static uv_timer_t *http_timer; /* malloc'd, handle first: loop_close may free it */
static int http_in_flight;     /* transfers in http_multi */

static void http_check_done(void);

/* ---- buffers ---- */

static int http_buf_add (http_buf *b, const char *p, size_t n, size_t max) {
  if (n > max - b->len) return -1;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static void http_buf_free (http_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static char *http_strdup (const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* "https://user:pw@host/p?key=x#f" -> "https://host/p" */
static char *http_shown_url (const char *url) {
  char *s = http_strdup(url);
  if (s == NULL) return NULL;
  s[strcspn(s, "?#")] = '\0';
  char *auth = strstr(s, "://");
  auth = auth ? auth + 3 : s;
  size_t alen = strcspn(auth, "/");
  char *at = memchr(auth, '@', alen);
  if (at) memmove(auth, at + 1, strlen(at + 1) + 1);
  return s;
}

/* ---- request lifetime ---- */

static void http_multi_remove (http_req *req) {
  if (!req->in_multi) return;
  http_curl.multi_remove_handle(http_multi, req->easy);
  req->in_multi = 0;
  http_in_flight--;
}

/* Frees everything curl-side; idempotent (also run by __gc). */
static void http_release (lua_State *L, http_req *req) {
  if (req->easy) {
    http_multi_remove(req);
    http_curl.easy_cleanup(req->easy);
    req->easy = NULL;
  }
  http_curl.slist_free_all(req->hdrs);
  req->hdrs = NULL;
  http_buf_free(&req->body);
  http_buf_free(&req->head);
  free(req->shown_url);
  req->shown_url = NULL;
  free(req->cb_err);
  req->cb_err = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, req->on_data_ref);
  req->on_data_ref = LUA_NOREF;
}

static int l_http_req_gc (lua_State *L) {
  http_req *req = luaL_checkudata(L, 1, HTTP_REQ_MT);
  http_release(L, req);
  return 0;
}

/* ---- curl callbacks ---- */

/* Runs on_data(chunk) under lua_pcall; arguments are C values so nothing
 * can raise outside the protected call. */
static int http_call_on_data (lua_State *L) {
  const char *p = lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, (int)lua_tointeger(L, 3));
  lua_pushlstring(L, p, n);
  lua_call(L, 1, 0);
  return 0;
}

static size_t http_on_write (char *p, size_t size, size_t nmemb, void *ud) {
  http_req *req = ud;
  size_t n = size * nmemb;
  if (req->on_data_ref == LUA_NOREF) {
    if (http_buf_add(&req->body, p, n, HTTP_MAX_BODY) != 0) {
      req->too_large = 1;
      return 0;
    }
    return n;
  }
  lua_State *L = req->cbL;
  if (n == 0) return 0;
  if (!lua_checkstack(L, 4)) return 0;
  lua_pushcfunction(L, http_call_on_data);
  lua_pushlightuserdata(L, p);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushinteger(L, req->on_data_ref);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    free(req->cb_err);
    req->cb_err = http_strdup(msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
    return 0; /* curl aborts with CURLE_WRITE_ERROR */
  }
  return n;
}

/* Keeps only the last response's header block (after 100-continue, redirects). */
static size_t http_on_header (char *p, size_t size, size_t nmemb, void *ud) {
  http_req *req = ud;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) req->head.len = 0;
  if (http_buf_add(&req->head, p, n, HTTP_MAX_HEAD) != 0) return 0;
  return n;
}

static void http_sock_free (uv_handle_t *h) { free(h->data); }

static void http_on_poll (uv_poll_t *p, int status, int events) {
  http_sock *hs = p->data;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  http_curl.multi_socket_action(http_multi, hs->fd, flags, &running);
  http_check_done();
}

static int http_on_socket (CURL *easy, curl_socket_t s, int what, void *userp, void *sockp) {
  http_sock *hs = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (hs) {
      uv_poll_stop(&hs->poll);
      uv_close((uv_handle_t *)&hs->poll, http_sock_free);
      http_curl.multi_assign(http_multi, s, NULL);
    }
    return 0;
  }
  if (hs == NULL) {
    hs = calloc(1, sizeof *hs);
    if (hs == NULL) return -1;
    if (uv_poll_init_socket(loop_get(), &hs->poll, s) != 0) {
      free(hs);
      return -1;
    }
    hs->fd = s;
    hs->poll.data = hs;
    http_curl.multi_assign(http_multi, s, hs);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&hs->poll, ev, http_on_poll);
  return 0;
}

static void http_on_timeout (uv_timer_t *t) {
  int running;
  http_curl.multi_socket_action(http_multi, CURL_SOCKET_TIMEOUT, 0, &running);
  http_check_done();
}

/* curl must not be re-entered from its own callback, so even a 0 ms timeout
 * goes through the timer (it fires on the next loop iteration). */
static int http_on_timer_set (CURLM *multi, long timeout_ms, void *userp) {
  if (timeout_ms < 0)
    uv_timer_stop(http_timer);
  else
    uv_timer_start(http_timer, http_on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

static int http_multi_init (void) {
  if (http_multi) return 0;
  http_timer = malloc(sizeof *http_timer);
  if (http_timer == NULL) return -1;
  http_multi = http_curl.multi_init();
  if (http_multi == NULL) {
    free(http_timer);
    http_timer = NULL;
    return -1;
  }
  uv_timer_init(loop_get(), http_timer);
  http_curl.multi_setopt(http_multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
  http_curl.multi_setopt(http_multi, CURLMOPT_TIMERFUNCTION, http_on_timer_set);
  /* curl's default keeps up to 4 idle connections per transfer in flight: after
   * a burst of 10 000 answers, 10 000 sockets and ~2.5 KB each for connections
   * that ended their run. A turn's next request comes within milliseconds, so
   * few connections are idle at once in steady work; a burst past this many
   * closes the oldest. */
  http_curl.multi_setopt(http_multi, CURLMOPT_MAXCONNECTS, HTTP_MAX_IDLE_CONNS);
  return 0;
}

/* ---- results ---- */

static void http_push_headers (lua_State *L, const http_buf *head) {
  lua_newtable(L);
  if (head->data == NULL) return;
  const char *p = head->data, *end = head->data + head->len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *next = eol ? eol + 1 : end;
    if (eol == NULL) eol = end;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon && colon > p) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *c = p; c < colon; c++)
        luaL_addchar(&b, (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c);
      luaL_pushresult(&b);
      const char *v = colon + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) { /* repeated header: join */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = next;
  }
}

/* Pushes the outcome of a finished transfer: the result table, or nil, err. */
static int http_push_result (lua_State *L, http_req *req) {
  const char *url = req->shown_url ? req->shown_url : "?";
  if (req->rc != CURLE_OK) {
    lua_pushnil(L);
    if (req->cb_err)
      lua_pushfstring(L, "http: on_data: %s (%s)", req->cb_err, url);
    else if (req->too_large)
      lua_pushfstring(L, "http: response larger than %d MiB (%s)", (int)(HTTP_MAX_BODY >> 20), url);
    else
      lua_pushfstring(L, "http: %s (%s)", req->errbuf[0] ? req->errbuf : http_curl.easy_strerror(req->rc),
                      url);
    return 2;
  }
  long status = 0;
  http_curl.easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  http_push_headers(L, &req->head);
  lua_setfield(L, -2, "headers");
  if (req->body.data)
    lua_pushlstring(L, req->body.data, req->body.len);
  else
    lua_pushliteral(L, "");
  lua_setfield(L, -2, "body");
  return 1;
}

static int http_push_result_protected (lua_State *L) { return http_push_result(L, lua_touserdata(L, 1)); }

/* A transfer of the yield path ended: build the result on the main thread
 * (protected: it allocates), move it to the coroutine and resume it. */
static void http_complete (http_req *req, CURLcode rc) {
  lua_State *M = req->cbL, *co = req->co;
  int n = -1;
  http_multi_remove(req);
  req->rc = rc;
  if (lua_checkstack(M, 3)) {
    int top = lua_gettop(M);
    lua_pushcfunction(M, http_push_result_protected);
    lua_pushlightuserdata(M, req);
    if (lua_pcall(M, 1, LUA_MULTRET, 0) == LUA_OK && lua_checkstack(co, lua_gettop(M) - top)) {
      n = lua_gettop(M) - top;
      lua_xmove(M, co, n);
    }
    lua_settop(M, top);
  }
  if (n < 0 && lua_checkstack(co, 2)) {
    lua_pushnil(co);
    lua_pushliteral(co, "http: out of memory");
    n = 2;
  }
  int co_ref = req->co_ref;
  http_release(M, req);
  luaL_unref(M, LUA_REGISTRYINDEX, req->self_ref); /* req may be collected from here on */
  sched_resume(co, n < 0 ? 0 : n);
  luaL_unref(M, LUA_REGISTRYINDEX, co_ref); /* kept until resumed: nothing else may hold it */
}

static void http_check_done (void) {
  CURLMsg *msg;
  int left;
  while ((msg = http_curl.multi_info_read(http_multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    char *priv = NULL;
    http_curl.easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    if (priv) http_complete((http_req *)priv, rc);
  }
}

/* ---- the request ---- */

static int http_k (lua_State *L, int status, lua_KContext ctx) { return lua_gettop(L) - (int)ctx; }

static int http_valid_token (const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || *s == ':' || (unsigned char)*s >= 127) return 0;
  return 1;
}

static void http_set_headers (lua_State *L, http_req *req) {
  int has_expect = 0;
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        luaL_error(L, "http: headers must map names to strings");
      const char *name = lua_tostring(L, -2), *value = lua_tostring(L, -1);
      if (!http_valid_token(name) || strpbrk(value, "\r\n")) luaL_error(L, "http: bad header %s", name);
      if (strcasecmp(name, "expect") == 0) has_expect = 1;
      /* "Name;" is curl's way to send a header with an empty value */
      const char *line = *value ? lua_pushfstring(L, "%s: %s", name, value) : lua_pushfstring(L, "%s;", name);
      struct curl_slist *l = http_curl.slist_append(req->hdrs, line);
      if (l == NULL) luaL_error(L, "http: out of memory");
      req->hdrs = l;
      lua_pop(L, 2);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "http: headers must be a table");
  }
  lua_pop(L, 1);
  /* No "Expect: 100-continue" round trip for large bodies. */
  if (!has_expect) {
    struct curl_slist *l = http_curl.slist_append(req->hdrs, "Expect:");
    if (l == NULL) luaL_error(L, "http: out of memory");
    req->hdrs = l;
  }
}

static const char *http_opt_string (lua_State *L, const char *key) {
  int t = lua_getfield(L, 1, key);
  if (t != LUA_TNIL && t != LUA_TSTRING) luaL_error(L, "http: %s must be a string", key);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* still anchored in the options table */
  return s;
}

/* SigV4 for services other than S3 signs each path segment encoded once more
 * than it is sent ("%3A" is signed as "%253A"). libcurl before 8.9.0 signs the
 * path exactly as sent, so for those the URL given to curl carries the signed
 * form and CURLOPT_REQUEST_TARGET the form sent. Returns 0, or -1 (a URL curl
 * cannot parse, or no memory). */
static int http_sigv4_path (CURL *e, const char *url, char **target_out) {
  *target_out = NULL;
  const curl_version_info_data *v = http_curl.version_info(CURLVERSION_NOW);
  if (v->version_num >= 0x080900) return 0;
  CURLU *u = http_curl.url();
  char *path = NULL, *query = NULL, *signed_url = NULL;
  int rc = -1;
  if (u == NULL || http_curl.url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto done;
  if (http_curl.url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) goto done;
  if (http_curl.url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_OK) query = NULL;
  size_t n = strlen(path);
  char *enc = malloc(n * 3 + 1), *target = malloc(n + (query ? strlen(query) + 1 : 0) + 1);
  if (enc == NULL || target == NULL) {
    free(enc);
    free(target);
    goto done;
  }
  size_t j = 0;
  for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
    if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
        *c == '_' || *c == '.' || *c == '~' || *c == '/') {
      enc[j++] = (char)*c;
    } else {
      static const char hex[] = "0123456789ABCDEF";
      enc[j++] = '%';
      enc[j++] = hex[*c >> 4];
      enc[j++] = hex[*c & 15];
    }
  }
  enc[j] = '\0';
  strcpy(target, path);
  if (query) {
    strcat(target, "?");
    strcat(target, query);
  }
  int ok = http_curl.url_set(u, CURLUPART_PATH, enc, 0) == CURLUE_OK &&
           http_curl.url_get(u, CURLUPART_URL, &signed_url, 0) == CURLUE_OK;
  free(enc);
  if (!ok) {
    free(target);
    goto done;
  }
  http_curl.easy_setopt(e, CURLOPT_URL, signed_url);
  http_curl.easy_setopt(e, CURLOPT_REQUEST_TARGET, target);
  *target_out = target;
  rc = 0;
done:
  http_curl.free(path);
  http_curl.free(query);
  http_curl.free(signed_url);
  http_curl.url_cleanup(u);
  return rc;
}

/* libcurl is opened by the first request (http_lib.c): a process that never
 * does HTTP never maps it. Returns NULL or the error text. */
static const char *http_init (void) {
  const char *err = http_curl_load();
  if (err || http_share) return err;
  /* One connection and DNS cache for the blocking path (single thread: no locks). */
  http_share = http_curl.share_init();
  if (http_share) {
    http_curl.share_setopt(http_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    http_curl.share_setopt(http_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  }
  return NULL;
}

static int l_http_request (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  const char *url = http_opt_string(L, "url");
  if (url == NULL) return luaL_error(L, "http: url is required");
  const char *method = http_opt_string(L, "method");
  size_t body_len = 0;
  int t = lua_getfield(L, 1, "body");
  if (t != LUA_TNIL && t != LUA_TSTRING) return luaL_error(L, "http: body must be a string");
  const char *body = lua_tolstring(L, -1, &body_len);
  int body_idx = lua_gettop(L); /* kept on the stack until it hangs on req */
  if (method == NULL) method = body ? "POST" : "GET";
  for (const char *c = method; *c; c++)
    if (*c < 'A' || *c > 'Z') return luaL_error(L, "http: bad method %s", method);
  lua_getfield(L, 1, "timeout_ms");
  lua_Integer timeout_ms = luaL_optinteger(L, -1, HTTP_DEFAULT_TIMEOUT_MS);
  lua_pop(L, 1);
  if (timeout_ms < 0) return luaL_error(L, "http: timeout_ms must be >= 0");
  t = lua_getfield(L, 1, "on_data");
  if (t != LUA_TNIL && t != LUA_TFUNCTION) return luaL_error(L, "http: on_data must be a function");
  int yield = sched_can_yield(L) && lua_isyieldable(L);
  const char *load_err = http_init();
  if (load_err) {
    lua_pushnil(L);
    lua_pushfstring(L, "http: %s", load_err);
    return 2;
  }

  http_req *req = lua_newuserdatauv(L, sizeof *req, 1); /* [opts, body, on_data, req] */
  memset(req, 0, sizeof *req);
  /* The body is sent from the Lua string itself (no copy): req anchors it. */
  lua_pushvalue(L, body_idx);
  lua_setiuservalue(L, -2, 1);
  req->co_ref = req->self_ref = req->on_data_ref = LUA_NOREF;
  luaL_setmetatable(L, HTTP_REQ_MT);
  if ((req->shown_url = http_shown_url(url)) == NULL) return luaL_error(L, "http: out of memory");
  if ((req->easy = http_curl.easy_init()) == NULL) return luaL_error(L, "http: cannot create a handle");
  http_set_headers(L, req);

  CURL *e = req->easy;
  http_curl.easy_setopt(e, CURLOPT_URL, url);
  http_curl.easy_setopt(e, CURLOPT_PRIVATE, (char *)req);
  http_curl.easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
  http_curl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  http_curl.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  /* LLM answers can take minutes of silence; keep NATs from dropping the connection. */
  http_curl.easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  http_curl.easy_setopt(e, CURLOPT_USERAGENT,
                        "cogos/"
                        "0.1");
#if LIBCURL_VERSION_NUM >= 0x075500
  http_curl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  http_curl.easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  http_curl.easy_setopt(e, CURLOPT_HTTPHEADER, req->hdrs);
  http_curl.easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_write);
  http_curl.easy_setopt(e, CURLOPT_WRITEDATA, req);
  http_curl.easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
  http_curl.easy_setopt(e, CURLOPT_HEADERDATA, req);
  if (strcmp(method, "HEAD") == 0) {
    http_curl.easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    int post = strcmp(method, "POST") == 0;
    if (!post && strcmp(method, "GET") != 0) http_curl.easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (body || post) {
      http_curl.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
      http_curl.easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    }
  }

  /* AWS SigV4 by curl: it hashes the body and signs host, x-amz-date and the
   * content type with the secret; the key pair never leaves this call. */
  const char *sigv4 = http_opt_string(L, "aws_sigv4");
  const char *user = http_opt_string(L, "user"), *password = http_opt_string(L, "password");
  if ((user == NULL) != (password == NULL)) return luaL_error(L, "http: user and password go together");
  if (sigv4) {
    if (user == NULL) return luaL_error(L, "http: aws_sigv4 needs user and password");
    if (*sigv4 == '\0' || strpbrk(sigv4, "\r\n")) return luaL_error(L, "http: bad aws_sigv4");
    http_curl.easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4);
    char *target;
    if (http_sigv4_path(e, url, &target) != 0) return luaL_error(L, "http: bad URL for aws_sigv4");
    free(target); /* curl copied it */
  }
  if (user) {
    http_curl.easy_setopt(e, CURLOPT_USERNAME, user);
    http_curl.easy_setopt(e, CURLOPT_PASSWORD, password);
  }

  if (!lua_isnil(L, 3)) { /* [opts, body, on_data, req] */
    lua_pushvalue(L, 3);
    req->on_data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }

  if (yield) {
    if (http_multi_init() != 0) return luaL_error(L, "http: cannot create the multi handle");
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    req->cbL = lua_tothread(L, -1);
    lua_pop(L, 1);
    req->co = L;
    if (http_in_flight >= HTTP_CROWD) {
      http_curl.easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_CROWD_RECV_BUF);
      http_curl.easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_CROWD_UPLOAD_BUF);
    }
    CURLMcode mc = http_curl.multi_add_handle(http_multi, e);
    if (mc != CURLM_OK) {
      lua_pushnil(L);
      lua_pushfstring(L, "http: %s (%s)", http_curl.multi_strerror(mc), req->shown_url);
      return 2; /* __gc frees req */
    }
    req->in_multi = 1;
    http_in_flight++;
    lua_pushvalue(L, 4);
    req->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushthread(L);
    req->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 1);
    return sched_yield_wait(L, (lua_KContext)1, http_k);
  }

  req->cbL = L;
  if (http_share) http_curl.easy_setopt(e, CURLOPT_SHARE, http_share);
  req->rc = http_curl.easy_perform(e);
  int n = http_push_result(L, req);
  http_release(L, req);
  return n;
}

int http_luaopen (lua_State *L) {
  if (luaL_newmetatable(L, HTTP_REQ_MT)) {
    lua_pushcfunction(L, l_http_req_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"request", l_http_request},
      {NULL, NULL},
  };
  luaL_newlib(L, fns);
  return 1;
}
