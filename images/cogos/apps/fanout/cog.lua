-- Fan-out/collect: for a message {items = {...}} on fanout:jobs, spawns one
-- child per item, waits for all of them, and writes the collected results.
return {
  mode = "daemon",
  executor = "lua",
  handlers = { "fanout:jobs" },
  capabilities = {
    { name = "files", type = "files", config = { prefix = "fanout/" } },
    { name = "channels", type = "channels", config = { names = { "fanout:*" } } },
    "procs",
  },
}
