-- End-to-end harness: drives the real cogos binary in a throw-away home and
-- working folder, and starts helper servers (the fake LLM) on loopback.

local core = require "cogos.core"
local json = core.json

local M = {}

M.bin = os.getenv("COGOS_BIN") or (core.root .. "/build/cogos")

local function shquote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.shquote = shquote

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
M.slurp = slurp

---A fresh world: its own COGOS_HOME and working folder.
function M.world(env)
  local dir = io.popen("mktemp -d /tmp/cogos-e2e.XXXXXX"):read("l")
  local w = { dir = dir, home = dir .. "/home", cwd = dir .. "/cwd", env = env or {}, pids = {} }
  assert(core.sys.mkdir_p(w.home))
  assert(core.sys.mkdir_p(w.cwd))
  return setmetatable(w, { __index = M })
end

function M:envstr(extra)
  local parts = { "COGOS_HOME=" .. shquote(self.home), "COGTAINER=", "COGENT=",
    "ANTHROPIC_API_KEY=", "OPENAI_API_KEY=", "ANTHROPIC_BASE_URL=", "OPENAI_BASE_URL=" }
  for k, v in pairs(self.env) do parts[#parts + 1] = k .. "=" .. shquote(v) end
  for k, v in pairs(extra or {}) do parts[#parts + 1] = k .. "=" .. shquote(v) end
  return table.concat(parts, " ")
end

---Runs `cogos ARGS` (program name by the first word: cogos, cogtainer, cogent).
---@return integer code, string stdout, string stderr
function M:run(cmdline, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local prog, rest = cmdline:match("^(%S+)%s*(.*)$")
  local exe = prog == "cogos" and M.bin or (M.bin:gsub("cogos$", prog))
  local stdin = opts.stdin and ("printf %s " .. shquote(opts.stdin) .. " | ") or ""
  local cmd = string.format("cd %s && %senv %s %s %s >%s 2>%s", shquote(self.cwd), stdin,
    self:envstr(opts.env), exe, rest, out, err)
  local _, _, code = os.execute(cmd)
  local o, e = slurp(out), slurp(err)
  os.remove(out)
  os.remove(err)
  return code, o, e
end

---Runs a command that must succeed; returns stdout (decoded when --json).
function M:ok(cmdline, opts)
  local code, out, err = self:run(cmdline, opts)
  if code ~= 0 then error(string.format("`%s` exited %d: %s%s", cmdline, code, err, out), 2) end
  if cmdline:find("%-%-json") then
    local v, jerr = json.decode(out)
    if v == nil then error("`" .. cmdline .. "` printed bad JSON: " .. jerr .. "\n" .. out, 2) end
    return v
  end
  return out
end

---Polls fn until it returns a truthy value or timeout_ms passes.
function M.wait(fn, timeout_ms, what)
  local deadline = core.sys.monotonic_ms() + (timeout_ms or 10000)
  repeat
    local v = fn()
    if v then return v end
    core.sys.sleep_ms(20)
  until core.sys.monotonic_ms() > deadline
  error("timed out waiting for " .. (what or "condition"), 2)
end

---Creates a local cogtainer and cogent and starts the node in the background.
function M:boot(create_flags)
  self:ok("cogtainer create dev --type local " .. (create_flags or ""))
  self:ok("cogent create demo")
  self:ok("cogos start")
  self.started = true
end

---Runs, newest first; only those of process `name` when given.
function M:runs(name)
  return self:ok("cogos run list --limit 1000 --json" .. (name and (" --process " .. name) or ""))
end

---Waits until n runs (of process `name`, when given) have ended; returns them, newest first.
function M:wait_runs(n, name, timeout_ms)
  return M.wait(function()
    local runs = self:runs(name)
    local done = 0
    for _, r in ipairs(runs) do
      if r.status ~= "running" then done = done + 1 end
    end
    return done >= n and runs
  end, timeout_ms or 15000, n .. " finished run(s)" .. (name and (" of " .. name) or ""))
end

---Starts the fake LLM server; returns its base URL.
function M:fake_llm(script, key)
  local script_path = self.dir .. "/script.json"
  local f = assert(io.open(script_path, "wb"))
  f:write(assert(json.encode(script)))
  f:close()
  self.llm_log = self.dir .. "/llm.jsonl"
  local pidfile = self.dir .. "/llm.pid"
  local portfile = self.dir .. "/llm.port"
  local cmd = string.format("node %s/tests/e2e/fake_llm.js --script %s --log %s %s >%s 2>%s.err & echo $! >%s",
    core.root, shquote(script_path), shquote(self.llm_log), key and ("--key " .. shquote(key)) or "",
    shquote(portfile), shquote(portfile), shquote(pidfile))
  os.execute(cmd)
  self.pids[#self.pids + 1] = tonumber(M.wait(function()
    local s = slurp(pidfile)
    return s:match("%d+")
  end, 5000, "fake LLM pid"))
  local port = M.wait(function() return slurp(portfile):match("listening (%d+)") end, 10000, "fake LLM to listen")
  return "http://127.0.0.1:" .. port
end

function M:llm_requests()
  local list = {}
  for line in slurp(self.llm_log):gmatch("[^\n]+") do list[#list + 1] = assert(json.decode(line)) end
  return list
end

---Stops the node (if started) and helper servers, removes the world.
function M:close()
  if self.started then self:run("cogos stop") end
  for _, pid in ipairs(self.pids) do core.sys.kill(pid, 15) end
  if os.getenv("COGOS_KEEP_E2E") == nil then core.sys.rm_rf(self.dir) end
end

return M
