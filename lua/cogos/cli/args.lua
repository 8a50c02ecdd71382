-- cogos.cli.args — flag parsing and the CLI's error convention.
--
-- A command declares its flags; parse() returns the options and positionals or
-- raises a usage error (exit 2). Commands raise M.fail(msg) for a failure (exit 1).

local M = {}

---Raises a failure: one line on stderr, exit 1.
---@param msg string
function M.fail(msg) error({ cli = msg, code = 1 }, 0) end

---Raises a usage error: the message and the usage line, exit 2.
function M.usage_error(msg, usage)
  error({ cli = msg .. (usage and ("\nusage: " .. usage) or ""), code = 2 }, 0)
end

local function convert(kind, name, v, usage)
  if kind == "number" then
    local n = tonumber(v)
    if not n then M.usage_error("--" .. name .. " needs a number, got '" .. v .. "'", usage) end
    return n
  elseif kind == "integer" then
    local n = math.tointeger(tonumber(v))
    if not n then M.usage_error("--" .. name .. " needs an integer, got '" .. v .. "'", usage) end
    return n
  end
  return v
end

---@param argv string[] arguments
---@param first integer index of the first argument that belongs to this command
---@param spec table {usage=, flags={name="bool"|"string"|"number"|"integer"|"list"}, aliases={},
---  min=, max=, choices={flag={...}}}
---@return table opts, string[] positionals
function M.parse(argv, first, spec)
  local opts, pos = {}, {}
  local flags, usage = spec.flags or {}, spec.usage
  local i = first
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    elseif a == "-h" or a == "--help" then
      error({ cli = "usage: " .. (usage or "?"), code = 0, stdout = true }, 0)
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local name, value = a:match("^%-%-?([^=]+)=(.*)$")
      name = name or a:match("^%-%-?(.+)$")
      name = (spec.aliases or {})[name] or name
      local kind = flags[name]
      if not kind then M.usage_error("unknown flag " .. a, usage) end
      if kind == "bool" then
        if value then M.usage_error("--" .. name .. " takes no value", usage) end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then M.usage_error("--" .. name .. " needs a value", usage) end
        end
        local choices = spec.choices and spec.choices[name]
        if choices then
          local ok = false
          for _, c in ipairs(choices) do ok = ok or c == value end
          if not ok then
            M.usage_error("--" .. name .. " must be one of " .. table.concat(choices, ", ") ..
              ", got '" .. value .. "'", usage)
          end
        end
        if kind == "list" then
          opts[name] = opts[name] or {}
          table.insert(opts[name], value)
        else
          opts[name] = convert(kind, name, value, usage)
        end
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if #pos < (spec.min or 0) then M.usage_error("missing argument", usage) end
  if spec.max and #pos > spec.max then M.usage_error("unexpected argument '" .. pos[spec.max + 1] .. "'", usage) end
  return opts, pos
end

-- Dispatches argv[first] to a table of subcommands {name = {fn=, help=}}.
function M.subcommand(prog, argv, first, commands)
  local name = argv[first]
  local names = {}
  for k in pairs(commands) do names[#names + 1] = k end
  table.sort(names)
  local usage = prog .. " " .. table.concat(names, "|") .. " ..."
  if name == nil or name == "-h" or name == "--help" or name == "help" then
    local lines = { "usage: " .. usage, "" }
    for _, k in ipairs(names) do
      lines[#lines + 1] = string.format("  %-12s %s", k, commands[k].help or "")
    end
    if name == nil then error({ cli = table.concat(lines, "\n"), code = 2 }, 0) end
    error({ cli = table.concat(lines, "\n"), code = 0, stdout = true }, 0)
  end
  local cmd = commands[name]
  if not cmd then M.usage_error(prog .. ": unknown command '" .. name .. "'", usage) end
  return cmd.fn(argv, first + 1, prog .. " " .. name)
end

return M
