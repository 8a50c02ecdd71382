-- cogos.cli.cogos — `cogos`: operate the selected cogent. Each command group
-- lives in its own module, cogos.cli.<group>, a table of subcommands.

local args = require "cogos.cli.args"

local GROUPS = {
  process = "processes: list|get|create|run|disable",
  file = "files: list|get|create|load|history",
  channel = "channels: send|list|read",
  handler = "handlers: list|add|remove",
  run = "runs: list|show",
  capability = "capability types: list|get",
}

local commands = {}
for name, help in pairs(GROUPS) do
  commands[name] = { help = help, fn = function(argv, i, prefix)
    return args.subcommand(prefix, argv, i, require("cogos.cli." .. name))
  end }
end
for name, cmd in pairs(require "cogos.cli.node") do commands[name] = cmd end

return function(argv, first, prog)
  return args.subcommand(prog, argv, first, commands)
end
