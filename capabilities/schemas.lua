-- schemas — the registered message schemas (channels validate payloads with
-- them). Scope: names (glob patterns of the schema names you may see).

local core = require "cogos.core"

return {
  name = "schemas",
  description = "Registered message schemas by name.",
  methods = {
    get = {
      op = "get", target = 1,
      doc = "get(name) -> {name, definition} | nil, err",
      fn = function(ctx, name)
        if type(name) ~= "string" then return nil, "get: name must be a string" end
        if not ctx.db.schema_get then return nil, "this store has no schemas" end
        local s, err = ctx.db:schema_get(name)
        if not s then return nil, err end
        return { name = s.name, definition = s.definition }
      end,
    },
    list = {
      op = "list",
      doc = "list() -> {name, ...} the schemas your scope allows",
      fn = function(ctx)
        if not ctx.db.schema_list then return nil, "this store has no schemas" end
        local out = {}
        for _, s in ipairs(ctx.db:schema_list()) do
          if core.sandbox.allows(ctx.grant.config, "names", s.name) then out[#out + 1] = s.name end
        end
        table.sort(out)
        return out
      end,
    },
  },
}
