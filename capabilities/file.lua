-- file — one file of the store (fs_dir.get and me return these handles).
-- Scope: key (the file; fixed once set), ops (read, write, append, edit).

local kit = require "cogos.capkit"

local function key_of(ctx)
  local key = ctx.grant.config.key
  if type(key) ~= "string" then return nil, "this file grant has no key in its scope" end
  return key
end

local function with_key(fn)
  return function(ctx, ...)
    local key, err = key_of(ctx)
    if not key then return nil, err end
    return fn(ctx, key, ...)
  end
end

return {
  name = "file",
  description = "One file of the versioned store.",
  methods = {
    key = { op = "read", doc = "key() -> the file's key", fn = with_key(function(_, key) return key end) },
    read = {
      op = "read",
      doc = "read([{offset=, limit=}]) -> {key, content, version, total_lines} | nil, err",
      fn = with_key(function(ctx, key, opts) return kit.read(ctx.db, key, opts) end),
    },
    head = {
      op = "read", doc = "head([n=20]) -> the first n lines",
      fn = with_key(function(ctx, key, n) return kit.lines(ctx.db, key, n, false) end),
    },
    tail = {
      op = "read", doc = "tail([n=20]) -> the last n lines",
      fn = with_key(function(ctx, key, n) return kit.lines(ctx.db, key, n, true) end),
    },
    write = {
      op = "write", doc = "write(content) -> {key, version, created, changed} | nil, err",
      fn = with_key(function(ctx, key, content) return kit.write(ctx, key, content) end),
    },
    append = {
      op = "append", doc = "append(text) -> {key, version, changed} | nil, err",
      fn = with_key(function(ctx, key, text) return kit.append(ctx, key, text) end),
    },
    edit = {
      op = "edit", doc = "edit(old, new [, replace_all]) -> {key, version, replacements} | nil, err",
      fn = with_key(function(ctx, key, old, new, all) return kit.edit(ctx, key, old, new, all) end),
    },
  },
}
