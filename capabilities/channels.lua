-- channels — named, durable message streams. Scope: names (glob patterns the
-- channel name must match; list() shows only those), ops (create, list, get,
-- send, read, subscribe, close, schema).

local core = require "cogos.core"

local function need_name(what, name)
  if type(name) ~= "string" or name == "" then return nil, what .. ": channel name must be a non-empty string" end
  return name
end

local function schema_of(db, ch)
  if ch.inline_schema ~= nil then return ch.inline_schema end
  if ch.schema_id == nil or not db.schema_list then return nil end
  for _, s in ipairs(db:schema_list()) do
    if s.id == ch.schema_id then return s.definition, s.name end
  end
  return nil
end

local function info(db, ch)
  local schema, schema_name = schema_of(db, ch)
  return { name = ch.name, owner = ch.owner, channel_type = ch.channel_type, closed = ch.closed_at ~= nil,
    closed_at = ch.closed_at, schema = schema_name or schema, created_at = ch.created_at }
end

local function sender(ctx)
  return { sender_process = ctx.process.id, sender_run_id = ctx.run and ctx.run.id }
end

return {
  name = "channels",
  description = "Named message streams: send to wake their handlers, read their history.",
  methods = {
    create = {
      op = "create", target = 1,
      doc = "create(name [, schema]) -> {name, created}   (schema: a registered schema's name or a field table)",
      fn = function(ctx, name, schema)
        local n, err = need_name("create", name)
        if not n then return nil, err end
        if schema ~= nil and type(schema) ~= "string" and type(schema) ~= "table" then
          return nil, "create: schema must be a schema name or a table of fields"
        end
        local row, created = ctx.db:channel_create(name, { owner = ctx.process.id, schema = schema })
        if not row then return nil, created end
        return { name = row.name, created = created and true or false }
      end,
    },
    list = {
      op = "list",
      doc = "list() -> {name, ...} the channels your scope allows",
      fn = function(ctx)
        local out = {}
        for _, ch in ipairs(ctx.db:channel_list()) do
          if core.sandbox.allows(ctx.grant.config, "names", ch.name) then out[#out + 1] = ch.name end
        end
        return out
      end,
    },
    get = {
      op = "get", target = 1,
      doc = "get(name) -> {name, owner, channel_type, closed, schema, created_at} | nil, err",
      fn = function(ctx, name)
        local ch, err = ctx.db:channel_get(name)
        if not ch then return nil, err end
        return info(ctx.db, ch)
      end,
    },
    send = {
      op = "send", target = 1,
      doc = "send(name, payload_table [, {idempotency_key=}]) -> {id, channel, duplicate} | nil, err",
      fn = function(ctx, name, payload, opts)
        local n, err = need_name("send", name)
        if not n then return nil, err end
        if type(payload) ~= "table" then return nil, "send: payload must be a table" end
        local o = sender(ctx)
        if type(opts) == "table" then o.idempotency_key = opts.idempotency_key end
        local r, serr = ctx.db:send(name, payload, o)
        if not r then return nil, serr end
        return { id = r.id, channel = name, duplicate = r.duplicate or false }
      end,
    },
    read = {
      op = "read", target = 1,
      doc = "read(name [, limit=100]) -> {{id, payload, created_at}, ...} newest first",
      fn = function(ctx, name, limit)
        local n, err = need_name("read", name)
        if not n then return nil, err end
        local rows, rerr = ctx.db:messages(name, { limit = math.max(1, math.min(math.tointeger(limit) or 100, 1000)) })
        if not rows then return nil, rerr end
        local out = {}
        for i, m in ipairs(rows) do out[i] = { id = m.id, payload = m.payload, created_at = m.created_at } end
        return out
      end,
    },
    subscribe = {
      op = "subscribe", target = 1,
      doc = "subscribe(name) -> {id, channel}   (a handler: messages on it wake this process)",
      fn = function(ctx, name)
        local h, err = ctx.db:handler_add(ctx.process.id, name)
        if not h then return nil, err end
        return { id = h.id, channel = name }
      end,
    },
    close = {
      op = "close", target = 1,
      doc = "close(name) -> {name, closed_at} | nil, err   (the owner only; later sends fail)",
      fn = function(ctx, name)
        if not ctx.db.channel_close then return nil, "this store cannot close channels" end
        local ch, err = ctx.db:channel_close(name, ctx.process.id)
        if not ch then return nil, err end
        return { name = ch.name, closed_at = ch.closed_at }
      end,
    },
    schema = {
      op = "schema", target = 1,
      doc = "schema(name) -> the channel's schema (a table) or nil when it has none",
      fn = function(ctx, name)
        local ch, err = ctx.db:channel_get(name)
        if not ch then return nil, err end
        return (schema_of(ctx.db, ch))
      end,
    },
  },
}
