-- cogos.cli.file — `cogos file list|get|create|load|history`.

local core = require "cogos.core"
local args = require "cogos.cli.args"
local out = require "cogos.cli.out"
local common = require "cogos.cli.common"

local open, ok_or_fail, array = common.open, common.ok_or_fail, common.array

local M = {}

M.list = { help = "list files", fn = function(argv, i, p)
  local o = args.parse(argv, i, { usage = p .. " [--prefix P] [--limit N] [--json]", max = 0,
    flags = { prefix = "string", limit = "integer", json = "bool" } })
  local db = open()
  local rows = db:file_list({ prefix = o.prefix, limit = o.limit })
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "key", "version", "size", "updated_at" })
end }

M.get = { help = "print a file's content", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " KEY [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local f = ok_or_fail(db:file_get(pos[1]))
  if o.json then return out.json(f) end
  io.stdout:write(f.content)
end }

M.create = { help = "write a file (a new version when it changed)", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " KEY CONTENT [--source S] [--json]  (CONTENT - reads stdin)",
    min = 2, max = 2, flags = { source = "string", json = "bool" } })
  local content = pos[2] == "-" and io.stdin:read("a") or pos[2]
  local db = open()
  local r = ok_or_fail(db:file_write(pos[1], content, { source = o.source or "human" }))
  if o.json then return out.json(r) end
  print(string.format("%s: version %d (%s)", r.key, r.version,
    r.created and "created" or r.changed and "updated" or "unchanged"))
end }

M.load = { help = "write every file of a folder", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " DIR [--prefix P] [--source S] [--json]", min = 1, max = 1,
    flags = { prefix = "string", source = "string", json = "bool" } })
  local st = core.sys.stat(pos[1])
  if not st or st.type ~= "dir" then args.fail("not a folder: " .. pos[1]) end
  local files = {}
  local function walk(dir, rel)
    local names = core.sys.listdir(dir) or {}
    table.sort(names)
    for _, n in ipairs(names) do
      if n:sub(1, 1) ~= "." then
        local path, r = dir .. "/" .. n, rel .. n
        local s = core.sys.stat(path)
        if s and s.type == "dir" then walk(path, r .. "/")
        elseif s and s.type == "file" then
          local f = assert(io.open(path, "rb"))
          files[#files + 1] = { key = (o.prefix or "") .. r, content = f:read("a") }
          f:close()
        end
      end
    end
  end
  walk(pos[1], "")
  local db = open()
  local counts = { created = 0, updated = 0, unchanged = 0 }
  db:begin()
  for _, f in ipairs(files) do
    local r = ok_or_fail(db:file_write(f.key, f.content, { source = o.source or "human" }))
    local k = r.created and "created" or r.changed and "updated" or "unchanged"
    counts[k] = counts[k] + 1
  end
  db:commit()
  if o.json then return out.json(counts) end
  print(string.format("%d created, %d updated, %d unchanged", counts.created, counts.updated, counts.unchanged))
end }

M.history = { help = "list a file's versions", fn = function(argv, i, p)
  local o, pos = args.parse(argv, i, { usage = p .. " KEY [--json]", min = 1, max = 1, flags = { json = "bool" } })
  local db = open()
  local rows = ok_or_fail(db:file_history(pos[1]))
  if o.json then return out.json(array(rows)) end
  out.table(rows, { "version", "is_active", "source", "run_id", "created_at" })
end }


return M
