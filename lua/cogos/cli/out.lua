-- cogos.cli.out — what commands print: JSON for scripts, aligned tables for people.

local json = require("cogos.core").json

local M = {}

---Prints v as indented JSON.
function M.json(v)
  io.stdout:write(assert(json.encode(v, { pretty = true })), "\n")
end

local function cell(v)
  if v == nil or v == json.null then return "-" end
  if type(v) == "table" then return (json.encode(v)) end
  return tostring(v)
end

---Prints rows as a table with the given columns ({key, title} pairs or keys).
---@param rows table[]
---@param cols table
function M.table(rows, cols)
  if #rows == 0 then
    io.stdout:write("(none)\n")
    return
  end
  local widths, lines = {}, {}
  local header = {}
  for i, c in ipairs(cols) do
    local title = type(c) == "table" and c[2] or c
    header[i] = title:upper()
    widths[i] = #header[i]
  end
  for r, row in ipairs(rows) do
    lines[r] = {}
    for i, c in ipairs(cols) do
      local s = cell(row[type(c) == "table" and c[1] or c]):gsub("\n", " ")
      if #s > 60 then s = s:sub(1, 57) .. "..." end
      lines[r][i] = s
      if #s > widths[i] then widths[i] = #s end
    end
  end
  local function emit(values)
    local parts = {}
    for i, v in ipairs(values) do
      parts[i] = i == #values and v or v .. string.rep(" ", widths[i] - #v)
    end
    io.stdout:write(table.concat(parts, "  "), "\n")
  end
  emit(header)
  for _, l in ipairs(lines) do emit(l) end
end

---Prints key: value lines for one record.
function M.record(row, keys)
  local w = 0
  for _, k in ipairs(keys) do if #k > w then w = #k end end
  for _, k in ipairs(keys) do
    io.stdout:write(k, ":", string.rep(" ", w - #k + 1), cell(row[k]), "\n")
  end
end

return M
