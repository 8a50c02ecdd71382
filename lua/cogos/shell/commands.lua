-- cogos.shell.commands — the shell's command table: the general commands here,
-- the others from cogos.shell.files, cogos.shell.procs and cogos.shell.llm.
-- A command is {name, usage, help, fn(sh, argv, raw), aliases, complete}; fn
-- prints through sh, fails with sh:fail(msg) and returns "exit" to end the session.

local M = {}

local MODULES = { "cogos.shell.files", "cogos.shell.procs", "cogos.shell.llm" }

local general = {}

general[#general + 1] = { name = "help", usage = "help [COMMAND]",
  help = "list commands, or show one command's usage", complete = "command",
  fn = function(sh, argv)
    if argv[1] then
      local c = sh:command(argv[1])
      if not c then sh:fail("help: no command '" .. argv[1] .. "'") end
      sh:print("usage: " .. c.usage)
      sh:print("  " .. c.help)
      if c.aliases then sh:print("  aliases: " .. table.concat(c.aliases, ", ")) end
      return
    end
    local names = {}
    for name, c in pairs(sh.commands) do
      if not c.alias_of then names[#names + 1] = name end
    end
    table.sort(names)
    for _, n in ipairs(names) do
      sh:print(string.format("  %-8s %s", n, sh.commands[n].help))
    end
    sh:print("  =EXPR    evaluate Lua with the shell's capabilities (also: lua CODE)")
  end }

general[#general + 1] = { name = "clear", usage = "clear", help = "clear the screen",
  fn = function(sh) sh.write_out("\27[H\27[2J") end }

general[#general + 1] = { name = "history", usage = "history [N]",
  help = "the last N (50) commands, numbered",
  fn = function(sh, argv)
    local n = 50
    if argv[1] then
      n = math.tointeger(tonumber(argv[1]))
      if not n or n < 1 then sh:fail("history: N must be a positive integer, got '" .. argv[1] .. "'") end
    end
    local h = sh.history
    for i = math.max(1, #h - n + 1), #h do sh:print(string.format("%5d  %s", i, h[i])) end
  end }

general[#general + 1] = { name = "exit", aliases = { "quit" }, usage = "exit",
  help = "leave the shell", fn = function() return "exit" end }

general[#general + 1] = { name = "lua", usage = "lua CODE",
  help = "evaluate Lua with the shell's capabilities (like a line starting with =)",
  fn = function(sh, argv, raw)
    if #argv == 0 then sh:fail("usage: lua CODE") end
    local code = raw.line:sub(raw.starts[2])
    return sh:lua(code)
  end }

---The command table: name -> command, and alias -> {alias_of = name}.
function M.table()
  local t = {}
  local function add(list)
    for _, c in ipairs(list) do
      t[c.name] = c
      for _, a in ipairs(c.aliases or {}) do t[a] = { alias_of = c.name } end
    end
  end
  add(general)
  for _, m in ipairs(MODULES) do add(require(m)) end
  return t
end

return M
