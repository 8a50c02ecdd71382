-- The digest app writes its report at the top of every hour.
add_cron("0 * * * *", { channel = "digest:tick", payload = { reason = "hourly" } })
