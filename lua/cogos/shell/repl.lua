-- cogos.shell.repl — the shell's three ways in: an interactive terminal (line
-- editing, history, completion, Ctrl-C), `-c 'cmd; cmd'`, and commands read
-- from a pipe. Lua lines cut short continue on the next line.

local core = require "cogos.core"
local session = require "cogos.shell.session"
local complete = require "cogos.shell.complete"
local luaeval = require "cogos.shell.luaeval"
local parse = require "cogos.shell.parse"

local M = {}

-- The Lua source of a line, when it is one (`=…` or `lua …`).
local function lua_source(line)
  local s = line:match("^%s*=(.*)$") or line:match("^%s*lua%s+(.*)$")
  return s
end

-- Reads continuation lines while the line is Lua cut short; nil when the input
-- ended or (false) Ctrl-C abandoned it.
local function complete_lua(line, more)
  while true do
    local src = lua_source(line)
    if not src or luaeval.classify(src) ~= "incomplete" then return line end
    local next_line = more()
    if not next_line then return next_line end
    line = line .. "\n" .. next_line
  end
end

local function run_all(sh, lines)
  local failed = 0
  for _, line in ipairs(lines) do
    sh:remember(line)
    local ok, what = sh:run(line)
    if not ok then failed = failed + 1 end
    if what == "exit" then break end
  end
  return failed
end

local function interactive(sh)
  local term = core.term
  term.interrupts(true)
  term.set_completer(function(word, before) return complete.candidates(sh, word, before) end)
  for _, l in ipairs(sh.history) do term.history_add(l) end
  sh:tty_skip()
  while true do
    sh:tty_drain() -- what tty processes printed meanwhile
    local line = term.readline(sh:prompt())
    if line == nil then
      sh.write_out("\n")
      break
    end
    if line then
      line = complete_lua(line, function() return term.readline(">> ") end)
      if line == nil then break end
    end
    if line and line:match("%S") then
      term.history_add((line:gsub("\n", " "))) -- a history entry is one line
      sh:remember(line)
      term.interrupted() -- a Ctrl-C typed before this command is not for it
      local _, what = sh:run(line)
      if what == "exit" then break end
      if sh.tty_printed then -- the shell's own llm runs: already printed
        sh.tty_printed = nil
        sh:tty_skip()
      end
    end
  end
  term.set_completer(nil)
  term.interrupts(false)
  return 0 -- a person saw each failure; leaving the shell is a success
end

local function piped(sh)
  local failed = 0
  while true do
    local line = io.stdin:read("l")
    if line == nil then break end
    line = complete_lua(line, function() return io.stdin:read("l") end)
    if line == nil then
      sh:eprint("unexpected end of input in Lua")
      return failed + 1
    end
    if line:match("%S") then
      sh:remember(line)
      local ok, what = sh:run(line)
      if not ok then failed = failed + 1 end
      if what == "exit" then break end
    end
  end
  return failed
end

---Runs the shell.
---@param opts table {db, target, llm, command = "-c text"|nil}
---@return integer failed the number of commands that failed (0 for a terminal session)
function M.main(opts)
  local term = core.term
  local tty = opts.command == nil and term.isatty(0) and term.isatty(1)
  local sh = session.new({ db = opts.db, target = opts.target, cogent = opts.target and opts.target.cogent,
    llm = opts.llm, interactive = tty, color = term.isatty(1) })
  if opts.command then
    local lines, err = parse.commands(opts.command)
    if not lines then
      sh:eprint("parse error: " .. err)
      return 1
    end
    return run_all(sh, lines)
  end
  if tty then return interactive(sh) end
  return piped(sh)
end

return M
