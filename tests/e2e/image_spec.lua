-- Images: boot is idempotent, a snapshot boots into a fresh cogent with its
-- configuration identical, errors in an image name the file and line.

local harness = require "harness"
local core = require "cogos.core"

local function tree(dir)
  local out = {}
  for _, n in ipairs(core.sys.listdir(dir .. "/init") or {}) do out[n] = harness.slurp(dir .. "/init/" .. n) end
  return out
end

describe("images", function()
  local w
  before_each(function() w = harness.world() end)
  after_each(function() w:close() end)

  it("boots idempotently: a second boot changes no file and keeps statuses", function()
    w:boot()
    w:ok("cogos stop")
    w.started = false
    local before = w:ok("cogos file history mnt/boot/demo/prompt.md --json")
    local out = w:ok("cogos start")
    w.started = true
    assert.match("%(0 changed%)", out)
    assert.equal(#before, #w:ok("cogos file history mnt/boot/demo/prompt.md --json"))
  end)

  it("snapshots round-trip exactly through a fresh cogent", function()
    w:boot()
    -- the copy's hourly digest would add a file if the test ran at minute 0
    for _, c in ipairs(w:ok("cogos cron list --json")) do w:ok("cogos cron disable " .. c.id) end
    w:ok([[cogos process create worker --mode daemon --executor lua --content 'print("]]..']]'..[[")']]
      .. [[ --capability 'notes=files:{"prefix":"notes/","ops":["read"]}' --capability me --handler jobs:new]])
    w:ok("cogos file create notes/odd.md 'ends with ]] and ]=] \n'")
    w:ok("cogos file create notes/empty.md ''")
    w:ok("cogos file create notes/tail.md 'a long line of text that goes on and on,\nthen ends in a bracket]'")
    w:ok("cogos snapshot snap1")
    w:ok("cogent create copy")
    w.env.COGENT = "demo" -- two cogents now: commands without COGENT= mean the first
    w:ok("cogos start snap1", { env = { COGENT = "copy" } })
    w:ok("cogos snapshot snap2", { env = { COGENT = "copy" } })
    w:run("cogos stop", { env = { COGENT = "copy" } })
    local a, b = tree(w.cwd .. "/images/snap1"), tree(w.cwd .. "/images/snap2")
    for name, text in pairs(a) do assert.equal(text, b[name], name .. " differs") end
    assert.match("notes/odd.md", a["70_files.lua"])
    assert.equal("a long line of text that goes on and on,\nthen ends in a bracket]",
      w:ok("cogos file get notes/tail.md", { env = { COGENT = "copy" } }))
    assert.equal("ends with ]] and ]=] \n", w:ok("cogos file get notes/odd.md", { env = { COGENT = "copy" } }))
    local p = w:ok("cogos process get worker --json", { env = { COGENT = "copy" } })
    local g = {}
    for _, x in ipairs(p.capabilities) do g[x.name] = x end
    assert.equal("files", g.notes.capability)
    assert.equal("notes/", g.notes.config.prefix)
    local code, _, err = w:run("cogos snapshot snap1")
    assert.equal(1, code)
    assert.match("refusing to overwrite", err)
  end)

  it("names the file and line of an error in an image", function()
    w:ok("cogtainer create dev --type local")
    w:ok("cogent create demo")
    assert(core.sys.mkdir_p(w.cwd .. "/images/bad/init"))
    local f = assert(io.open(w.cwd .. "/images/bad/init/procs.lua", "w"))
    f:write("add_channel('ok')\n\nadd_process(42)\n")
    f:close()
    local code, _, err = w:run("cogos start bad")
    assert.equal(1, code)
    assert.match("images/bad/init/procs%.lua:3:", err)
    assert.match("name must be a string", err)
    assert.equal(0, #w:ok("cogos channel list --json"))
    for _, case in ipairs({
      { "{required_tags = 'gpu'}", "add_process p: required_tags must be a list of non%-empty strings" },
      { "{mode = 'daemon', idle_timeout_ms = -5}", "add_process p: idle_timeout_ms must be a positive integer" },
    }) do
      f = assert(io.open(w.cwd .. "/images/bad/init/procs.lua", "w"))
      f:write("add_process('p', " .. case[1] .. ")\n")
      f:close()
      code, _, err = w:run("cogos start bad")
      assert.equal(1, code, case[1])
      assert.match(case[2], err)
    end
    assert.equal(1, w:run("cogos process get p"), "nothing was written")
  end)
end)
