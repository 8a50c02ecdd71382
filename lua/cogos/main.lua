-- cogos.main — entry point: dispatch on the program name (cogos, cogtainer, cogent).
return function(prog, argv)
  if argv[1] == "lua" then
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
  io.stderr:write(prog, ": not implemented yet\n")
  return 1
end
