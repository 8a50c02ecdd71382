-- cogos.log — the node's log: one timestamped line per event on stdout.

local core = require "cogos.core"

local M = {}

---Prints one line: "[HH:MM:SS.mmm] message" (string.format arguments).
function M.info(fmt, ...)
  local iso = core.sys.iso_now()
  io.stdout:write("[", iso:sub(12, 23), "] ", string.format(fmt, ...), "\n")
  io.stdout:flush()
end

---The first line of text, at most 100 characters.
function M.excerpt(text)
  local line = tostring(text):match("^%s*([^\n]*)")
  if #line > 100 then line = line:sub(1, 97) .. "..." end
  return line
end

-- Ids are UUIDv7: the first characters are the time, the last ones tell runs apart.
function M.short(id) return id and tostring(id):sub(-8) or "-" end

return M
