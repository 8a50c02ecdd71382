-- me — the calling process itself: identity, its stdio streams, and files
-- under /proc/<process id>/ (kept across runs) and /proc/<process id>/runs/<run id>/.
-- No scope keys of its own: everything it reaches belongs to the caller.

local caps = require "cogos.caps"

local function proc_base(ctx) return "/proc/" .. ctx.process.id .. "/" end

local function run_base(ctx)
  if not ctx.run then return nil, "no current run" end
  return proc_base(ctx) .. "runs/" .. ctx.run.id .. "/"
end

local function scratch_key(ctx, scope, name)
  if type(name) ~= "string" or name == "" or name:find("%.%.") or name:sub(1, 1) == "/" then
    return nil, "name must be a non-empty relative string without '..'"
  end
  local base, err = proc_base(ctx), nil
  if scope == "run" then base, err = run_base(ctx) end
  if not base then return nil, err end
  return base .. name
end

local function publish(ctx, stream, text)
  if type(text) ~= "string" then return nil, stream .. ": text must be a string" end
  local r, err = ctx.db:send("io:" .. stream .. ":" .. ctx.process.name, { text = text, process = ctx.process.name },
    { sender_process = ctx.process.id, sender_run_id = ctx.run and ctx.run.id })
  if not r then return nil, err end
  return true
end

local function reader(scope)
  return function(ctx, name)
    local key, err = scratch_key(ctx, scope, name)
    if not key then return nil, err end
    local f, ferr = ctx.db:file_get(key)
    if not f then return nil, ferr end
    return f.content
  end
end

local function writer(scope)
  return function(ctx, name, content)
    local key, err = scratch_key(ctx, scope, name)
    if not key then return nil, err end
    if type(content) ~= "string" then return nil, "content must be a string" end
    local r, werr = ctx.db:file_write(key, content, { source = "process", run_id = ctx.run and ctx.run.id })
    if not r then return nil, werr end
    return { key = r.key, version = r.version, changed = r.changed }
  end
end

local function file_handle(name)
  return function(ctx)
    local key = proc_base(ctx) .. name
    return caps.grant(ctx, "file", { key = key, ops = { "read", "write", "append", "edit" } }, "me." .. name)
  end
end

return {
  name = "me",
  description = "This process: identity, output streams, and its own files.",
  methods = {
    info = { op = "info", doc = "info() -> {process, process_id, run_id}",
      fn = function(ctx)
        return { process = ctx.process.name, process_id = ctx.process.id, run_id = ctx.run and ctx.run.id }
      end },
    stdout = { op = "stdout", doc = "stdout(text) -> true   (to channel io:stdout:<process>)",
      fn = function(ctx, text) return publish(ctx, "stdout", text) end },
    stderr = { op = "stderr", doc = "stderr(text) -> true   (to channel io:stderr:<process>)",
      fn = function(ctx, text) return publish(ctx, "stderr", text) end },
    stdin = { op = "stdin", doc = "stdin([limit=1]) -> {text, ...} the newest texts sent to io:stdin:<process>",
      fn = function(ctx, limit)
        local n = math.tointeger(limit or 1)
        if not n or n < 1 then return nil, "stdin: limit must be an integer >= 1" end
        local rows = ctx.db:messages("io:stdin:" .. ctx.process.name, { limit = math.min(n, 100) }) or {}
        local out = {}
        for _, m in ipairs(rows) do
          local p = m.payload
          out[#out + 1] = type(p) == "table" and (p.text or p) or p
        end
        return out
      end },
    process = { op = "process", doc = "process() -> a folder handle (fs_dir) on /proc/<process id>/",
      fn = function(ctx)
        return caps.grant(ctx, "fs_dir", { prefix = proc_base(ctx) }, "me.process")
      end },
    run = { op = "run", doc = "run() -> a folder handle (fs_dir) on /proc/<process id>/runs/<run id>/",
      fn = function(ctx)
        local base, err = run_base(ctx)
        if not base then return nil, err end
        return caps.grant(ctx, "fs_dir", { prefix = base }, "me.run")
      end },
    tmp = { op = "tmp", doc = "tmp() -> a file handle on /proc/<process id>/tmp", fn = file_handle("tmp") },
    scratch = { op = "scratch", doc = "scratch() -> a file handle on /proc/<process id>/scratch",
      fn = file_handle("scratch") },
    log = { op = "log", doc = "log() -> a file handle on /proc/<process id>/log", fn = file_handle("log") },
    read = { op = "read", doc = "read(name) -> content | nil, err   (process file)", fn = reader("process") },
    write = { op = "write", doc = "write(name, content) -> {key, version, changed}   (process file)",
      fn = writer("process") },
    run_read = { op = "read", doc = "run_read(name) -> content | nil, err   (this run's file)",
      fn = reader("run") },
    run_write = { op = "write", doc = "run_write(name, content) -> {key, version, changed}   (this run's file)",
      fn = writer("run") },
  },
}
