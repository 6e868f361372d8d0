-- JSON for scripts: encode (in C, doubles printed as the shortest text
-- that reads back the same), decode into tables (lua-cjson), and the
-- helpers that turn a record's lazily-indexed value into a table or text.
local core = require "sproc.core"
local cjson = require "cjson.safe"

local M = {}

local encode = core.native.json_encode
local decode = cjson.decode

-- JSON null inside decoded tables (cjson's sentinel).
M.null = cjson.null

--- Encodes a Lua value: tables with keys 1..n are arrays, others objects
--- (an empty table is {}); nil and json.null are null.
function M.encode(v)
  if type(v) == "table" then
    local mt = getmetatable(v)
    if mt and mt.__sproc_json then return (mt.__sproc_json(v)) end
  end
  return (encode(v))
end

--- Decodes JSON text; returns nil, err on malformed input.
function M.decode(s)
  if type(s) == "table" then
    local mt = getmetatable(s)
    if mt and mt.__sproc_json then s = mt.__sproc_json(s) end
  end
  if type(s) ~= "string" then return nil, "json.decode expects a string" end
  local v, err = decode(s)
  if v == nil and err then return nil, err end
  return v
end

--- The record value view as a plain table (a deep copy that outlives the
--- record).
function M.totable(v) return M.decode(v) end

return M
