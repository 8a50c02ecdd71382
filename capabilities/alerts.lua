-- alerts — raise an alert: a row in the alerts table (source = the calling
-- process) and a message on channel system:alerts. No scope keys.

local function raise(severity)
  return function(ctx, alert_type, message, metadata)
    if type(alert_type) ~= "string" or alert_type == "" then return nil, "alert_type must be a non-empty string" end
    if type(message) ~= "string" then return nil, "message must be a string" end
    if metadata ~= nil and type(metadata) ~= "table" then return nil, "metadata must be a table" end
    if not ctx.db.alert_add then return nil, "this store has no alerts" end
    local row, err = ctx.db:alert_add({ severity = severity, alert_type = alert_type, source = ctx.process.name,
      message = message, metadata = metadata })
    if not row then return nil, err end
    local ch, cerr = ctx.db:channel_create("system:alerts")
    if not ch then return nil, cerr end
    local sent, serr = ctx.db:send("system:alerts", { alert_id = row.id, severity = severity, alert_type = alert_type,
      source = ctx.process.name, message = message, metadata = metadata },
      { sender_process = ctx.process.id, sender_run_id = ctx.run and ctx.run.id })
    if not sent then return nil, serr end
    return { id = row.id, severity = severity }
  end
end

return {
  name = "alerts",
  description = "Raise alerts for operators and supervisors (also posted on system:alerts).",
  methods = {
    warning = { op = "warning", doc = "warning(alert_type, message [, metadata]) -> {id, severity}",
      fn = raise("warning") },
    error = { op = "error", doc = "error(alert_type, message [, metadata]) -> {id, severity}   (severity critical)",
      fn = raise("critical") },
  },
}
