-- files — the versioned file store. Scope: prefix (keys must start with it),
-- ops (read, write, search).

return {
  name = "files",
  description = "Versioned files by key. Every changed write makes a new version.",
  methods = {
    read = {
      op = "read", target = 1,
      doc = "read(key) -> {key, content, version} | nil, err",
      fn = function(ctx, key)
        if type(key) ~= "string" then return nil, "read: key must be a string" end
        local f, err = ctx.db:file_get(key)
        if not f then return nil, err end
        return { key = f.key, content = f.content, version = f.version }
      end,
    },
    write = {
      op = "write", target = 1,
      doc = "write(key, content) -> {key, version, created, changed} | nil, err",
      fn = function(ctx, key, content)
        if type(key) ~= "string" or key == "" then return nil, "write: key must be a non-empty string" end
        if type(content) ~= "string" then return nil, "write: content must be a string" end
        local r, err = ctx.db:file_write(key, content, { source = "agent", run_id = ctx.run and ctx.run.id })
        if not r then return nil, err end
        return { key = r.key, version = r.version, created = r.created, changed = r.changed }
      end,
    },
    search = {
      op = "search", target = 1,
      doc = "search(prefix [, limit=50]) -> {{key, version}, ...} keys starting with prefix",
      fn = function(ctx, prefix, limit)
        if type(prefix) ~= "string" then return nil, "search: prefix must be a string" end
        local rows = ctx.db:file_list({ prefix = prefix, limit = math.min(tonumber(limit) or 50, 500) })
        local out = {}
        for i, r in ipairs(rows) do out[i] = { key = r.key, version = r.version } end
        return out
      end,
    },
  },
}
