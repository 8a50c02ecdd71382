-- cogos.main — entry point: one binary, three programs (cogos, cogtainer, cogent).
-- Failures print one line on stderr and exit 1; bad usage exits 2.

local function run_script(argv)
  local script = argv[2]
  if not script then
    io.stderr:write("usage: cogos lua SCRIPT [ARGS...]\n")
    return 2
  end
  local chunk, err = loadfile(script)
  if not chunk then
    io.stderr:write("cogos: ", err, "\n")
    return 1
  end
  _G.arg = { [0] = script, table.unpack(argv, 3) }
  local ok, res = xpcall(chunk, debug.traceback, table.unpack(argv, 3))
  if not ok then
    io.stderr:write(tostring(res), "\n")
    return 1
  end
  return math.type(res) == "integer" and res or 0
end

local programs = {
  cogtainer = "cogos.cli.cogtainer",
  cogent = "cogos.cli.cogent",
  cogos = "cogos.cli.cogos",
}

return function(prog, argv)
  if not programs[prog] then prog = "cogos" end
  local first = 1
  if prog == "cogos" then
    if argv[1] == "lua" then return run_script(argv) end
    if argv[1] == "cogtainer" or argv[1] == "cogent" then
      prog, first = argv[1], 2
    end
  end
  local ok, err = xpcall(function()
    return require(programs[prog])(argv, first, prog)
  end, function(e)
    if type(e) == "table" and e.cli then return e end
    return debug.traceback(tostring(e), 2)
  end)
  if ok then return 0 end
  if type(err) == "table" then
    local stream = err.stdout and io.stdout or io.stderr
    if err.stdout or err.cli:find("^usage:") then
      stream:write(err.cli, "\n")
    else
      stream:write(prog, ": ", err.cli, "\n")
    end
    return err.code or 1
  end
  io.stderr:write(prog, ": internal error: ", err, "\n")
  return 1
end
