/* http_lib.c — libcurl opened on first use (see http_lib.h). */
#include "http_lib.h"
#include "sys.h"

#include <stddef.h>

/* Each entry must match curl.h exactly: a call through a mistyped pointer
 * would compile silently and break at run time. Newer curl.h declare
 * curl_url_get's handle const (same ABI): that prototype is accepted too. */
#define HTTP_CURL_URL_GET_CONST(f) \
  _Generic(f, CURLUcode(*)(const CURLU *, CURLUPart, char **, unsigned int) : 1, default : 0)
#define HTTP_CURL_CHECK(ret, name, params)                          \
  _Static_assert(_Generic(&curl_##name, ret(*) params : 1, default  \
                          : HTTP_CURL_URL_GET_CONST(&curl_##name)), \
                 "curl_" #name " prototype");
HTTP_CURL_FNS(HTTP_CURL_CHECK)
#undef HTTP_CURL_CHECK

#define HTTP_CURL_NAME(ret, name, params) "curl_" #name,
static const char *const http_curl_names[] = {HTTP_CURL_FNS(HTTP_CURL_NAME) NULL};
#undef HTTP_CURL_NAME

static sys_fn http_curl_fns[sizeof http_curl_names / sizeof http_curl_names[0]];
static sys_lib http_curl_lib = {.soname = "libcurl.so.4", .names = http_curl_names, .fns = http_curl_fns};
static const char *http_curl_err; /* set once curl_global_init failed */

struct http_curl http_curl;

const char *http_curl_load (void) {
  if (http_curl.global_init) return http_curl_err;
  const char *err = sys_lib_load(&http_curl_lib);
  if (err) return err;
  size_t i = 0;
#define HTTP_CURL_SET(ret, name, params) http_curl.name = (ret(*) params)http_curl_fns[i++];
  HTTP_CURL_FNS(HTTP_CURL_SET)
#undef HTTP_CURL_SET
  if (http_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) http_curl_err = "curl_global_init failed";
  return http_curl_err;
}
