-- The cogos Lua modules. They run inside the cogos host, which provides the
-- `cogos.core` C module (build it with `make`); this rock installs the policy
-- layer and the drop-in capability modules for that host.
rockspec_format = "3.0"
package = "cogos"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "Policy layer of cogos, an operating system for LLM agents (C core + Lua 5.4)",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "builtin",
  modules = {
    ["cogos.caps"] = "lua/cogos/caps.lua",
    ["cogos.cli.args"] = "lua/cogos/cli/args.lua",
    ["cogos.cli.cogent"] = "lua/cogos/cli/cogent.lua",
    ["cogos.cli.cogos"] = "lua/cogos/cli/cogos.lua",
    ["cogos.cli.cogtainer"] = "lua/cogos/cli/cogtainer.lua",
    ["cogos.cli.out"] = "lua/cogos/cli/out.lua",
    ["cogos.config"] = "lua/cogos/config.lua",
    ["cogos.executor"] = "lua/cogos/executor.lua",
    ["cogos.image"] = "lua/cogos/image.lua",
    ["cogos.llm"] = "lua/cogos/llm.lua",
    ["cogos.log"] = "lua/cogos/log.lua",
    ["cogos.main"] = "lua/cogos/main.lua",
    ["cogos.node"] = "lua/cogos/node.lua",
    ["cogos.prompt"] = "lua/cogos/prompt.lua",
    ["cogos.providers.anthropic"] = "lua/cogos/providers/anthropic.lua",
    ["cogos.providers.common"] = "lua/cogos/providers/common.lua",
    ["cogos.providers.openai"] = "lua/cogos/providers/openai.lua",
    ["cogos.providers.scripted"] = "lua/cogos/providers/scripted.lua",
  },
  copy_directories = { "capabilities", "images" },
}
test = { type = "command", command = "make test" }
