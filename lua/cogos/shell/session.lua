-- cogos.shell.session — one shell session over a cogent's database: the working
-- directory, output, persistent history, and running one command line.

local core = require "cogos.core"
local parse = require "cogos.shell.parse"

local M = {}

local Session = {}
Session.__index = Session

M.HISTORY_KEY = "home/root/.shell_history"
M.HISTORY_KEEP = 500 -- lines kept in the history file (each command writes a version)

local COLORS = { blue = "34", green = "32", red = "31", bold = "1", dim = "2" }

---A session.
---@param opts table {db, cogent=name, target=config target|nil, out=fn(s)|nil, err=fn(s)|nil,
---  color=bool, interactive=bool, llm=cogtainer llm settings}
function M.new(opts)
  local sh = setmetatable({
    db = opts.db, cogent = opts.cogent or "cogent", target = opts.target, cwd = "",
    color = opts.color or false, interactive = opts.interactive or false, llm = opts.llm or {},
    cogent_dir = opts.target and opts.target.dir,
    write_out = opts.out or function(s) io.stdout:write(s) io.stdout:flush() end,
    write_err = opts.err or function(s) io.stderr:write(s) io.stderr:flush() end,
  }, Session)
  local f = sh.db:file_get(M.HISTORY_KEY)
  sh.history = {}
  if f then
    for l in f.content:gmatch("[^\n]+") do sh.history[#sh.history + 1] = l end
  end
  sh.commands = require("cogos.shell.commands").table()
  return sh
end

function Session:prompt()
  return self.cogent .. ":/" .. self.cwd .. "$ "
end

---Wraps s in an ANSI colour when the session prints to a terminal.
function Session:paint(s, color)
  if not self.color then return s end
  return "\27[" .. COLORS[color] .. "m" .. s .. "\27[0m"
end

---Prints a line (or nothing for nil) on the session's output.
function Session:print(s)
  if s ~= nil then self.write_out(tostring(s) .. "\n") end
end

function Session:eprint(s)
  self.write_err(self:paint(tostring(s), "red") .. "\n")
end

---Raises a command failure: one line on stderr, the command fails.
function Session.fail(_, msg)
  error({ shell = msg }, 0)
end

---Wakes the cogent's running node, if any, so that what we made runnable runs now.
function Session:poke()
  if self.target then core.loop.notify(self.target.sock_path, "wake") end
end

M.TTY_STREAMS = { { "io:stdout", false }, { "io:stderr", true } }

---Newest message id of a channel ("" when it is empty or missing); ids grow with time.
function M.newest_id(db, channel)
  local rows = db:messages(channel, { limit = 1 })
  return rows and rows[1] and rows[1].id or ""
end
local newest_id = M.newest_id

---Positions the terminal cursors of io:stdout and io:stderr at their newest message.
function Session:tty_skip()
  self.tty_cursor = {}
  for _, s in ipairs(M.TTY_STREAMS) do self.tty_cursor[s[1]] = newest_id(self.db, s[1]) end
end

---Prints what tty processes wrote to io:stdout (plain) and io:stderr (red) since
---the cursors (payload text or data), then moves the cursors.
function Session:tty_drain()
  if not self.tty_cursor then return self:tty_skip() end
  for _, s in ipairs(M.TTY_STREAMS) do
    local rows = self.db:messages(s[1], { limit = 1000 }) or {}
    for i = #rows, 1, -1 do
      local m = rows[i]
      if m.id > self.tty_cursor[s[1]] then
        self.tty_cursor[s[1]] = m.id
        local p = m.payload
        local text = type(p) == "table" and (p.text or p.data)
        if type(text) == "string" then
          if s[2] then self:eprint(text) else self:print(text) end
        end
      end
    end
  end
end

local task_seq = 0

---Runs fn() as a scheduler task on this process's loop until it returns or
---Ctrl-C stops the loop. A task left unfinished is abandoned: should it end
---later, during another command's loop, it does not stop that loop.
---@return boolean done, table|nil results (packed), string|nil err (fn raised)
function Session.run_task(_, fn)
  task_seq = task_seq + 1
  local me, done, res, err = task_seq, false, nil, nil
  core.sched.spawn(function()
    local r = table.pack(pcall(fn))
    if r[1] then res = table.pack(table.unpack(r, 2, r.n)) else err = tostring(r[2]) end
    done = true
    if task_seq == me then core.loop.stop() end
  end)
  if not done then core.term.run_loop() end
  task_seq = task_seq + 1
  return done, res, err
end

---Appends a command to the history (in memory and in the file store).
function Session:remember(line)
  line = line:gsub("\n", " "):match("^%s*(.-)%s*$") -- one line per entry, trimmed
  if not line:match("%S") or line == self.history[#self.history] then return end
  local h = self.history
  h[#h + 1] = line
  local first = math.max(1, #h - M.HISTORY_KEEP + 1)
  local content = table.concat(h, "\n", first) .. "\n"
  local ok, err = self.db:file_write(M.HISTORY_KEY, content, { source = "shell" })
  if not ok then self:eprint("history: " .. tostring(err)) end
end

---Finds a command by name or alias.
function Session:command(name)
  local c = self.commands[name]
  if c and c.alias_of then c = self.commands[c.alias_of] end
  return c
end

local function report(self, e)
  if type(e) == "table" and e.shell then
    self:eprint(e.shell)
  elseif type(e) == "table" and e.cli then -- from cogos.cli.args (usage errors, -h)
    if e.stdout then self:print(e.cli) return true end
    self:eprint(e.cli)
  else
    self:eprint("internal error: " .. tostring(e))
  end
  return false
end

---Runs one command line.
---@param line string
---@return boolean ok, string|nil "exit" when the session should end
function Session:run(line)
  line = line:match("^%s*(.-)%s*$")
  if line == "" or line:sub(1, 1) == "#" then return true end
  if line:sub(1, 1) == "=" then return self:lua(line:sub(2)) end
  local words, err, starts = parse.words(line)
  if not words then
    self:eprint("parse error: " .. err)
    return false
  end
  local cmd = self:command(words[1])
  if not cmd then
    self:eprint("Unknown command: " .. words[1] .. ". Type 'help' for available commands.")
    return false
  end
  local argv = { table.unpack(words, 2) }
  local ok, res = xpcall(cmd.fn, function(e)
    if type(e) == "table" then return e end
    return debug.traceback(tostring(e), 2)
  end, self, argv, { line = line, starts = starts })
  if not ok then return report(self, res) end
  if res == "exit" then return true, "exit" end
  return res ~= false
end

---Evaluates Lua source with the shell's capabilities and prints the results.
function Session:lua(src)
  self.evaluator = self.evaluator or require("cogos.shell.luaeval").new(self)
  return self.evaluator:eval(src)
end

return M
