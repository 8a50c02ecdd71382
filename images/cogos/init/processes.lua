-- init: a lua daemon woken by system:boot after every boot of this image; it
-- creates the boot channels and spawns the cogs of the manifest (idempotent).
add_process("init", {
  mode = "daemon",
  executor = "lua",
  priority = 100,
  content = read_file("cogos/init.lua"),
  handlers = { "system:boot" },
  -- unscoped: init is the root of the tree and hands narrower grants to the cogs
  capabilities = { "files", "channels", "procs", "me" },
})

-- The demo daemon: wakes on demo:inbox, answers on demo:outbox and keeps the
-- last message it saw in demo/last.md.
add_channel("demo:outbox")

add_process("demo", {
  mode = "daemon",
  executor = "llm",
  content = "@{mnt/boot/demo/prompt.md}",
  handlers = { "demo:inbox" },
  capabilities = {
    { name = "files", type = "files", config = { prefix = "demo/" } },
    { name = "channels", type = "channels", config = { names = { "demo:*" }, ops = { "send", "read", "list" } } },
    "me",
    -- lets the prompt's @{...} references under mnt/boot/demo/ expand
    { name = "boot", type = "files", config = { prefix = "mnt/boot/demo/", ops = { "read" } } },
  },
  metadata = { script = "mnt/boot/demo/script.json" },
})
