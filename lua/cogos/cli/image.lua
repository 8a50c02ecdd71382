-- cogos.cli.image — `cogos snapshot NAME`: the cogent as a bootable image.

local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local M = {}

M.snapshot = { help = "write the cogent's configuration as an image", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " NAME [--dir DIR] [--json]", min = 1, max = 1,
    flags = { dir = "string", json = "bool" } })
  if not pos[1]:match("^[%w][%w_.-]*$") then args.fail("invalid image name '" .. pos[1] .. "'") end
  local db = common.open()
  local dir = o.dir or ("images/" .. pos[1])
  local counts = common.ok_or_fail(require("cogos.snapshot").write(db, dir))
  if o.json then return out.json({ dir = dir, counts = counts }) end
  print(string.format("snapshot %s: %d processes, %d files, %d capabilities, %d channels -> %s", pos[1],
    counts.processes, counts.files, counts.capabilities, counts.channels, dir))
end }

return M
