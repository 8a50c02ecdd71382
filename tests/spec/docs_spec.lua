-- The LLM-facing documentation names only capability methods that exist.

local core = require "cogos.core"
local caps = require "cogos.caps"

local function docs()
  local list = {}
  local p = io.popen("find " .. core.root .. "/images -name '*.md'")
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

describe("image documentation", function()
  it("names only capability methods that exist", function()
    local checked = 0
    for _, path in ipairs(docs()) do
      local f = assert(io.open(path))
      local text = f:read("a")
      f:close()
      for cap, method in text:gmatch("([%a_][%w_]*)[.:]([%a_][%w_]*)%(") do
        local mod = caps.load(cap)
        if mod then
          checked = checked + 1
          assert.truthy(mod.methods[method], path .. " names " .. cap .. "." .. method .. ", which does not exist")
        end
      end
    end
    assert.truthy(checked >= 5, "the docs name capability methods")
  end)
end)
