-- luacheck configuration: Lua 5.4 everywhere; builders in image init scripts;
-- the spec runner defines the busted-style globals.
std = "lua54"
max_line_length = 120
codes = true

files["images/**/init/*.lua"] = {
  read_globals = { "add_capability", "add_process", "add_channel", "add_file" },
}
files["tests/spec/**"] = {
  globals = { "describe", "it", "before_each", "after_each", "assert" },
}
files["tests/e2e/**"] = {
  globals = { "describe", "it", "before_each", "after_each", "assert" },
}
