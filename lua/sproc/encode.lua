-- Turning a record's key and value into the bytes a sink writes, and
-- writing a record's own bytes as they came where nothing replaced them.
local json = require "sproc.json"
local record = require "sproc.record"

local VSET = record.VSET
local proj, proj_len = record.proj, record.proj_len
local type, tostring, error, getmetatable, rawget = type, tostring, error, getmetatable, rawget

local M = {}

--- A function of a value returning pointer-or-string, length. A record's
--- JSON value that was not replaced is written as it came.
function M.encoder(serde, batch, which)
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
  return enc_val(r.value)
end

--- A key as the text it is grouped and partitioned by.
function M.key_string(k)
  local tk = type(k)
  if tk == "string" or k == nil then return k end
  return tk == "table" and json.encode(k) or tostring(k)
end

return M
