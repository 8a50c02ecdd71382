-- cogos.shell.parse — a shell line into words: blanks separate, '…' is literal,
-- "…" honours \" and \\, a backslash outside quotes escapes the next character.

local M = {}

---Splits a command line into words.
---@param line string
---@return string[]|nil words, string|integer err_or_nil  on success also returns the
---  start positions of the words in `line` as the third result
function M.words(line)
  local words, starts = {}, {}
  local i, n = 1, #line
  while true do
    while i <= n and line:sub(i, i):match("%s") do i = i + 1 end
    if i > n then break end
    starts[#starts + 1] = i
    local buf = {}
    while i <= n and not line:sub(i, i):match("%s") do
      local c = line:sub(i, i)
      if c == "'" then
        local j = line:find("'", i + 1, true)
        if not j then return nil, "unterminated ' quote" end
        buf[#buf + 1] = line:sub(i + 1, j - 1)
        i = j + 1
      elseif c == '"' then
        i = i + 1
        while true do
          if i > n then return nil, 'unterminated " quote' end
          c = line:sub(i, i)
          if c == '"' then break end
          if c == "\\" and i < n and line:sub(i + 1, i + 1):match('["\\$`]') then
            i = i + 1
            c = line:sub(i, i)
          end
          buf[#buf + 1] = c
          i = i + 1
        end
        i = i + 1
      elseif c == "\\" then
        if i == n then return nil, "trailing backslash" end
        buf[#buf + 1] = line:sub(i + 1, i + 1)
        i = i + 2
      else
        buf[#buf + 1] = c
        i = i + 1
      end
    end
    words[#words + 1] = table.concat(buf)
  end
  return words, nil, starts
end

---Splits a line of several commands at unquoted `;` (for `cogos shell -c`).
---@param text string
---@return string[]|nil commands, string|nil err
function M.commands(text)
  local cmds, start, i, n = {}, 1, 1, #text
  local quote
  while i <= n do
    local c = text:sub(i, i)
    if quote then
      if c == "\\" and quote == '"' then i = i + 1
      elseif c == quote then quote = nil end
    elseif c == "\\" then
      i = i + 1
    elseif c == "'" or c == '"' then
      quote = c
    elseif c == ";" then
      cmds[#cmds + 1] = text:sub(start, i - 1)
      start = i + 1
    end
    i = i + 1
  end
  if quote then return nil, "unterminated " .. quote .. " quote" end
  cmds[#cmds + 1] = text:sub(start)
  local out = {}
  for _, c in ipairs(cmds) do
    if c:match("%S") then out[#out + 1] = c:match("^%s*(.-)%s*$") end
  end
  return out
end

return M
