-- The supervisor: an LLM daemon that answers requests for help and hands
-- work to worker coglets.
return {
  mode = "daemon",
  executor = "llm",
  priority = 50,
  handlers = { "supervisor:help" },
  capabilities = {
    { name = "files", type = "files", config = { prefix = "mnt/boot/" } },
    "channels",
    "procs",
    "me",
  },
}
