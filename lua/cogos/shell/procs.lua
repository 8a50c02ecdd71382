-- cogos.shell.procs — processes, channels, capabilities and runs:
-- ps top kill spawn attach ch cap runs run.

local core = require "cogos.core"
local args = require "cogos.cli.args"

local json = core.json

local TOP_MS = 2000
local ATTACH_MS = 1000

local STATUS_ORDER = { runnable = 1, running = 2, blocked = 3, waiting = 4, suspended = 5,
  completed = 6, disabled = 7 }

---Prints rows as an aligned table; cols are {key, TITLE} pairs.
local function table_out(sh, rows, cols)
  if #rows == 0 then return sh:print("(none)") end
  local widths, cells = {}, {}
  for i, c in ipairs(cols) do widths[i] = #c[2] end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, c in ipairs(cols) do
      local v = row[c[1]]
      local s = (v == nil or v == json.null) and "-" or (type(v) == "table" and json.encode(v) or tostring(v))
      s = s:gsub("\n", " ")
      if #s > 60 then s = s:sub(1, 57) .. "..." end
      cells[r][i] = s
      if #s > widths[i] then widths[i] = #s end
    end
  end
  local function line(vals)
    local parts = {}
    for i, v in ipairs(vals) do parts[i] = i == #vals and v or v .. string.rep(" ", widths[i] - #v) end
    sh:print(table.concat(parts, "  "))
  end
  local header = {}
  for i, c in ipairs(cols) do header[i] = c[2] end
  line(header)
  for _, c in ipairs(cells) do line(c) end
end

local function ps_rows(db, all)
  local rows = {}
  for _, p in ipairs(db:process_list({})) do
    if all or p.status ~= "disabled" then
      rows[#rows + 1] = { name = p.name, status = p.status, mode = p.mode, executor = p.executor,
        tty = p.tty and "yes" or "-", priority = p.priority }
    end
  end
  table.sort(rows, function(a, b)
    local x, y = STATUS_ORDER[a.status] or 9, STATUS_ORDER[b.status] or 9
    if x ~= y then return x < y end
    return a.name < b.name
  end)
  return rows
end

local PS_COLS = { { "name", "NAME" }, { "status", "STATUS" }, { "mode", "MODE" },
  { "executor", "EXECUTOR" }, { "tty", "TTY" }, { "priority", "PRI" } }

local function process(sh, cmd, name)
  local p = name and sh.db:process_get(name)
  if not p then sh:fail(cmd .. ": no such process: " .. tostring(name)) end
  return p
end

local function parse(_, argv, spec)
  return args.parse(argv, 1, spec)
end

local newest_id = require("cogos.shell.session").newest_id

