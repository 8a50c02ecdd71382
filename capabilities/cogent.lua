-- cogent — who this cogent is: its name and its profile
-- (mnt/boot/whoami/profile.md). No scope keys.

local function name_of(ctx)
  local dir = ctx.cogent_dir
  if type(dir) ~= "string" then return nil, "the cogent's folder is not known to this node" end
  return (dir:gsub("/+$", ""):match("([^/]+)$"))
end

return {
  name = "cogent",
  description = "This cogent's identity.",
  methods = {
    name = { op = "name", doc = "name() -> the cogent's name", fn = function(ctx) return name_of(ctx) end },
    profile = {
      op = "profile", doc = "profile() -> text of mnt/boot/whoami/profile.md, or a line with the name",
      fn = function(ctx)
        local f = ctx.db:file_get("mnt/boot/whoami/profile.md")
        if f then return f.content end
        local name, err = name_of(ctx)
        if not name then return nil, err end
        return "# " .. name .. "\nA cogent (no profile written yet)."
      end,
    },
  },
}
