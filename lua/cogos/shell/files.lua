-- cogos.shell.files — the file-store commands: pwd ls cd cat less rm mkdir tree edit.

local paths = require "cogos.shell.paths"

local TREE_MAX = 1000

local function one_arg(sh, argv, usage)
  if #argv ~= 1 then sh:fail("usage: " .. usage) end
  return paths.resolve(sh.cwd, argv[1])
end

local function content_of(sh, cmd, arg)
  local key = paths.resolve(sh.cwd, arg)
  local f = key ~= "" and sh.db:file_get(key)
  if not f then sh:fail(cmd .. ": not found: " .. arg) end
  return f.content, key
end

local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

local C = {}

C[#C + 1] = { name = "pwd", usage = "pwd", help = "print the working directory",
  fn = function(sh) sh:print("/" .. sh.cwd) end }

C[#C + 1] = { name = "ls", usage = "ls [PATH]", help = "list a directory: directories, then files",
  complete = "dir",
  fn = function(sh, argv)
    if #argv > 1 then sh:fail("usage: ls [PATH]") end
    local key = paths.resolve(sh.cwd, argv[1])
    if key ~= "" and not paths.is_dir(sh.db, key) then
      if sh.db:file_get(key) then return sh:print(key:match("[^/]+$")) end
      sh:fail("ls: no such file or directory: " .. argv[1])
    end
    local dirs, files = paths.children(sh.db, key)
    if #dirs + #files == 0 then return sh:print("(empty)") end
    for _, d in ipairs(dirs) do sh:print(sh:paint(d .. "/", "blue")) end
    for _, f in ipairs(files) do sh:print(f) end
  end }

C[#C + 1] = { name = "cd", usage = "cd [PATH]", help = "change the working directory",
  complete = "dir",
  fn = function(sh, argv)
    if #argv > 1 then sh:fail("usage: cd [PATH]") end
    local key = argv[1] and paths.resolve(sh.cwd, argv[1]) or "" -- no argument: the root
    if not paths.is_dir(sh.db, key) then sh:fail("cd: no such directory: " .. argv[1]) end
    sh.cwd = key
  end }

C[#C + 1] = { name = "cat", usage = "cat FILE", help = "print a file", complete = "path",
  fn = function(sh, argv)
    if #argv ~= 1 then sh:fail("usage: cat FILE") end
    local content = content_of(sh, "cat", argv[1])
    sh.write_out(content:sub(-1) == "\n" and content or content .. "\n")
  end }

C[#C + 1] = { name = "less", usage = "less FILE", help = "page through a file with $PAGER (less)",
  complete = "path",
  fn = function(sh, argv)
    if #argv ~= 1 then sh:fail("usage: less FILE") end
    local content = content_of(sh, "less", argv[1])
    local pager = os.getenv("PAGER")
    if pager == nil or pager == "" then pager = "less" end
    local p = io.popen(pager, "w")
    if not p then sh:fail("less: cannot run " .. pager) end
    p:write(content)
    local ok, _, code = p:close()
    if not ok then sh:fail("less: " .. pager .. " exited with " .. tostring(code)) end
  end }

C[#C + 1] = { name = "rm", usage = "rm FILE", help = "delete a file (every version)",
  complete = "path",
  fn = function(sh, argv)
    local key = one_arg(sh, argv, "rm FILE")
    if key == "" or not sh.db:file_delete(key) then sh:fail("rm: not found: " .. argv[1]) end
    sh:print("Removed: " .. key)
  end }

C[#C + 1] = { name = "mkdir", usage = "mkdir", help = "(directories are implicit)",
  fn = function(sh)
    sh:print("Directories are implicit: they exist while a file key lies under them. "
      .. "Create a file instead, e.g. `edit dir/name.md`.")
  end }

C[#C + 1] = { name = "tree", usage = "tree [PATH]", help = "every file under a directory, as a tree",
  complete = "dir",
  fn = function(sh, argv)
    if #argv > 1 then sh:fail("usage: tree [PATH]") end
    local key = paths.resolve(sh.cwd, argv[1])
    if not paths.is_dir(sh.db, key) then sh:fail("tree: no such directory: " .. argv[1]) end
    local rows = paths.files_under(sh.db, key, TREE_MAX + 1)
    local prefix = paths.prefix(key)
    sh:print(sh:paint("/" .. prefix, "blue"))
    local open = {} -- directories already printed, by path
    for i, f in ipairs(rows) do
      if i > TREE_MAX then
        sh:print("... (more than " .. TREE_MAX .. " files)")
        break
      end
      local parts = {}
      for p in f.key:sub(#prefix + 1):gmatch("[^/]+") do parts[#parts + 1] = p end
      local dir = ""
      for d = 1, #parts - 1 do
        dir = dir .. parts[d] .. "/"
        if not open[dir] then
          open[dir] = true
          sh:print(string.rep("  ", d) .. sh:paint(parts[d] .. "/", "blue"))
        end
      end
      sh:print(string.rep("  ", #parts) .. parts[#parts])
    end
    sh:print(string.format("%d file%s", math.min(#rows, TREE_MAX), #rows == 1 and "" or "s"))
  end }

C[#C + 1] = { name = "edit", aliases = { "vim", "vi" }, usage = "edit FILE",
  help = "edit a file with $EDITOR (vim); saves a new version when it changed", complete = "path",
  fn = function(sh, argv)
    local key = one_arg(sh, argv, "edit FILE")
    if key == "" then sh:fail("edit: a file path is needed") end
    local f = sh.db:file_get(key)
    local old = f and f.content or ""
    local tmp = os.tmpname()
    local ext = key:match("%.[%w_]+$") or ""
    local path = tmp .. ext
    if ext ~= "" then os.rename(tmp, path) end
    local fh = assert(io.open(path, "wb"))
    fh:write(old)
    fh:close()
    local editor = os.getenv("EDITOR")
    if editor == nil or editor == "" then editor = "vim" end
    local ok, _, code = os.execute(editor .. " " .. shquote(path))
    local new = slurp(path)
    os.remove(path)
    if not ok then sh:fail("edit: " .. editor .. " exited with " .. tostring(code) .. "; nothing saved") end
    if new == old and f then return sh:print("(no changes)") end
    if new == "" and not f then return sh:print("(no changes)") end
    local r, err = sh.db:file_write(key, new, { source = "shell" })
    if not r then sh:fail("edit: " .. err) end
    sh:print((f and "Updated: " or "Created: ") .. key)
  end }


return C
