/* http_lib.h — libcurl, opened on first use (see sys_lib in sys.h); internal to http.c.
 *
 * <curl/curl.h> gives the types and constants only: every call goes through
 * http_curl, after http_curl_load succeeded. Its setopt/getinfo entries are
 * variadic and curl.h's type-checking macros no longer apply, so each argument
 * must have the type the option reads: long for CURLOPTTYPE_LONG (write 1L,
 * (long)x), curl_off_t for _OFF_T, a pointer for OBJECTPOINT/STRINGPOINT/
 * SLISTPOINT/CBPOINT, a function of curl's callback type for FUNCTIONPOINT,
 * and for getinfo a pointer to the long, char * or curl_off_t it fills.
 */
#ifndef COGOS_HTTP_LIB_H
#define COGOS_HTTP_LIB_H

#include <curl/curl.h>

/* Every libcurl function http.c calls: X(return type, name without "curl_",
 * parameters). http_lib.c checks each against curl.h's prototype. */
#define HTTP_CURL_FNS(X)                                                    \
  X(CURLcode, global_init, (long))                                          \
  X(CURLSH *, share_init, (void))                                           \
  X(CURLSHcode, share_setopt, (CURLSH *, CURLSHoption, ...))                \
  X(CURLM *, multi_init, (void))                                            \
  X(CURLMcode, multi_setopt, (CURLM *, CURLMoption, ...))                   \
  X(CURLMcode, multi_add_handle, (CURLM *, CURL *))                         \
  X(CURLMcode, multi_remove_handle, (CURLM *, CURL *))                      \
  X(CURLMcode, multi_socket_action, (CURLM *, curl_socket_t, int, int *))   \
  X(CURLMcode, multi_assign, (CURLM *, curl_socket_t, void *))              \
  X(CURLMsg *, multi_info_read, (CURLM *, int *))                           \
  X(const char *, multi_strerror, (CURLMcode))                              \
  X(CURL *, easy_init, (void))                                              \
  X(CURLcode, easy_setopt, (CURL *, CURLoption, ...))                       \
  X(CURLcode, easy_getinfo, (CURL *, CURLINFO, ...))                        \
  X(CURLcode, easy_perform, (CURL *))                                       \
  X(void, easy_cleanup, (CURL *))                                           \
  X(const char *, easy_strerror, (CURLcode))                                \
  X(struct curl_slist *, slist_append, (struct curl_slist *, const char *)) \
  X(void, slist_free_all, (struct curl_slist *))                            \
  X(curl_version_info_data *, version_info, (CURLversion))                  \
  X(CURLU *, url, (void))                                                   \
  X(CURLUcode, url_set, (CURLU *, CURLUPart, const char *, unsigned int))   \
  X(CURLUcode, url_get, (CURLU *, CURLUPart, char **, unsigned int))        \
  X(void, url_cleanup, (CURLU *))                                           \
  X(void, free, (void *))

#define HTTP_CURL_FIELD(ret, name, params) ret(*name) params;
struct http_curl {
  HTTP_CURL_FNS(HTTP_CURL_FIELD)
};
#undef HTTP_CURL_FIELD

extern struct http_curl http_curl;

/* Opens libcurl and runs curl_global_init, once. Returns NULL, or the error
 * text ("cannot load libcurl.so.4: <dlerror>"), the same on every later call. */
const char *http_curl_load(void);

#endif
