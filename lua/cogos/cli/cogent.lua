-- cogos.cli.cogent — `cogent create|list|status|select|destroy`.

local core = require "cogos.core"
local config = require "cogos.config"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"

local function parse(argv, i, usage, min)
  return args.parse(argv, i, { usage = usage .. " [--cogtainer NAME] [--json]", min = min or 0,
    max = 1, flags = { cogtainer = "string", json = "bool" } })
end

local function describe(t)
  local pid = config.node_pid(t)
  return { name = t.cogent, cogtainer = t.cogtainer, dir = t.dir, db = t.db_path,
    log = t.log_path, running = pid ~= nil, pid = pid }
end

local commands = {}

commands.create = { help = "create a cogent", fn = function(argv, i, p)
  local o, pos = parse(argv, i, p .. " NAME", 1)
  local name = pos[1]
  if not name:match("^[%w][%w_.-]*$") then
    args.fail("invalid cogent name '" .. name .. "' (letters, digits, _ . -)")
  end
  local tname, entry = config.cogtainer(o.cogtainer)
  local t = config.paths(tname, entry, name)
  if core.sys.stat(t.db_path) then
    args.fail("cogent '" .. name .. "' already exists in cogtainer '" .. tname .. "'")
  end
  local ok, err = core.sys.mkdir_p(t.dir .. "/logs")
  if not ok then args.fail(err) end
  local db, derr = core.store.open(t.db_path)
  if not db then args.fail(derr) end
  db:migrate()
  db:close()
  if o.json then return out.json(describe(t)) end
  print("created cogent " .. name .. " in cogtainer " .. tname)
end }

commands.list = { help = "list cogents", fn = function(argv, i, p)
  local o = parse(argv, i, p)
  local tname, entry = config.cogtainer(o.cogtainer)
  local rows = setmetatable({}, core.json.array_mt)
  for _, c in ipairs(config.cogents(entry)) do rows[#rows + 1] = describe(config.paths(tname, entry, c)) end
  if o.json then return out.json(rows) end
  out.table(rows, { "name", "cogtainer", "running", "pid", "dir" })
end }

commands.status = { help = "show one cogent", fn = function(argv, i, p)
  local o, pos = parse(argv, i, p .. " [NAME]")
  local t = config.target(o.cogtainer, pos[1])
  local d = describe(t)
  if o.json then return out.json(d) end
  out.record(d, { "name", "cogtainer", "running", "pid", "dir", "log" })
end }

commands.select = { help = "remember a cogent in ./.env", fn = function(argv, i, p)
  local o, pos = parse(argv, i, p .. " [NAME]")
  local t = config.target(o.cogtainer, pos[1])
  config.write_env({ COGTAINER = t.cogtainer, COGENT = t.cogent })
  print("selected cogent " .. t.cogent .. " in cogtainer " .. t.cogtainer .. " (in ./.env)")
end }

commands.destroy = { help = "delete a cogent and its data", fn = function(argv, i, p)
  local o, pos = parse(argv, i, p .. " NAME", 1)
  local t = config.target(o.cogtainer, pos[1])
  local pid = config.node_pid(t)
  if pid then args.fail("cogent '" .. t.cogent .. "' is running (pid " .. pid .. "); stop it first") end
  local ok, err = core.sys.rm_rf(t.dir)
  if not ok then args.fail(err) end
  print("destroyed cogent " .. t.cogent)
end }

return function(argv, first, prog)
  return args.subcommand(prog, argv, first, commands)
end
