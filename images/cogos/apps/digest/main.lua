-- Writes digest/latest.md: how many files there are per top-level folder.
local counts, total = {}, 0
for _, f in ipairs(assert(files.search("", 500))) do
  local top = f.key:match("^([^/]+)/") or "(top)"
  counts[top] = (counts[top] or 0) + 1
  total = total + 1
end
local names = {}
for k in pairs(counts) do names[#names + 1] = k end
table.sort(names)
local lines = { "# Digest", "", string.format("%d files (reason: %s)", total, tostring(event.payload.reason)), "" }
for _, k in ipairs(names) do lines[#lines + 1] = string.format("- %s: %d", k, counts[k]) end
local w = assert(files.write("digest/latest.md", table.concat(lines, "\n") .. "\n"))
print("digest written, version " .. w.version)
