-- luacheck configuration: Lua 5.4 everywhere; builders in image init scripts;
-- the spec runner defines the busted-style globals.
std = "lua54"
max_line_length = 120
codes = true

files["tests/spec/**"] = {
  globals = { "describe", "it", "before_each", "after_each", "assert" },
}
files["tests/e2e/**"] = {
  globals = { "describe", "it", "before_each", "after_each", "assert" },
}

-- Lua that runs in the sandbox: process code of images (lua executor) and cogs.
files["images/**/*.lua"] = {
  read_globals = { "event", "json", "help", "dir", "exit", "files", "channels", "me", "procs", "fs_dir",
    "schemas", "secrets", "history", "alerts", "resources", "cogent", "web_fetch", "http" },
}
files["images/**/init/*.lua"] = {
  read_globals = { "add_capability", "add_process", "add_channel", "add_file", "add_schema", "add_cron",
    "add_resource", "array", "null", "read_file" },
}
files["images/**/cog.lua"] = { read_globals = { "array" } }
