-- Values a join reads from its stores (a table's row, the other side's
-- record) as read-only JSON views, as a record's value is: a field is read
-- through the core's index of the text when asked for, and no table is
-- built for the row. The core has one slot for such text; a view that
-- finds another view's text there parses its own again, so several views
-- alive at once (a table-table join's two rows, a view kept in a result
-- that a later join reads) each read their own fields.
local ffi = require "ffi"
local core = require "sproc.core"
local cjson = require "cjson.safe"
local store = require "sproc.store"
local field_value = require("sproc.record").field_value

local C = core.C
local ffi_string = ffi.string
local type, rawget, rawset, setmetatable, error = type, rawget, rawset, setmetatable, error

local M = {}

local B_JSON, OBJECT = C.SP_VAL_JSON, C.SP_JSON_OBJECT
local TEXT, GEN = "\0text", "\0gen"
local JOINED = 2

--- The decoder of stored values for a context: store.decode's results,
--- but a JSON object comes as a view.
function M.decoder(ctx)
  local gen = 0   -- which view's text the slot holds
  local fld = ffi.new("sp_field[1]")
  local outlen = ffi.new("size_t[1]")
  local mt = {}
  mt.__index = function(view, name)
    if type(name) ~= "string" then return nil end
    if rawget(view, GEN) ~= gen then
      local s = rawget(view, TEXT)
      C.sp_json_parse_joined(ctx, s, #s)
      gen = gen + 1
      rawset(view, GEN, gen)
    end
    C.sp_json_get(ctx, JOINED, name, #name, fld)
    return (field_value(ctx, fld, outlen))
  end
  mt.__newindex = function()
    error("a joined JSON value is read-only: build a new table in the join's function", 2)
  end
  mt.__sproc_json = function(view) return rawget(view, TEXT) end
  mt.__tostring = mt.__sproc_json
  local decode = store.decode
  return function(p, n)
    if n < 2 or p[0] ~= B_JSON then return (decode(p, n)) end
    local s = ffi_string(p + 1, n - 1)
    if C.sp_json_parse_joined(ctx, s, #s) ~= OBJECT then return (cjson.decode(s)) end
    gen = gen + 1
    return setmetatable({ [TEXT] = s, [GEN] = gen }, mt)
  end
end

--- The decoder of an environment's (one per context).
function M.of(env)
  env.joined_decode = env.joined_decode or M.decoder(env.ctx)
  return env.joined_decode
end

return M
