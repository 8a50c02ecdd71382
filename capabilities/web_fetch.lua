-- web_fetch — read web pages over http(s). Scope: domains (the host must equal
-- one or be a subdomain of one; checked again at every redirect). Bodies are
-- capped at 5 MB and each request at 30 s; at most 5 redirects are followed.

local core = require "cogos.core"

local MAX_BYTES = 5 * 1024 * 1024
local TIMEOUT_MS = 30000
local MAX_REDIRECTS = 5

local function check_url(config, url)
  if type(url) ~= "string" or not url:lower():match("^https?://[^/]") then
    return nil, "url must be an http:// or https:// URL"
  end
  local ok, why = core.sandbox.allows(config, "domains", url)
  if not ok then return nil, why end
  return url
end

local function resolve(base, location)
  if location:match("^%a[%w+.-]*://") then return location end
  local origin = base:match("^(%a[%w+.-]*://[^/?#]+)")
  if location:sub(1, 2) == "//" then return base:match("^(%a[%w+.-]*:)") .. location end
  if location:sub(1, 1) == "/" then return origin .. location end
  local dir = base:match("^(.*/)") or (origin .. "/")
  if #dir < #origin + 1 then dir = origin .. "/" end
  return dir .. location
end

---One GET with the body capped; follows redirects inside the scope.
local function get(config, url)
  local current = url
  for _ = 0, MAX_REDIRECTS do
    local ok_url, err = check_url(config, current)
    if not ok_url then return nil, err end
    local size, chunks, too_big = 0, {}, false
    local res, rerr = core.http.request({ method = "GET", url = current, timeout_ms = TIMEOUT_MS,
      headers = { ["user-agent"] = "cogos-web_fetch" },
      on_data = function(chunk)
        size = size + #chunk
        if size > MAX_BYTES then
          too_big = true
          error("body larger than " .. MAX_BYTES .. " bytes", 0)
        end
        chunks[#chunks + 1] = chunk
      end })
    if too_big then return nil, "response from " .. current .. " is larger than " .. MAX_BYTES .. " bytes" end
    if not res then return nil, rerr end
    local location = res.headers and res.headers.location
    if res.status >= 300 and res.status < 400 and location then
      current = resolve(current, location)
    else
      return { url = current, status = res.status, body = table.concat(chunks), headers = res.headers }
    end
  end
  return nil, "more than " .. MAX_REDIRECTS .. " redirects from " .. url
end

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = " " }

local function text_of(html)
  local title = html:match("<[Tt][Ii][Tt][Ll][Ee][^>]*>(.-)</[Tt][Ii][Tt][Ll][Ee]>")
  local body = html:gsub("<!%-%-.-%-%->", " ")
  for _, tag in ipairs({ "script", "style", "noscript", "head" }) do
    local pat = "<" .. tag:gsub("%a", function(c) return "[" .. c:lower() .. c:upper() .. "]" end)
    body = body:gsub(pat .. "[^>]*>.-</" .. pat:sub(2) .. "%s*>", " ")
  end
  body = body:gsub("<[Bb][Rr][^>]*>", "\n"):gsub("</?[Pp]>", "\n"):gsub("<[Pp]%s[^>]*>", "\n")
  -- block-level tags end a line; other tags are just removed
  body = body:gsub("</?[Hh]%d[^>]*>", "\n"):gsub("</?[Dd][Ii][Vv][^>]*>", "\n"):gsub("<[^>]*>", " ")
  local function decode(s)
    return (s:gsub("&(#?%w+);", function(e)
      if ENTITIES[e] then return ENTITIES[e] end
      local n = e:match("^#(%d+)$")
      if n and tonumber(n) < 0x110000 then return utf8.char(tonumber(n)) end
      return nil
    end))
  end
  body = decode(body):gsub("[ \t\r]+", " "):gsub(" ?\n[ \n]*", "\n"):gsub("^%s+", ""):gsub("%s+$", "")
  return title and decode(title):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "") or nil, body
end

return {
  name = "web_fetch",
  description = "Fetch web pages (http/https) from the domains this grant allows.",
  methods = {
    fetch = {
      op = "fetch", target = 1,
      doc = "fetch(url) -> {url, status, body} | nil, err   (body at most 5 MB; redirects followed within scope)",
      fn = function(ctx, url)
        local res, err = get(ctx.grant.config, url)
        if not res then return nil, err end
        return { url = res.url, status = res.status, body = res.body }
      end,
    },
    extract_text = {
      op = "fetch", target = 1,
      doc = "extract_text(url) -> {url, title, text} | nil, err   (the page without markup)",
      fn = function(ctx, url)
        local res, err = get(ctx.grant.config, url)
        if not res then return nil, err end
        if res.status >= 400 then return nil, "HTTP " .. res.status .. " from " .. res.url end
        local title, text = text_of(res.body)
        return { url = res.url, title = title, text = text }
      end,
    },
  },
}
