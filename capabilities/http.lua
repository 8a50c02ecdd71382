-- http — generic HTTP requests. Scope: hosts (the URL's host must equal one or
-- be a subdomain of one), methods (allowed HTTP methods, e.g. {"GET"}).
-- Redirects are not followed (the 3xx comes back); bodies are capped at 5 MB.

local core = require "cogos.core"

local MAX_BYTES = 5 * 1024 * 1024
local DEFAULT_TIMEOUT_MS = 30000

return {
  name = "http",
  description = "HTTP requests to the hosts this grant allows.",
  methods = {
    request = {
      op = "request", target = 1, field = "url",
      doc = "request{method='GET', url=, headers={}, body='', timeout_ms=30000} -> {status, headers, body} | nil, err",
      fn = function(ctx, req)
        if type(req) ~= "table" then return nil, "request: needs a table {method, url, headers, body}" end
        local url = req.url
        if type(url) ~= "string" or not url:lower():match("^https?://[^/]") then
          return nil, "request: url must be an http:// or https:// URL"
        end
        local method = req.method or "GET"
        if type(method) ~= "string" or not method:match("^%u+$") then
          return nil, "request: method must be an upper-case HTTP method like 'GET'"
        end
        local ok, why = core.sandbox.allows(ctx.grant.config, "methods", method)
        if not ok then error("permission denied: " .. ctx.grant.name .. ".request: " .. why, 0) end
        if req.headers ~= nil and type(req.headers) ~= "table" then return nil, "request: headers must be a table" end
        for k, v in pairs(req.headers or {}) do
          if type(k) ~= "string" or type(v) ~= "string" or not k:match("^[%w%-_]+$") or v:find("[\r\n%z]") then
            return nil, "request: headers must map token names to strings without line breaks"
          end
        end
        if req.body ~= nil and type(req.body) ~= "string" then return nil, "request: body must be a string" end
        local timeout = math.tointeger(req.timeout_ms or DEFAULT_TIMEOUT_MS)
        if not timeout or timeout < 1 or timeout > 300000 then
          return nil, "request: timeout_ms must be an integer from 1 to 300000"
        end
        local size, chunks, too_big = 0, {}, false
        local res, err = core.http.request({ method = method, url = url, headers = req.headers, body = req.body,
          timeout_ms = timeout,
          on_data = function(chunk)
            size = size + #chunk
            if size > MAX_BYTES then
              too_big = true
              error("body larger than " .. MAX_BYTES .. " bytes", 0)
            end
            chunks[#chunks + 1] = chunk
          end })
        if too_big then return nil, "request: response larger than " .. MAX_BYTES .. " bytes" end
        if not res then return nil, err end
        return { status = res.status, headers = res.headers, body = table.concat(chunks) }
      end,
    },
  },
}
