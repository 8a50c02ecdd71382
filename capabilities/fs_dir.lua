-- fs_dir — a folder of the file store: keys under a prefix. Scope: prefix
-- (keys are relative to it: "a.md" means "<prefix>a.md"), read_only (sticky:
-- handles from get() can only read), ops (list, get, grep, glob, tree).

local caps = require "cogos.caps"
local kit = require "cogos.capkit"

local MAX_SCAN = 5000 -- keys looked at by grep, glob and tree

local function base(ctx, what, prefix)
  if prefix == nil or prefix == "" then return ctx.grant.config.prefix or "" end
  if type(prefix) ~= "string" then return nil, what .. ": prefix must be a string" end
  return kit.under(ctx, what, prefix)
end

local function keys_under(ctx, prefix, limit)
  local rows = ctx.db:file_list({ prefix = prefix, limit = limit or MAX_SCAN })
  return rows
end

local function count(v, default, max, what)
  if v == nil then return default end
  local n = math.tointeger(v)
  if not n or n < 0 then return nil, what .. " must be an integer >= 0" end
  return math.min(n, max)
end

local function tree(ctx, prefix, depth)
  local p, err = base(ctx, "tree", prefix)
  if not p then return nil, err end
  local d, derr = count(depth, 3, 20, "depth")
  if not d then return nil, derr end
  local root = {}
  for _, r in ipairs(keys_under(ctx, p, 500)) do
    local node, level = root, 0
    for seg, slash in r.key:sub(#p + 1):gmatch("([^/]*)(/?)") do
      if seg == "" and slash == "" then break end
      level = level + 1
      if level > d then break end
      node[seg .. slash] = node[seg .. slash] or {}
      node = node[seg .. slash]
    end
  end
  local lines = { p == "" and "." or p }
  local function render(node, indent)
    local names = {}
    for k in pairs(node) do names[#names + 1] = k end
    table.sort(names)
    for i, name in ipairs(names) do
      local last = i == #names
      lines[#lines + 1] = indent .. (last and "└── " or "├── ") .. name
      render(node[name], indent .. (last and "    " or "│   "))
    end
  end
  render(root, "")
  return table.concat(lines, "\n")
end

return {
  name = "fs_dir",
  description = "A folder of the file store; keys are relative to its prefix.",
  methods = {
    list = {
      op = "list", doc = "list([prefix [, limit=50]]) -> {{key, version, size}, ...}",
      fn = function(ctx, prefix, limit)
        local p, err = base(ctx, "list", prefix)
        if not p then return nil, err end
        local n, lerr = count(limit, 50, 1000, "limit")
        if not n then return nil, lerr end
        local out = {}
        for i, r in ipairs(keys_under(ctx, p, n)) do out[i] = { key = r.key, version = r.version, size = r.size } end
        return out
      end,
    },
    get = {
      op = "get", doc = "get(key) -> a file handle (read/head/tail/write/append/edit; read only when the folder is)",
      fn = function(ctx, key)
        local k, err = kit.under(ctx, "get", key)
        if not k then return nil, err end
        local ops = { "read", "write", "append", "edit" }
        if ctx.grant.config.read_only then ops = { "read" } end
        return caps.grant(ctx, "file", { key = k, ops = ops }, k)
      end,
    },
    grep = {
      op = "grep",
      doc = "grep(pattern [, prefix [, limit=20 [, context=0]]]) -> {{key, matches = {{line, text, before, after}}}}"
        .. "   (Lua pattern; line is 0-based)",
      fn = function(ctx, pattern, prefix, limit, context)
        if type(pattern) ~= "string" or pattern == "" then return nil, "grep: pattern must be a non-empty string" end
        local okp, perr = pcall(string.find, "", pattern)
        if not okp then return nil, "grep: bad pattern: " .. tostring(perr) end
        local p, err = base(ctx, "grep", prefix)
        if not p then return nil, err end
        local n, lerr = count(limit, 20, 1000, "limit")
        if not n then return nil, lerr end
        local c, cerr = count(context, 0, 20, "context")
        if not c then return nil, cerr end
        local out, total = {}, 0
        for _, r in ipairs(keys_under(ctx, p)) do
          if total >= n then break end
          local f = ctx.db:file_get(r.key)
          if f then
            local lines, matches = kit.split_lines(f.content or ""), {}
            for i, line in ipairs(lines) do
              if total >= n then break end
              if line:find(pattern) then
                total = total + 1
                matches[#matches + 1] = { line = i - 1, text = line,
                  before = { table.unpack(lines, math.max(1, i - c), i - 1) },
                  after = { table.unpack(lines, i + 1, math.min(#lines, i + c)) } }
              end
            end
            if #matches > 0 then out[#out + 1] = { key = r.key, matches = matches } end
          end
        end
        return out
      end,
    },
    glob = {
      op = "glob", doc = "glob(pattern [, limit=50]) -> {key, ...}   (* one segment, ** any depth, ? one character)",
      fn = function(ctx, pattern, limit)
        if type(pattern) ~= "string" or pattern == "" then return nil, "glob: pattern must be a non-empty string" end
        if #pattern > 200 then return nil, "glob: pattern is longer than 200 characters" end
        local n, lerr = count(limit, 50, 1000, "limit")
        if not n then return nil, lerr end
        local p = ctx.grant.config.prefix or ""
        local out = {}
        for _, r in ipairs(keys_under(ctx, p)) do
          if #out >= n then break end
          if kit.glob_match(pattern, r.key:sub(#p + 1)) or kit.glob_match(pattern, r.key) then out[#out + 1] = r.key end
        end
        return out
      end,
    },
    tree = {
      op = "tree", doc = "tree([prefix [, depth=3]]) -> text: the keys as a tree",
      fn = function(ctx, prefix, depth) return tree(ctx, prefix, depth) end,
    },
  },
}
