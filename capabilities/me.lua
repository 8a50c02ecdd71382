-- me — the calling process itself: its output streams and scratch files under
-- /proc/<process id>/ (kept across runs) and /proc/<process id>/runs/<run id>/.

local function scratch_key(ctx, scope, name)
  if type(name) ~= "string" or name == "" or name:find("%.%.") then
    return nil, "name must be a non-empty string without '..'"
  end
  local base = "/proc/" .. ctx.process.id .. "/"
  if scope == "run" then
    if not ctx.run then return nil, "no current run" end
    base = base .. "runs/" .. ctx.run.id .. "/"
  end
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

return {
  name = "me",
  description = "This process: identity, output streams, and scratch files.",
  methods = {
    info = { op = "info", doc = "info() -> {process, process_id, run_id}",
      fn = function(ctx)
        return { process = ctx.process.name, process_id = ctx.process.id, run_id = ctx.run and ctx.run.id }
      end },
    stdout = { op = "stdout", doc = "stdout(text) -> true   (to channel io:stdout:<process>)",
      fn = function(ctx, text) return publish(ctx, "stdout", text) end },
    stderr = { op = "stderr", doc = "stderr(text) -> true   (to channel io:stderr:<process>)",
      fn = function(ctx, text) return publish(ctx, "stderr", text) end },
    read = { op = "read", doc = "read(name) -> content | nil, err   (process scratch file)", fn = reader("process") },
    write = { op = "write", doc = "write(name, content) -> {key, version, changed}   (process scratch file)",
      fn = writer("process") },
    run_read = { op = "read", doc = "run_read(name) -> content | nil, err   (this run's scratch file)",
      fn = reader("run") },
    run_write = { op = "write", doc = "run_write(name, content) -> {key, version, changed}   (this run's scratch file)",
      fn = writer("run") },
  },
}
