-- Digest: on every digest:tick (cron, hourly) writes a report of the cogent's
-- files to digest/latest.md.
return {
  mode = "daemon",
  executor = "lua",
  handlers = { "digest:tick" },
  capabilities = {
    { name = "files", type = "files", config = { prefix = "", ops = { "search", "write" } } },
  },
}
