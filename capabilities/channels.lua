-- channels — named, durable message streams. Scope: names (glob patterns the
-- channel name must match), ops (send, read, create, list).

local function ok_name(name)
  return type(name) == "string" and name ~= ""
end

return {
  name = "channels",
  description = "Named message streams: send to wake their handlers, read their history.",
  methods = {
    send = {
      op = "send", target = 1,
      doc = "send(name, payload_table) -> {id, channel} | nil, err",
      fn = function(ctx, name, payload)
        if not ok_name(name) then return nil, "send: channel name must be a non-empty string" end
        if type(payload) ~= "table" then return nil, "send: payload must be a table" end
        local r, err = ctx.db:send(name, payload, { sender_process = ctx.process.id,
          sender_run_id = ctx.run and ctx.run.id })
        if not r then return nil, err end
        return { id = r.id, channel = name }
      end,
    },
    read = {
      op = "read", target = 1,
      doc = "read(name [, limit=100]) -> {{id, payload, created_at}, ...} newest first",
      fn = function(ctx, name, limit)
        if not ok_name(name) then return nil, "read: channel name must be a non-empty string" end
        local ch, err = ctx.db:channel_get(name)
        if not ch then return nil, err end
        local rows = ctx.db:messages(name, { limit = math.min(tonumber(limit) or 100, 1000) })
        local out = {}
        for i, m in ipairs(rows) do out[i] = { id = m.id, payload = m.payload, created_at = m.created_at } end
        return out
      end,
    },
    create = {
      op = "create", target = 1,
      doc = "create(name) -> {name, created}",
      fn = function(ctx, name)
        if not ok_name(name) then return nil, "create: channel name must be a non-empty string" end
        local row, created = ctx.db:channel_create(name, { owner = ctx.process.id })
        if not row then return nil, created end
        return { name = row.name, created = created and true or false }
      end,
    },
    list = {
      op = "list",
      doc = "list() -> {name, ...} the channels your scope allows",
      fn = function(ctx)
        local names = ctx.grant.config.names
        local function allowed(n)
          if not names then return true end
          for _, p in ipairs(names) do
            local pat = "^" .. p:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
            if n:find(pat) then return true end
          end
          return false
        end
        local out = {}
        for _, ch in ipairs(ctx.db:channel_list()) do
          if allowed(ch.name) then out[#out + 1] = ch.name end
        end
        return out
      end,
    },
  },
}
