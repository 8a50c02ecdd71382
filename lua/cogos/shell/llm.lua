-- cogos.shell.llm — talk to the model from the shell: llm, source, exec. Each
-- prompt becomes a one_shot process holding every enabled capability, run here
-- with the real executor on this process's loop, then disabled.

local core = require "cogos.core"
local executor = require "cogos.executor"
local args = require "cogos.cli.args"
local log = require "cogos.log"
local paths = require "cogos.shell.paths"

local M = {}

M.PRELUDE_KEY = "mnt/boot/cogos/includes/shell.md"
M.DRAIN_MS = 100

local function node_id()
  return "shell-" .. core.sys.uuid():sub(1, 8) .. "-" .. core.sys.getpid()
end

local newest_id = require("cogos.shell.session").newest_id

-- Prints what the run published on its stdout/stderr since the cursors;
-- returns whether something came on stderr.
local function drain(sh, streams)
  local errs = false
  for _, s in ipairs(streams) do
    local rows = sh.db:messages(s.channel, { limit = 1000 }) or {}
    for i = #rows, 1, -1 do
      local m = rows[i]
      if m.id > s.cursor then
        s.cursor = m.id
        local text = type(m.payload) == "table" and (m.payload.text or m.payload.data) or nil
        if type(text) == "string" then
          if s.err then sh:eprint(text) else sh:print(text) end
          errs = errs or s.err or false
        end
      end
    end
  end
  return errs
end

---Creates the process, runs it to its end in this process and disables it.
---@param sh table the session
---@param text string the prompt
---@param o table {name=, tty=, quiet=, verbose=}
---@return boolean ok
function M.run_prompt(sh, text, o)
  local db = sh.db
  local name = o.name
  if not name then
    name = "shell-" .. os.time()
    local n = 1
    while db:process_get(name) do
      n = n + 1
      name = "shell-" .. os.time() .. "-" .. n
    end
  end
  local prelude = db:file_get(M.PRELUDE_KEY) and ("@{" .. M.PRELUDE_KEY .. "}\n\n") or ""
  local id = node_id()
  local streams = { { channel = "io:stdout:" .. name }, { channel = "io:stderr:" .. name, err = true } }
  for _, s in ipairs(streams) do s.cursor = newest_id(db, s.channel) end
  local p, run
  -- One transaction: a running node never sees the process runnable and unclaimed.
  db:begin()
  local ok, err = pcall(function()
    local grants = {}
    for _, cap in ipairs(db:capability_list()) do
      if cap.enabled ~= false then grants[#grants + 1] = { capability = cap.name, name = cap.name } end
    end
    p = assert(db:process_upsert({ name = name, mode = "one_shot", executor = "llm", status = "runnable",
      tty = o.tty ~= false, content = prelude .. text, grants = grants }))
    run = db:dispatch(p.id, id)
    if not run then error("process '" .. name .. "' could not be dispatched", 0) end
  end)
  if not ok then
    db:rollback()
    sh:fail("llm: " .. tostring(err))
  end
  db:commit()
  local exec = executor.new({ db = db, llm = sh.llm, node_id = id, cogent_dir = sh.cogent_dir })
  local started = core.sys.monotonic_ms()
  local errs = false
  -- The node's log lines are the per-turn detail of -v; otherwise they stay quiet.
  local info = log.info
  if not o.verbose then log.info = function() end end
  local timer = not o.quiet and core.loop.timer(M.DRAIN_MS, M.DRAIN_MS, function()
    errs = drain(sh, streams) or errs
  end)
  local done = sh:run_task(function() exec:run(run) end)
  sh.tty_printed = true
  log.info = info
  if timer then timer:stop() end
  if not o.quiet then errs = drain(sh, streams) or errs end
  if not done then
    db:run_finish(run.id, { status = "failed", error = "interrupted from the shell",
      duration_ms = math.floor(core.sys.monotonic_ms() - started) })
  end
  db:process_disable(p.id)
  local r = db:run_get(run.id)
  if o.verbose then
    sh:print(sh:paint(string.format("process %s, run %s, model %s, status %s", name, r.id,
      tostring(r.model_version), r.status), "dim"))
  end
  sh:print(sh:paint(string.format("tokens: %d in, %d out (%dms)", r.tokens_in or 0, r.tokens_out or 0,
    r.duration_ms or 0), "dim"))
  if r.status ~= "completed" then
    if not errs then sh:eprint("error: " .. tostring(r.error)) end
    return false
  end
  return true
end

local function file_text(sh, cmd, path)
  local key = paths.resolve(sh.cwd, path)
  local f = key ~= "" and sh.db:file_get(key)
  if not f then sh:fail(cmd .. ": not found: " .. path) end
  return f.content, key
end

local LLM_USAGE = "llm [-f FILE] [-i] [-v] [TEXT...]"

local function read_prompt(sh)
  if sh.interactive then return core.term.readline("llm> ") end
  return io.stdin:read("l")
end

local C = {}

C[#C + 1] = { name = "llm", usage = LLM_USAGE, complete = "llm",
  help = "ask the model, with every enabled capability (-i: a conversation of prompts)",
  fn = function(sh, argv)
    local o, pos = args.parse(argv, 1, { usage = LLM_USAGE,
      flags = { f = "string", i = "bool", v = "bool" } })
    local text = table.concat(pos, " ")
    if o.f then text = file_text(sh, "llm", o.f) .. (text ~= "" and ("\n\n" .. text) or "") end
    local ok = true
    if text ~= "" then ok = M.run_prompt(sh, text, { verbose = o.v }) end
    if not o.i then
      if text == "" then sh:fail("usage: " .. LLM_USAGE) end
      return ok
    end
    while true do
      local line = read_prompt(sh)
      if line == nil then break end
      line = line and line:match("^%s*(.-)%s*$")
      if line == "/exit" or line == "exit" or line == "quit" then break end
      if line and line ~= "" then ok = M.run_prompt(sh, line, { verbose = o.v }) and ok end
    end
    return ok
  end }

C[#C + 1] = { name = "source", aliases = { "." }, usage = "source FILE [-v]", complete = "path",
  help = "send a file's content to the model as an llm prompt",
  fn = function(sh, argv)
    local o, pos = args.parse(argv, 1, { usage = "source FILE [-v]", min = 1, max = 1,
      flags = { v = "bool" } })
    return M.run_prompt(sh, (file_text(sh, "source", pos[1])), { verbose = o.v })
  end }

local EXEC_USAGE = "exec PATH [--name N] [--no-tty] [--no-attach] [TEXT...]"

C[#C + 1] = { name = "exec", usage = EXEC_USAGE, complete = "path",
  help = "run a file as a one_shot process named after it, to completion",
  fn = function(sh, argv)
    local o, pos = args.parse(argv, 1, { usage = EXEC_USAGE, min = 1,
      flags = { name = "string", ["no-tty"] = "bool", ["no-attach"] = "bool" } })
    local content, key = file_text(sh, "exec", pos[1])
    local extra = table.concat({ table.unpack(pos, 2) }, " ")
    if extra ~= "" then content = content .. "\n\n" .. extra end
    local name = o.name or key:match("([^/]+)$"):gsub("%.[^.]*$", "")
    -- Never take over a live process that merely shares the file's name.
    local old = sh.db:process_get(name)
    if old and not (old.mode == "one_shot" and (old.status == "disabled" or old.status == "completed")) then
      sh:fail("exec: process '" .. name .. "' exists (" .. old.mode .. ", " .. old.status .. "); choose --name")
    end
    return M.run_prompt(sh, content, { name = name, tty = not o["no-tty"], quiet = o["no-attach"] })
  end }


return C
