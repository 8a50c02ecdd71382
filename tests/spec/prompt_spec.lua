local prompt = require "cogos.prompt"

local files = {
  ["a.md"] = "A says @{b.md} and @{secret/x}",
  ["b.md"] = "B includes @{a.md} and @{missing.md}",
  ["secret/x"] = "hidden",
}
local db = { file_get = function(_, key)
  local c = files[key]
  if c then return { key = key, content = c } end
  return nil, "unknown file '" .. key .. "'"
end }

local mod = { description = "Files.", methods = { read = { doc = "read(key)", op = "read", fn = print } } }
local grants = { { name = "files", type = "files", config = { prefix = "", ops = { "read" } }, module = mod } }
local narrow = { { name = "files", type = "files", config = { prefix = "a", ops = { "read" } }, module = mod } }
local writeonly = { { name = "files", type = "files", config = { ops = { "write" } }, module = mod } }

describe("prompt", function()
  it("expands readable references recursively and marks cycles and missing files", function()
    local text = prompt.expand(db, grants, "start @{a.md}")
    assert.match("^start %-%-%- a%.md %-%-%-\nA says %-%-%- b%.md %-%-%-\nB includes %[circular include: a%.md%]", text)
    assert.match("%[include not found: missing%.md%]", text)
    assert.match("%-%-%- secret/x %-%-%-\nhidden", text)
  end)

  it("leaves references no read grant covers as written", function()
    local text = prompt.expand(db, narrow, "@{a.md}")
    assert.match("@{b%.md}", text)
    assert.match("@{secret/x}", text)
    assert.equal("@{a.md}", prompt.expand(db, writeonly, "@{a.md}"))
    assert.equal("@{a.md}", prompt.expand(db, {}, "@{a.md}"))
  end)

  it("ends the system prompt with the capabilities' help", function()
    local s = prompt.system(db, { content = "Do things." }, grants)
    assert.match("^Do things%.\n\n%-%-%- Capabilities %-%-%-\n\nfiles: Files%.\n  files%.read%(key%)", s)
    assert.match("You are a cogos process", prompt.system(db, { content = "" }, {}))
  end)

  it("reads through fs_dir (get) and file (key) grants; a prefix cannot be escaped with ..", function()
    local dir = { { name = "boot", type = "fs_dir", config = { prefix = "secret/", read_only = true }, module = mod } }
    assert.equal("--- secret/x ---\nhidden", prompt.expand(db, dir, "@{secret/x}"))
    local listing = { { name = "boot", type = "fs_dir", config = { prefix = "secret/", ops = { "list" } },
      module = mod } }
    assert.equal("@{secret/x}", prompt.expand(db, listing, "@{secret/x}"))
    local one = { { name = "f", type = "file", config = { key = "b.md", ops = { "read" } }, module = mod } }
    assert.match("^%-%-%- b%.md %-%-%-\nB includes @{a%.md}", prompt.expand(db, one, "@{b.md}"))
    local a_only = { { name = "files", type = "files", config = { prefix = "a", ops = { "read" } }, module = mod } }
    assert.equal("@{a.md/../secret/x}", prompt.expand(db, a_only, "@{a.md/../secret/x}"))
  end)
end)
