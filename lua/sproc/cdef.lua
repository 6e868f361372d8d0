-- The C declarations Lua uses, taken from core/sp_ffi.h, the one contract
-- between C and Lua. Inside the sproc executable the header text is
-- embedded (module "sproc.ffi_h"); otherwise it is read from disk: beside
-- the modules where a package installed them, or from the source tree.
local M = {}

local text
local ok, embedded = pcall(require, "sproc.ffi_h")
if ok then
  text = embedded
else
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local path = os.getenv("SPROC_FFI_H") or (here .. "/sp_ffi.h")
  local f = io.open(path, "rb")
  if not f and not os.getenv("SPROC_FFI_H") then
    path = here .. "/../../core/sp_ffi.h"
    f = io.open(path, "rb")
  end
  assert(f, "sproc: cannot find sp_ffi.h at " .. path)
  text = f:read("*a")
  f:close()
  M.path = path
end

--- The declarations of a header's text: between its markers. ffi.cdef
--- has no preprocessor; the region has none by contract, but comments
--- are fine.
function M.region(s)
  return s:match("/%* SP_FFI_BEGIN %*/(.-)/%* SP_FFI_END %*/")
end

M.body = M.region(text)
assert(M.body, "sproc: sp_ffi.h has no SP_FFI_BEGIN/SP_FFI_END markers")

return M
