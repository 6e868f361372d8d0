-- Turning a record's key and value into the bytes a sink writes, and
-- writing a record's own bytes as they came where nothing replaced them.
local ffi = require "ffi"
local core = require "sproc.core"
local json = require "sproc.json"
local record = require "sproc.record"

local C = core.C
local VSET = record.VSET
local proj, proj_len = record.proj, record.proj_len
local type, tostring, error, getmetatable, rawget, next = type, tostring, error, getmetatable,
                                                          rawget, next
local jbegin, jstring, jnumber = C.sp_jout_begin, C.sp_jout_string, C.sp_jout_number
local jbool, jend = C.sp_jout_bool, C.sp_jout_end

local M = {}

-- A table without a metatable whose names are strings and values strings,
-- numbers or booleans (most outputs) is written field by field into the
-- core's buffer of its slot: the same text as json.encode's, but the
-- record's trace goes on through it and no Lua string is made. nil for
-- any other table (nested, an array, a name or string not UTF-8): the C
-- encoder takes it, and says what is wrong with it.
--
-- The fields are visited by straight-line next() calls, not a loop: LuaJIT
-- gives a loop in a record's path a trace of its own, and the code after
-- it, down to the batch loop, then runs in the interpreter. Tables of more
-- fields go on in a loop.
local UNROLLED = 16
local visit = (function()
  local src = { "local next, field = ...\nreturn function(t)\n  local k, x = next(t)\n" }
  for _ = 1, UNROLLED do
    src[#src + 1] = "  if k == nil then return true end\n" ..
                    "  if field(k, x) ~= 0 then return false end\n" ..
                    "  k, x = next(t, k)\n"
  end
  src[#src + 1] = "  while k ~= nil do\n" ..
                  "    if field(k, x) ~= 0 then return false end\n" ..
                  "    k, x = next(t, k)\n" ..
                  "  end\n  return true\nend\n"
  return table.concat(src)
end)()

local function flat_writer(ctx, slot)
  local lenp = ffi.new("size_t[1]")
  local function field(k, x)
    if type(k) ~= "string" then return 1 end
    local tx = type(x)
    if tx == "string" then return jstring(ctx, slot, k, #k, x, #x) end
    if tx == "number" then return jnumber(ctx, slot, k, #k, x) end
    if tx == "boolean" then return jbool(ctx, slot, k, #k, x and 1 or 0) end
    return 1
  end
  local fields = assert(loadstring(visit, "=sproc.encode.visit"))(next, field)
  return function(t)
    jbegin(ctx, slot)
    if not fields(t) then return nil end
    local p = jend(ctx, slot, lenp)
    if p == nil then return nil end
    return p, lenp[0]
  end
end

--- A function of a value returning pointer-or-string, length (valid until
--- the next call). A record's JSON value that was not replaced is written
--- as it came.
function M.encoder(serde, batch, which, ctx)
  local flat = flat_writer(ctx, which == "key" and 0 or 1)
  return function(v)
    if v == nil then return nil, 0 end
    local tv = type(v)
    if tv == "table" then
      local mt = getmetatable(v)
      if mt and mt.__sproc_raw then
        local rec = batch.recs[batch.cur]
        if mt.__sproc_raw == 1 then return rec.val, rec.val_len end
        return rec.key, rec.key_len
      end
      if serde == "string" or serde == "bytes" then
        error("cannot write a table as " .. serde .. " " .. which ..
              " (use json or return a string)", 0)
      end
      if not mt then
        local p, n = flat(v)
        if p then return p, n end
      end
      local s = json.encode(v)
      return s, #s
    end
    if serde == "json" then
      local s = json.encode(v)
      return s, #s
    end
    if tv ~= "string" then
      if serde == "bytes" then
        error("a bytes " .. which .. " must be a string, got " .. tv, 0)
      end
      v = tostring(v)
    end
    return v, #v
  end
end

--- Whether a sink with this serde writes a record's own key or value as
--- it came (what a source with serde src holds): all but a JSON sink of
--- bytes or text, which quotes them.
function M.takes_raw(sink, src)
  return sink ~= "json" or src == "json"
end

--- The bytes of a record's value for a sink that writes values as they
--- are (JSON text stays JSON): the record's own when nothing replaced it,
--- a projection's, or the replacement encoded.
function M.value_bytes(r, enc_val, batch)
  local set = rawget(r, VSET)
  if not set then
    local rec = batch.recs[batch.cur]
    return rec.val, rec.val_len
  end
  if set ~= true then return proj[0], proj_len[0] end   -- select()'s
  local p, n = enc_val(r.value)
  return p, n
end

--- A key as the text it is grouped and partitioned by.
function M.key_string(k)
  local tk = type(k)
  if tk == "string" or k == nil then return k end
  return tk == "table" and json.encode(k) or tostring(k)
end

return M
