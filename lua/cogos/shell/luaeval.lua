-- cogos.shell.luaeval — Lua typed at the shell, run in a sandbox holding every
-- enabled capability (unscoped), printed the way the Lua REPL prints: a line is
-- first tried as `return <line>`, then as statements; a line cut short (a
-- syntax error at <eof>) asks for more.

local core = require "cogos.core"
local caps = require "cogos.caps"

local M = {}

M.PROCESS = "shell" -- the process the shell's capability calls act as
M.LIMITS = { memory = 64 * 1024 * 1024, instructions = 200000000, deadline_ms = 24 * 3600 * 1000,
  output = 256 * 1024 }

---What src is: "expr", "stmt", "incomplete", or "error" with the message.
---Only compiles (never runs) src in the host.
---@param src string
---@return string kind, string|nil err
function M.classify(src)
  if load("return " .. src, "=stdin", "t") then return "expr" end
  local f, err = load(src, "=stdin", "t")
  if f then return "stmt" end
  if err:find("<eof>$") then return "incomplete" end
  return "error", err
end

-- Prints the results of an expression inside the sandbox: tables as JSON.
local function expr_chunk(src)
  return "local __r = table.pack((function(...) return " .. src .. "\nend)(...))\n"
    .. "local __s = {}\n"
    .. "for __i = 1, __r.n do\n"
    .. "  local __v = __r[__i]\n"
    .. "  local __j = type(__v) == 'table' and json.encode(__v) or nil\n"
    .. "  __s[__i] = __j or tostring(__v)\n"
    .. "end\n"
    .. "if __r.n > 0 then print(table.concat(__s, '\\t', 1, __r.n)) end\n"
end

local Eval = {}
Eval.__index = Eval

---An evaluator for session sh (its sandbox is made on first use).
function M.new(sh)
  return setmetatable({ sh = sh }, Eval)
end

function Eval:grants()
  local list = {}
  for _, cap in ipairs(self.sh.db:capability_list()) do
    if cap.enabled ~= false then
      local mod, err = caps.load(cap.handler or cap.name)
      if not mod then error({ shell = "lua: capability '" .. cap.name .. "': " .. err }, 0) end
      list[#list + 1] = { name = cap.name, type = cap.name, config = {}, module = mod,
        description = cap.description or mod.description }
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

---The process row capability calls act as (created disabled on first use).
function Eval:process()
  local db = self.sh.db
  local p = db:process_get(M.PROCESS)
  if p then return p end
  return db:process_upsert({ name = M.PROCESS, mode = "one_shot", executor = "lua", status = "disabled",
    content = "-- the identity of `cogos shell` Lua evaluation; it never runs" })
end

function Eval:sandbox()
  if self.sb then return self.sb end
  local db = self.sh.db
  local grants = self:grants()
  self.sb = core.sandbox.new({
    memory = M.LIMITS.memory, instructions = M.LIMITS.instructions,
    deadline_ms = M.LIMITS.deadline_ms, output = M.LIMITS.output,
    grants = caps.sandbox_grants(grants),
    dispatch = caps.dispatcher(grants, { db = db, process = self:process(), cogent_dir = self.sh.cogent_dir,
      executor = "lua", run_state = {} }),
  })
  return self.sb
end

local RESET = { ["instruction budget exhausted"] = true, ["deadline exceeded"] = true,
  ["memory limit exceeded"] = true }

---Runs code in the sandbox inside a scheduler task, so capability calls may do
---I/O; Ctrl-C stops it (the Lua state is then reset).
---@return string|nil output, string|nil err, boolean interrupted
function Eval:run(code)
  local sb = self:sandbox()
  local done, res, err = self.sh:run_task(function() return sb:run(code, { chunkname = "=stdin" }) end)
  if not done then
    self.sb = nil -- still running inside its task: abandoned, it ends at its budget
    return nil, "interrupted", true
  end
  if err then error(err, 0) end
  return res[1], res[2], false
end

---Evaluates src and prints its output and results.
---@return boolean ok
function Eval:eval(src)
  local sh = self.sh
  local kind, err = M.classify(src)
  if kind == "incomplete" then kind, err = "error", select(2, load(src, "=stdin", "t")) end
  if kind == "error" then
    sh:eprint(err)
    return false
  end
  local output, rerr, interrupted = self:run(kind == "expr" and expr_chunk(src) or src)
  if interrupted then
    sh:eprint("interrupted (the Lua state was reset)")
    return false
  end
  if output and output ~= "" then
    if rerr then
      sh.write_err(sh:paint(output:sub(-1) == "\n" and output:sub(1, -2) or output, "red") .. "\n")
    else
      sh.write_out(output:sub(-1) == "\n" and output or output .. "\n")
    end
  end
  if rerr and RESET[rerr] then
    self.sb:close()
    self.sb = nil
    sh:eprint("(the Lua state was reset: " .. rerr .. ")")
  end
  return rerr == nil
end

return M
