/* http.h — HTTP client: libcurl multi driven by the node's libuv loop.
 *
 * Lua API (core.http):
 *   res, err = core.http.request{
 *     method = "POST", url = "http://...", headers = {["content-type"] = "..."},
 *     body = "...", timeout_ms = 300000,
 *     on_data = function(chunk) end,   -- optional: streamed body chunks (SSE);
 *                                      -- when given, res.body is ""
 *     user = "...", password = "...",  -- optional: credentials (basic auth, or
 *                                      -- the AWS key pair with aws_sigv4)
 *     aws_sigv4 = "aws:amz:<region>:<service>",  -- optional: curl signs the
 *                                      -- request with AWS Signature V4
 *   }
 *   -> res = {status = 200, headers = {["content-type"] = "..."} (names lower-cased),
 *             body = "..."}
 *   -> nil, "transport error text" (connection refused, timeout, ...)
 * Inside a sched coroutine the call yields until the transfer ends; elsewhere
 * (the CLI) it blocks. HTTP error statuses are not transport errors.
 */
#ifndef COGOS_HTTP_H
#define COGOS_HTTP_H
#endif
