-- cogos.shell.paths — file-store keys as a file system: the working directory is a
-- key prefix ("" is the root), paths are relative or absolute with . and ..,
-- and directories exist only as prefixes of keys.

local M = {}

---Resolves path against cwd into a key (no leading or trailing "/"; "" = root).
---@param cwd string the current key prefix ("" or "a/b")
---@param path string|nil
---@return string key
function M.resolve(cwd, path)
  path = path or ""
  local parts = {}
  if path:sub(1, 1) ~= "/" then
    for p in cwd:gmatch("[^/]+") do parts[#parts + 1] = p end
  end
  for p in path:gmatch("[^/]+") do
    if p == ".." then
      parts[#parts] = nil
    elseif p ~= "." then
      parts[#parts + 1] = p
    end
  end
  return table.concat(parts, "/")
end

---The key prefix that lists the directory `key` ("" for the root).
function M.prefix(key)
  return key == "" and "" or key .. "/"
end

---Every file under directory `key`, up to limit (sorted by key).
---@return table[] rows {key, version, updated_at, size}
function M.files_under(db, key, limit)
  return db:file_list({ prefix = M.prefix(key), limit = limit })
end

---Whether `key` names a directory: some file key starts with key .. "/".
function M.is_dir(db, key)
  if key == "" then return true end
  return #db:file_list({ prefix = key .. "/", limit = 1 }) > 0
end

---The immediate children of directory `key`.
---@return string[] dirs (without "/"), string[] files (names), both sorted
function M.children(db, key)
  local prefix = M.prefix(key)
  local dirs, files, seen = {}, {}, {}
  for _, f in ipairs(db:file_list({ prefix = prefix })) do
    local rest = f.key:sub(#prefix + 1)
    local dir = rest:match("^([^/]+)/")
    if dir then
      if not seen[dir] then
        seen[dir] = true
        dirs[#dirs + 1] = dir
      end
    else
      files[#files + 1] = rest
    end
  end
  table.sort(dirs)
  table.sort(files)
  return dirs, files
end

return M
