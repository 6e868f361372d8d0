-- The native core: ffi declarations, the library handle and the Lua C
-- functions of libsproc (JSON encoding). Inside the sproc executable the
-- symbols are the executable's own (ffi.C); under plain LuaJIT (busted,
-- benchmarks) libsproc is loaded from SPROC_LIB or the build directory.
local ffi = require "ffi"

local M = {}

local cdef = require "sproc.cdef"
ffi.cdef(cdef.body)

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

-- The library must have been built from the contract these modules
-- declare: a function whose arguments changed would be called wrongly.
do
  local ok, built = pcall(function() return cdef.region(ffi.string(lib.sp_embed_contract())) end)
  if not ok or built ~= cdef.body then
    error("sproc: libsproc" .. (libpath and (" (" .. libpath .. ")") or "") ..
          " was built from another sp_ffi.h than " .. (cdef.path or "the embedded one") ..
          ": rebuild it (cmake --build build) or point SPROC_LIB at the matching build", 0)
  end
end

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
