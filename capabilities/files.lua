-- files — the versioned file store by key. Scope: prefix (keys must start with
-- it; "." and ".." segments refused), ops (read, write, search, edit, append).

local kit = require "cogos.capkit"

return {
  name = "files",
  description = "Versioned files by key. Every changed write makes a new version.",
  methods = {
    read = {
      op = "read", target = 1,
      doc = "read(key [, {offset=, limit=}]) -> {key, content, version, total_lines} | nil, err"
        .. "   (offset: 0-based line, negative from the end)",
      fn = function(ctx, key, opts)
        if type(key) ~= "string" then return nil, "read: key must be a string" end
        return kit.read(ctx.db, key, opts)
      end,
    },
    write = {
      op = "write", target = 1,
      doc = "write(key, content) -> {key, version, created, changed} | nil, err",
      fn = function(ctx, key, content)
        if type(key) ~= "string" or key == "" then return nil, "write: key must be a non-empty string" end
        return kit.write(ctx, key, content)
      end,
    },
    append = {
      op = "append", target = 1,
      doc = "append(key, text) -> {key, version, changed} | nil, err   (creates the file if missing)",
      fn = function(ctx, key, text)
        if type(key) ~= "string" or key == "" then return nil, "append: key must be a non-empty string" end
        return kit.append(ctx, key, text)
      end,
    },
    edit = {
      op = "edit", target = 1,
      doc = "edit(key, old, new [, replace_all]) -> {key, version, replacements} | nil, err"
        .. "   (old must occur exactly once unless replace_all)",
      fn = function(ctx, key, old, new, replace_all)
        if type(key) ~= "string" then return nil, "edit: key must be a string" end
        return kit.edit(ctx, key, old, new, replace_all)
      end,
    },
    search = {
      op = "search", target = 1,
      doc = "search(prefix [, limit=50]) -> {{key, version}, ...} keys starting with prefix",
      fn = function(ctx, prefix, limit)
        if type(prefix) ~= "string" then return nil, "search: prefix must be a string" end
        local rows = ctx.db:file_list({ prefix = prefix, limit = math.min(math.tointeger(limit) or 50, 500) })
        local out = {}
        for i, r in ipairs(rows) do out[i] = { key = r.key, version = r.version } end
        return out
      end,
    },
  },
}
