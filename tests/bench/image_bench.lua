-- Boot time of the stock image into a fresh cogent: open + migrate + apply
-- (median and worst of 20, each on a new database file).

local core = require "cogos.core"
local image = require "cogos.image"

local now = core.sys.monotonic_ms
local dir = io.popen("mktemp -d /tmp/cogos-bench.XXXXXX"):read("l")
local img = assert(image.resolve("cogos"))
local total, apply = {}, {}
for i = 1, 20 do
  local t0 = now()
  local db = assert(core.store.open(dir .. "/c" .. i .. ".db"))
  db:migrate()
  local t1 = now()
  image.apply(db, img)
  local t2 = now()
  db:close()
  total[#total + 1], apply[#apply + 1] = t2 - t0, t2 - t1
end
core.sys.rm_rf(dir)
table.sort(total)
table.sort(apply)
io.write(string.format("%-46s median %7.2f ms   worst %7.2f ms (apply alone: median %.2f ms)\n",
  "boot the stock image into a fresh cogent", total[10], total[20], apply[10]))
