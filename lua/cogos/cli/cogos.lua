-- cogos.cli.cogos — `cogos`: operate the selected cogent. A command group lives
-- in its own module, cogos.cli.<group>, returning a table of subcommands; a
-- module of COMMAND_MODULES returns top-level commands (start, stop, ...).

local args = require "cogos.cli.args"

local GROUPS = {
  process = "processes: list|get|create|run|disable",
  file = "files: list|get|create|load|history",
  channel = "channels: send|list|read",
  handler = "handlers: list|add|remove",
  run = "runs: list|show|tail",
  capability = "capability types: list|get",
  cron = "cron rules: list|add|enable|disable|delete",
}

local COMMAND_MODULES = { "cogos.cli.node", "cogos.cli.image", "cogos.cli.shell" }

local commands = {}
for name, help in pairs(GROUPS) do
  commands[name] = { help = help, fn = function(argv, i, prefix)
    return args.subcommand(prefix, argv, i, require("cogos.cli." .. name))
  end }
end
for _, mod in ipairs(COMMAND_MODULES) do
  for name, cmd in pairs(require(mod)) do commands[name] = cmd end
end

-- Reached through main.lua; listed here so `cogos help` shows them.
commands.cogtainer = { help = "manage cogtainers (also the `cogtainer` program)", fn = function(argv, i)
  return require("cogos.cli.cogtainer")(argv, i, "cogos cogtainer")
end }
commands.cogent = { help = "manage cogents (also the `cogent` program)", fn = function(argv, i)
  return require("cogos.cli.cogent")(argv, i, "cogos cogent")
end }
commands.lua = { help = "run a Lua script inside the host: cogos lua SCRIPT [ARGS]", fn = function()
  args.usage_error("usage: cogos lua SCRIPT [ARGS...]")
end }

return function(argv, first, prog)
  return args.subcommand(prog, argv, first, commands)
end
