-- Files and directories for specs that write them (not a spec itself).
local M = {}

--- A fresh empty directory under the temporary directory.
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d) == 0)
  return d
end

--- Names in dir (hidden ones too), sorted.
function M.ls(dir)
  local names = {}
  local p = io.popen("ls -A " .. dir)
  for n in p:lines() do names[#names + 1] = n end
  p:close()
  table.sort(names)
  return names
end

--- The whole content of a file.
function M.read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

return M
