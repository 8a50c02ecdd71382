-- Spawns a lua child per item (each writes fanout/<job>/<i>.txt), waits for
-- all, then writes fanout/<job>/summary.md and announces it on fanout:done.
local items = event.payload.items or {}
local job = tostring(event.payload.job or event.message)
local children = {}
for i, item in ipairs(items) do
  local key = string.format("fanout/%s/%d.txt", job, i)
  local code = string.format("assert(files.write(%q, string.upper(%q)))", key, tostring(item))
  local h = assert(procs.spawn({
    name = string.format("fanout-%s-%d", job, i),
    content = code,
    executor = "lua",
    mode = "one_shot",
    capabilities = { files = { type = "files", scope = { prefix = "fanout/" .. job .. "/" } } },
  }))
  children[#children + 1] = h
end
local done = assert(procs.wait_all(children))
local lines = { "# " .. job, "" }
for i in ipairs(items) do
  local f = assert(files.read(string.format("fanout/%s/%d.txt", job, i)))
  lines[#lines + 1] = string.format("%d. %s", i, f.content)
end
local exited = 0
for _ in pairs(done.children or {}) do exited = exited + 1 end
lines[#lines + 1] = ""
lines[#lines + 1] = string.format("%d children exited", exited)
assert(files.write(string.format("fanout/%s/summary.md", job), table.concat(lines, "\n") .. "\n"))
assert(channels.send("fanout:done", { job = job, count = #items }))