-- Messages newer than id, oldest first.
local function messages_after(db, channel, id)
  local rows = db:messages(channel, { limit = 1000 }) or {}
  local out = {}
  for i = #rows, 1, -1 do
    if rows[i].id > id then out[#out + 1] = rows[i] end
  end
  return out
end

local function payload_text(p)
  if type(p) ~= "table" then return tostring(p) end
  if type(p.text) == "string" then return p.text end
  if type(p.data) == "string" then return p.data end
  return json.encode(p)
end

local C = {}

C[#C + 1] = { name = "ps", usage = "ps [--all|-a]",
  help = "processes (disabled ones only with --all), runnable first",
  fn = function(sh, argv)
    local o = parse(sh, argv, { usage = "ps [--all|-a]", max = 0, flags = { all = "bool" },
      aliases = { a = "all" } })
    table_out(sh, ps_rows(sh.db, o.all), PS_COLS)
  end }

C[#C + 1] = { name = "top", usage = "top", help = "ps, refreshed every 2 s until Ctrl-C",
  fn = function(sh, argv)
    parse(sh, argv, { usage = "top", max = 0 })
    local term = core.term
    term.interrupts(true)
    repeat
      sh.write_out("\27[H\27[2J")
      sh:print(sh:paint(sh.cogent .. " — " .. core.sys.iso_now() .. "  (Ctrl-C to stop)", "bold"))
      table_out(sh, ps_rows(sh.db, false), PS_COLS)
    until term.wait(TOP_MS, false) == "interrupt"
    sh:print("")
    if not sh.interactive then term.interrupts(false) end
  end }

C[#C + 1] = { name = "kill", usage = "kill [-9|-HUP] NAME", complete = "process",
  help = "stop a process (disable it, with its children); -HUP restarts it (runnable)",
  fn = function(sh, argv)
    local sig = "TERM"
    if argv[1] == "-9" or argv[1] == "-KILL" then sig, argv = "KILL", { table.unpack(argv, 2) }
    elseif argv[1] == "-HUP" then sig, argv = "HUP", { table.unpack(argv, 2) }
    elseif argv[1] and argv[1]:sub(1, 1) == "-" then sh:fail("kill: unknown signal " .. argv[1]) end
    if #argv ~= 1 then sh:fail("usage: kill [-9|-HUP] NAME") end
    local p = process(sh, "kill", argv[1])
    if sig == "HUP" then
      sh.db:process_set_status(p.id, "runnable")
      sh:poke()
      return sh:print("Restarted: " .. p.name)
    end
    sh.db:process_disable(p.id)
    sh:print("Killed: " .. p.name)
  end }

local SPAWN_USAGE = "spawn NAME [--content S] [--mode daemon|one_shot] [--executor llm|lua] "
  .. "[--priority P] [--model M] [--tty]"

C[#C + 1] = { name = "spawn", usage = SPAWN_USAGE,
  help = "create or update a runnable process (no capabilities granted)",
  fn = function(sh, argv)
    local o, pos = parse(sh, argv, { usage = SPAWN_USAGE, min = 1, max = 1,
      flags = { content = "string", mode = "string", executor = "string", priority = "number",
        model = "string", tty = "bool" },
      choices = { mode = { "daemon", "one_shot" }, executor = { "llm", "lua" } } })
    local p = sh.db:process_upsert({ name = pos[1], content = o.content, mode = o.mode,
      executor = o.executor, priority = o.priority, model = o.model, tty = o.tty or nil,
      status = "runnable" })
    sh:poke()
    sh:print(string.format("Spawned: %s (%s, %s)", p.name, p.mode, p.status))
  end }

C[#C + 1] = { name = "attach", usage = "attach [-i] NAME", complete = "process",
  help = "follow a process's stdout/stderr until Ctrl-C; -i sends typed lines to its stdin",
  fn = function(sh, argv)
    local o, pos = parse(sh, argv, { usage = "attach [-i] NAME", min = 1, max = 1,
      flags = { i = "bool" } })
    local p = process(sh, "attach", pos[1])
    local streams = { { "io:stdout:" .. p.name, "stdout", "green" }, { "io:stderr:" .. p.name, "stderr", "red" } }
    for _, s in ipairs(streams) do s.cursor = newest_id(sh.db, s[1]) end
    local term = core.term
    sh:print(sh:paint("attached to " .. p.name .. " (Ctrl-C to detach)", "dim"))
    term.interrupts(true)
    local stdin_open = o.i
    while true do
      for _, s in ipairs(streams) do
        for _, m in ipairs(messages_after(sh.db, s[1], s.cursor)) do
          s.cursor = m.id
          sh:print(sh:paint(s[2], s[3]) .. " " .. payload_text(m.payload))
        end
      end
      local ev = term.wait(ATTACH_MS, stdin_open)
      if ev == "interrupt" then break end
      if ev == "input" then
        local line = io.stdin:read("l")
        if line == nil then
          stdin_open = false
        else
          local chan = "io:stdin:" .. p.name
          sh.db:channel_create(chan)
          local r, err = sh.db:send(chan, { text = line, source = "shell" })
          if not r then sh:eprint("attach: " .. err) else sh:poke() end
        end
      end
    end
    if not sh.interactive then term.interrupts(false) end
    sh.tty_printed = true -- a tty process's lines were shown here already
    sh:print(sh:paint("detached from " .. p.name, "dim"))
  end }

local CH_USAGE = "ch ls | ch send NAME JSON | ch log NAME [--limit N]"

C[#C + 1] = { name = "ch", usage = CH_USAGE, help = "channels: list, send a message, show the log",
  complete = "ch",
  fn = function(sh, argv, raw)
    local sub = argv[1]
    if sub == "ls" then
      if #argv > 1 then sh:fail("usage: " .. CH_USAGE) end
      local rows = {}
      for _, c in ipairs(sh.db:channel_list()) do
        rows[#rows + 1] = { name = c.name, type = c.channel_type, created_at = c.created_at }
      end
      table.sort(rows, function(a, b) return a.name < b.name end)
      return table_out(sh, rows, { { "name", "NAME" }, { "type", "TYPE" }, { "created_at", "CREATED" } })
    elseif sub == "send" then
      if #argv < 3 then sh:fail("usage: ch send NAME JSON") end
      -- The JSON is taken raw from the line, so that quoting cannot mangle it.
      local text = raw.line:sub(raw.starts[4])
      local v, err = json.decode(text)
      if v == nil and #argv == 3 then v, err = json.decode(argv[3]) end
      if v == nil then sh:fail("ch send: malformed JSON: " .. err) end
      if type(v) ~= "table" or json.is_array(v) then sh:fail("ch send: the payload must be a JSON object") end
      local _, created = sh.db:channel_create(argv[2])
      local r, serr = sh.db:send(argv[2], v)
      if not r then sh:fail("ch send: " .. serr) end
      sh:poke()
      return sh:print(string.format("Sent to %s%s: %s (%d deliveries)", argv[2],
        created and " (new channel)" or "", r.id, r.deliveries))
    elseif sub == "log" then
      local o, pos = parse(sh, { table.unpack(argv, 2) }, { usage = "ch log NAME [--limit N]", min = 1,
        max = 1, flags = { limit = "integer" } })
      local rows, err = sh.db:messages(pos[1], { limit = o.limit or 20 })
      if not rows then sh:fail("ch log: " .. err) end
      if #rows == 0 then return sh:print("(no messages)") end
      for _, m in ipairs(rows) do sh:print("[" .. m.created_at .. "] " .. json.encode(m.payload)) end
      return
    end
    sh:fail("usage: " .. CH_USAGE)
  end }

local CAP_USAGE = "cap ls | cap enable NAME | cap disable NAME"

C[#C + 1] = { name = "cap", usage = CAP_USAGE, help = "capability types: list, enable, disable",
  complete = "cap",
  fn = function(sh, argv)
    local sub = argv[1]
    if sub == "ls" and #argv == 1 then
      local rows = sh.db:capability_list()
      table.sort(rows, function(a, b) return a.name < b.name end)
      for _, r in ipairs(rows) do r.enabled_s = r.enabled == false and "no" or "yes" end
      return table_out(sh, rows, { { "name", "NAME" }, { "enabled_s", "ENABLED" },
        { "description", "DESCRIPTION" } })
    elseif (sub == "enable" or sub == "disable") and #argv == 2 then
      local c = sh.db:capability_get(argv[2])
      if not c then sh:fail("cap " .. sub .. ": no such capability: " .. argv[2]) end
      sh.db:capability_upsert({ name = c.name, enabled = sub == "enable" })
      return sh:print((sub == "enable" and "Enabled: " or "Disabled: ") .. c.name)
    end
    sh:fail("usage: " .. CAP_USAGE)
  end }

local function duration(ms)
  if type(ms) ~= "number" then return "-" end
  if ms < 1000 then return string.format("%dms", ms) end
  return string.format("%.1fs", ms / 1000)
end

C[#C + 1] = { name = "runs", usage = "runs [--process NAME] [--limit N]", help = "recent runs, newest first",
  complete = "runs",
  fn = function(sh, argv)
    local o = parse(sh, argv, { usage = "runs [--process NAME] [--limit N]", max = 0,
      flags = { process = "string", limit = "integer" } })
    if o.process then process(sh, "runs", o.process) end
    local rows = sh.db:run_list({ process = o.process, limit = o.limit or 20 })
    local names, out = {}, {}
    for i, r in ipairs(rows) do
      if names[r.process] == nil then
        local p = sh.db:process_get(r.process)
        names[r.process] = p and p.name or r.process
      end
      out[i] = { id = r.id:sub(1, 8), process = names[r.process], status = r.status,
        tokens = string.format("%d/%d", r.tokens_in or 0, r.tokens_out or 0),
        duration = duration(r.duration_ms) }
    end
    table_out(sh, out, { { "id", "ID" }, { "process", "PROCESS" }, { "status", "STATUS" },
      { "tokens", "TOKENS IN/OUT" }, { "duration", "DURATION" } })
  end }

C[#C + 1] = { name = "run", usage = "run show ID", help = "one run, every field (ID or a unique prefix)",
  fn = function(sh, argv)
    if argv[1] ~= "show" or #argv ~= 2 then sh:fail("usage: run show ID") end
    local id = argv[2]
    local r = sh.db:run_get(id)
    if not r then
      local found = {}
      for _, x in ipairs(sh.db:run_list({ limit = 1000 })) do
        if x.id:sub(1, #id) == id then found[#found + 1] = x end
      end
      if #found > 1 then sh:fail("run show: '" .. id .. "' matches " .. #found .. " runs") end
      r = found[1]
      if not r then sh:fail("run show: no such run: " .. id) end
    end
    local keys = {}
    for k, v in pairs(r) do
      if v ~= json.null then keys[#keys + 1] = k end
    end
    table.sort(keys)
    local w = 0
    for _, k in ipairs(keys) do w = math.max(w, #k) end
    for _, k in ipairs(keys) do
      local v = r[k]
      sh:print(k .. ":" .. string.rep(" ", w - #k + 1) .. (type(v) == "table" and json.encode(v) or tostring(v)))
    end
  end }

return C
