-- make bench: runs every tests/bench/*_bench.lua (figures printed, never asserted).
local core = require "cogos.core"
local names = {}
for _, n in ipairs(core.sys.listdir(core.root .. "/tests/bench") or {}) do
  if n:match("_bench%.lua$") then names[#names + 1] = n end
end
table.sort(names)
for _, n in ipairs(names) do
  local path = core.root .. "/tests/bench/" .. n
  io.write("== ", n, "\n")
  io.flush()
  local ok = os.execute(string.format("%q lua %q", core.sys.exe(), path))
  if not ok then io.write("(", n, " failed)\n") end
end
