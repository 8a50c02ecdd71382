-- Runs Lua specs inside the cogos host (so `cogos.core` exists), busted-style:
--   cogos lua tests/spec/run.lua [FILE_spec.lua ...]
-- Specs use describe/it/before_each/after_each and assert.* below.
-- Ends with "N passed, N failed".

package.path = "tests/spec/?.lua;tests/e2e/?.lua;" .. package.path

local passed, failed = 0, 0
local befores, afters, path = {}, {}, {}

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts, n = {}, 0
  for k, x in pairs(v) do
    n = n + 1
    if n > 20 then parts[#parts + 1] = "..." break end
    parts[#parts + 1] = tostring(k) .. "=" .. fmt(x)
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function same(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not same(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fail(msg, level) error(msg, (level or 1) + 2) end

assert = setmetatable({
  equal = function(want, got, msg)
    if want ~= got then fail((msg or "not equal") .. ": expected " .. fmt(want) .. ", got " .. fmt(got)) end
  end,
  same = function(want, got, msg)
    if not same(want, got) then fail((msg or "not same") .. ": expected " .. fmt(want) .. ", got " .. fmt(got)) end
  end,
  truthy = function(v, msg) if not v then fail(msg or ("expected truthy, got " .. fmt(v))) end end,
  falsy = function(v, msg) if v then fail(msg or ("expected falsy, got " .. fmt(v))) end end,
  is_nil = function(v, msg) if v ~= nil then fail(msg or ("expected nil, got " .. fmt(v))) end end,
  match = function(pattern, s, msg)
    if type(s) ~= "string" or not s:find(pattern) then
      fail((msg or "no match") .. ": " .. fmt(pattern) .. " not found in " .. fmt(s))
    end
  end,
  error = function(fn, pattern)
    local ok, err = pcall(fn)
    if ok then fail("expected an error") end
    if pattern and not tostring(err):find(pattern) then
      fail("error " .. fmt(tostring(err)) .. " does not match " .. fmt(pattern))
    end
    return err
  end,
}, { __call = function(_, ...)
  local v, msg = ...
  if not v then fail(msg or "assertion failed") end
  return ...
end })

function describe(name, fn)
  path[#path + 1] = name
  local nb, na = #befores, #afters
  fn()
  for i = #befores, nb + 1, -1 do befores[i] = nil end
  for i = #afters, na + 1, -1 do afters[i] = nil end
  path[#path] = nil
end

function before_each(fn) befores[#befores + 1] = fn end
function after_each(fn) afters[#afters + 1] = fn end

function it(name, fn)
  local full = table.concat(path, " ") .. " " .. name
  local ok, err = xpcall(function()
    for _, b in ipairs(befores) do b() end
    fn()
  end, debug.traceback)
  for _, a in ipairs(afters) do
    local aok, aerr = pcall(a)
    if ok and not aok then ok, err = false, aerr end
  end
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    io.stderr:write("FAIL ", full, "\n  ", tostring(err):gsub("\n", "\n  "), "\n")
  end
end

local files = { ... }
if #files == 0 then
  local p = io.popen("ls tests/spec/*_spec.lua 2>/dev/null")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
end
for _, f in ipairs(files) do
  local chunk, err = loadfile(f)
  if not chunk then
    failed = failed + 1
    io.stderr:write("FAIL ", f, ": ", err, "\n")
  else
    local ok, lerr = xpcall(chunk, debug.traceback)
    if not ok then
      failed = failed + 1
      io.stderr:write("FAIL ", f, ": ", lerr, "\n")
    end
  end
end
print(string.format("%d passed, %d failed", passed, failed))
return failed == 0 and 0 or 1
