--- Small file-system helpers shared by the Lua modules (luaposix underneath).
local stat = require "posix.sys.stat"

local M = {}

--- True when `path` can be opened for reading.
---@param path string
---@return boolean
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- The whole content of a file.
---@return string|nil text
---@return string? err "path: reason"
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function is_dir(path)
  local st = stat.stat(path)
  return st ~= nil and stat.S_ISDIR(st.st_mode) ~= 0
end
M.is_dir = is_dir

--- The directory name migfix keeps its local state under (backups, journal mirror).
M.STATE_DIR = ".migfix"
M.GITIGNORE = "# created by migfix: backups (full data dumps) and the journal mirror stay out of git\n*\n"

--- mkdir -p: the directories it creates get `mode` (default 0700). A `.migfix`
--- directory it creates gets a .gitignore of `*` (its backups are data dumps).
---@param dir string
---@param mode? integer e.g. tonumber("755", 8)
---@return true|nil ok
---@return string? err
---@return integer? errno
function M.mkdirs(dir, mode)
  if not dir or dir == "" or dir == "." or is_dir(dir) then return true end
  if stat.stat(dir) then return nil, ("\"%s\" exists and is not a directory"):format(dir) end
  local parent = dir:match("^(.*)/[^/]*$")
  if parent and parent ~= "" and parent ~= dir then
    local ok, err, errno = M.mkdirs(parent, mode)
    if not ok then return nil, err, errno end
  end
  local ok, err, errno = stat.mkdir(dir, mode or tonumber("700", 8))
  if not ok and not is_dir(dir) then return nil, err, errno end
  if ok and dir:match("([^/]+)/*$") == M.STATE_DIR then
    -- only when this call created it: a .gitignore the user removed stays removed
    local f = io.open(dir .. "/.gitignore", "wb")
    if f then f:write(M.GITIGNORE) f:close() end
  end
  return true
end

return M
