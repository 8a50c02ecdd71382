-- cogos.cli.node — `cogos start|stop|status`: the node of the selected cogent;
-- `cogos reboot|reload|wipe`: epochs (reference §7.6). These three change what a
-- node holds in memory (the epoch, parked runs), so they refuse while the node
-- runs: stop it, run them, start it again.

local core = require "cogos.core"
local config = require "cogos.config"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open, array, ok_or_fail = common.open, common.array, common.ok_or_fail

local M = {}

M.start = { help = "boot an image and run the node", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " [IMAGE] [--clean] [--foreground] [--llm-base-url URL]",
    max = 1, flags = { clean = "bool", foreground = "bool", ["llm-base-url"] = "string" } })
  local t = config.target()
  local llm = {}
  for k, v in pairs(t.entry.llm or {}) do llm[k] = v end
  llm.base_url = o["llm-base-url"] or llm.base_url
  require("cogos.node").start(t, { image = pos[1], clean = o.clean, foreground = o.foreground, llm = llm })
end }

M.stop = { help = "stop the node", fn = function(argv, i, p)
  args.parse(argv, i, { usage = p, max = 0 })
  local t = config.target()
  local pid = require("cogos.node").stop(t)
  print("stopped cogent " .. t.cogent .. " (pid " .. pid .. ")")
end }

M.status = { help = "show the cogent: node, processes, counts", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--json]", max = 0, flags = { json = "bool" } })
  local db, t = open()
  local pid = config.node_pid(t)
  local procs = db:process_list({})
  local s = { cogent = t.cogent, cogtainer = t.cogtainer, running = pid ~= nil, pid = pid,
    processes = array(procs), files = #db:file_list({ limit = 100000 }),
    capabilities = #db:capability_list(), channels = #db:channel_list() }
  if o.json then return out.json(s) end
  print(string.format("cogent %s (cogtainer %s): %s", t.cogent, t.cogtainer,
    pid and ("running, pid " .. pid) or "stopped"))
  print(string.format("%d processes, %d files, %d capabilities, %d channels", #procs, s.files,
    s.capabilities, s.channels))
  out.table(procs, { "name", "status", "mode", "executor" })
end }


-- {============ epochs

-- The selected cogent, stopped, after a yes from -y or from the terminal.
local function confirmed(o, question)
  local t = config.target()
  local pid = config.node_pid(t)
  if pid then
    args.fail("cogent '" .. t.cogent .. "' is running (pid " .. pid .. "); stop it first with `cogos stop`")
  end
  if not o.y then
    if not core.sys.isatty(0) then
      args.fail("refusing without confirmation: pass -y (standard input is not a terminal)")
    end
    io.stdout:write(question:format(t.cogent), " [y/N] ")
    io.stdout:flush()
    local answer = io.stdin:read("l")
    if not answer or not answer:match("^%s*[yY]") then args.fail("cancelled") end
  end
  return t
end

local function apply(db, name)
  local image = require "cogos.image"
  local dir, err = image.resolve(name or "cogos")
  if not dir then args.fail(err) end
  local ok, counts = pcall(image.apply, db, dir)
  if not ok then args.fail("boot failed: " .. tostring(counts)) end
  return counts
end

M.reboot = { help = "new epoch: disable init's tree, re-apply the image (files, channels stay)",
  fn = function(argv, i, p)
    local o, pos = args.parse(argv, i, { usage = p .. " [IMAGE] [-y] [--json]", max = 1,
      flags = { y = "bool", json = "bool" } })
    local t = confirmed(o, "Reboot cogent %s (a new epoch; its processes stop)?")
    local db = open()
    db:begin()
    local ok, r = pcall(function()
      local res = ok_or_fail(db:reboot())
      res.image = apply(db, pos[1])
      return res
    end)
    if not ok then
      db:rollback()
      error(r, 0)
    end
    db:commit()
    if o.json then return out.json(r) end
    print(string.format("rebooted cogent %s: epoch %s", t.cogent, tostring(r.epoch)))
  end }

M.reload = { help = "clear the configuration (--full: everything) and apply an image",
  fn = function(argv, i, p)
    local o, pos = args.parse(argv, i, { usage = p .. " [IMAGE] [--full] [-y] [--json]", max = 1,
      flags = { full = "bool", y = "bool", json = "bool" } })
    local t = confirmed(o, o.full and "Reload cogent %s from scratch (deletes all its data)?"
      or "Reload cogent %s (its configuration is replaced by the image)?")
    local db = open()
    db:begin()
    local ok, r = pcall(function()
      if o.full then
        db:wipe()
      else
        ok_or_fail(db:clear_config())
        -- the image's files are replaced too; mnt/disk/, /proc/ and the rest stay
        for _, prefix in ipairs({ "mnt/boot/", "mnt/repo/" }) do
          for _, f in ipairs(db:file_list({ prefix = prefix, limit = 1000000 })) do
            ok_or_fail(db:file_delete(f.key))
          end
        end
      end
      return apply(db, pos[1])
    end)
    if not ok then
      db:rollback()
      error(r, 0)
    end
    db:commit()
    if o.json then return out.json(r) end
    print(string.format("reloaded cogent %s%s: %d capabilities, %d processes, %d files", t.cogent,
      o.full and " (full)" or "", r.capabilities, r.processes, r.files))
  end }

M.wipe = { help = "delete everything in the cogent (epoch back to 0)", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [-y]", max = 0, flags = { y = "bool" } })
  local t = confirmed(o, "Wipe cogent %s (deletes all its data)?")
  open():wipe()
  print("wiped cogent " .. t.cogent)
end }

-- }============

return M
