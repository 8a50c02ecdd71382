local args = require "cogos.cli.args"

local function usage_err(fn)
  local ok, e = pcall(fn)
  assert.falsy(ok)
  return e
end

describe("cli.args.parse", function()
  local spec = { usage = "x NAME", min = 1, max = 1,
    flags = { json = "bool", n = "integer", p = "number", tag = "list", mode = "string" },
    aliases = { t = "tag" }, choices = { mode = { "a", "b" } } }

  it("parses flags in both spellings, lists and positionals", function()
    local argv = { "name", "--json", "--n=3", "--p", "1.5", "-t", "x", "--tag", "y", "--mode", "b" }
    local o, pos = args.parse(argv, 1, spec)
    assert.same({ "name" }, pos)
    assert.equal(true, o.json)
    assert.equal(3, o.n)
    assert.equal(1.5, o.p)
    assert.same({ "x", "y" }, o.tag)
    assert.equal("b", o.mode)
  end)

  it("raises usage errors (exit 2) for bad input", function()
    assert.equal(2, usage_err(function() args.parse({ "a", "--nope" }, 1, spec) end).code)
    assert.equal(2, usage_err(function() args.parse({}, 1, spec) end).code)
    assert.equal(2, usage_err(function() args.parse({ "a", "b" }, 1, spec) end).code)
    assert.equal(2, usage_err(function() args.parse({ "a", "--n", "x" }, 1, spec) end).code)
    assert.equal(2, usage_err(function() args.parse({ "a", "--mode", "c" }, 1, spec) end).code)
    assert.equal(2, usage_err(function() args.parse({ "a", "--json=1" }, 1, spec) end).code)
    assert.match("needs a value", usage_err(function() args.parse({ "a", "--mode" }, 1, spec) end).cli)
  end)

  it("fails with exit 1", function()
    local e = usage_err(function() args.fail("boom") end)
    assert.equal(1, e.code)
    assert.equal("boom", e.cli)
  end)
end)
