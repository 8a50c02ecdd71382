-- resources — the cogent's resources (pools and consumables that gate
-- dispatch) with what is used and what remains. No scope keys.

return {
  name = "resources",
  description = "Resources that gate dispatch: capacity, used, remaining.",
  methods = {
    check = {
      op = "check",
      doc = "check() -> {resources = {{name, resource_type, capacity, used, remaining}, ...}, available}",
      fn = function(ctx)
        if not ctx.db.resource_list then return nil, "this store has no resources" end
        local rows, err = ctx.db:resource_list()
        if not rows then return nil, err end
        local out, available = {}, true
        for i, r in ipairs(rows) do
          out[i] = { name = r.name, resource_type = r.resource_type, capacity = r.capacity, used = r.used,
            remaining = r.remaining }
          if (r.remaining or 0) <= 0 then available = false end
        end
        return { resources = out, available = available }
      end,
    },
  },
}
