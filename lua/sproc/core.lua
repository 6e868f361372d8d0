-- The native core: ffi declarations, the library handle and the Lua C
-- functions of libsproc (JSON encoding). Inside the sproc executable the
-- symbols are the executable's own (ffi.C); under plain LuaJIT (busted,
-- benchmarks) libsproc is loaded from SPROC_LIB or the build directory.
local ffi = require "ffi"

local M = {}

ffi.cdef(require "sproc.cdef")

local host = package.loaded["sproc.host"]
local lib, libpath
if host then
  lib = ffi.C
else
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local candidates = { here .. "/../../build/libsproc.so", "libsproc.so" }
  if os.getenv("SPROC_LIB") then table.insert(candidates, 1, os.getenv("SPROC_LIB")) end
  local errs = {}
  for _, p in ipairs(candidates) do
    local ok, l = pcall(ffi.load, p)
    if ok then lib, libpath = l, p break end
    errs[#errs + 1] = tostring(l)
  end
  if not lib then
    error("sproc: cannot load libsproc (set SPROC_LIB):\n  " .. table.concat(errs, "\n  "), 0)
  end
end
M.C = lib

-- Classic Lua C functions of libsproc.
local native
if package.preload["sproc.native"] or package.loaded["sproc.native"] then
  native = require "sproc.native"
else
  local open = assert(package.loadlib(libpath, "luaopen_sproc_native"))
  native = open()
  package.loaded["sproc.native"] = native
end
M.native = native

M.version = ffi.string(lib.sp_version())

return M
