-- Record views. A script's functions receive a view `r` whose fields are
-- pulled from the native batch only when read: r.key, r.value, r.ts,
-- r.topic, r.partition, r.offset, r.headers. One view per source is reused
-- for every record, so a view (and a JSON value inside it) is valid only
-- during the call; copy what you keep (sproc.json.totable(r.value)).
local ffi = require "ffi"
local core = require "sproc.core"
local cjson = require "cjson.safe"

local C = core.C
local store_decode = require("sproc.store").decode
local ffi_string = ffi.string
local tonumber, rawset, rawget = tonumber, rawset, rawget

local M = {}

-- True on a view while an operator's replacement of the value or the key
-- is in effect (nil is a replacement too), false otherwise; what is not
-- replaced is the record's own, which sinks pass on without making a
-- string.
local VSET, KSET = "\0value set", "\0key set"
-- a table's change: the row's value before it (false: none)
local OLD = "\0old value"
-- True on a view whose key, unless replaced, is the record's bytes as
-- they came (no key serde): a join may then use them without a string.
local RAWKEY = "\0raw key"
M.OLD = OLD
M.VSET, M.KSET, M.RAWKEY = VSET, KSET, RAWKEY
-- While select()'s projection is the value, VSET holds that select's
-- projected view (M.projection): its JSON text is in the core's buffer at
-- proj, proj_len, and the view reads the selected fields of the record's
-- parsed value.
M.proj, M.proj_len = ffi.new("const char *[1]"), ffi.new("size_t[1]")
local proj, proj_len = M.proj, M.proj_len

local SP_JSON_NULL, SP_JSON_FALSE, SP_JSON_TRUE = C.SP_JSON_NULL, C.SP_JSON_FALSE, C.SP_JSON_TRUE
local SP_JSON_NUMBER, SP_JSON_STRING, SP_JSON_OBJECT = C.SP_JSON_NUMBER, C.SP_JSON_STRING,
                                                       C.SP_JSON_OBJECT

-- A JSON value of the current record, read field by field through the
-- core's index: no table is built for the record. With only (a set of
-- names, and their list of n in names/lens), the view is a select()'s
-- projection: other fields read as nil and it encodes as the projection.
-- The Lua value of a field the core's index found (fld[0]).
local function field_value(ctx, fld, outlen)
  local f = fld[0]
  local t = f.type
  if t == SP_JSON_STRING then
    if f.escaped == 0 then return (ffi_string(f.p, f.len)) end
    local p = C.sp_json_unescaped(ctx, f.p, f.len, outlen)
    return (ffi_string(p, outlen[0]))
  elseif t == SP_JSON_NUMBER then
    return (C.sp_json_to_number(f.p, f.len))
  elseif t == SP_JSON_TRUE then
    return true
  elseif t == SP_JSON_FALSE then
    return false
  elseif t <= SP_JSON_NULL then
    return nil
  end
  -- Nested objects and arrays are decoded whole when asked for.
  return (cjson.decode(ffi_string(f.p, f.len)))
end
M.field_value = field_value

local function json_view(ctx, which, batch, only, names, lens, n)
  local fld = ffi.new("sp_field[1]")
  local outlen = ffi.new("size_t[1]")
  local proxy = {}
  local mt = {}
  mt.__index = function(_, name)
    if type(name) ~= "string" or (only and not only[name]) then return nil end
    C.sp_json_get(ctx, which, name, #name, fld)
    return (field_value(ctx, fld, outlen))
  end
  mt.__newindex = function()
    error("a record's JSON value is read-only: build a new table in map()", 2)
  end
  if only then
    -- the projection's text, made again: a view kept by a script may be
    -- encoded after another select() used the buffer
    mt.__sproc_json = function()
      C.sp_json_project(ctx, which, names, lens, n, proj, proj_len)
      return (ffi_string(proj[0], proj_len[0]))
    end
  else
    -- The raw JSON text of the current record, for encoding it unchanged.
    mt.__sproc_json = function()
      local rec = batch.recs[batch.cur]
      if which == 1 then return (ffi_string(rec.val, rec.val_len)) end
      return (ffi_string(rec.key, rec.key_len))
    end
    mt.__sproc_raw = which
  end
  mt.__tostring = mt.__sproc_json
  return setmetatable(proxy, mt)
end
M.json_view = json_view

--- The value select{...} leaves: a view of the named fields of the
--- record's parsed JSON value; project() writes its text into the core's
--- buffer (proj, proj_len) and returns false when the value is no object.
function M.projection(ctx, batch, fields)
  local nf = #fields
  local names = ffi.new("const char *[?]", nf)
  local lens = ffi.new("size_t[?]", nf)
  local only = {}
  for i = 1, nf do
    names[i - 1], lens[i - 1], only[fields[i]] = fields[i], #fields[i], true
  end
  local view = json_view(ctx, 1, batch, only, names, lens, nf)
  local function project()
    return C.sp_json_root(ctx, 1) == SP_JSON_OBJECT and
           C.sp_json_project(ctx, 1, names, lens, nf, proj, proj_len) == 0
  end
  return view, project, { names, lens }
end

-- The fields of a record a view reads on first use, each from the record
-- (rec) or from what the operators before set on the view (t).
local function field_getters(ctx, batch, value_json, key_json, value_tagged)
  local hdr_name = ffi.new("const char *[1]")
  local hdr_val = ffi.new("const char *[1]")
  local hdr_len = ffi.new("size_t[1]")
  local topic_names = {}

  local function decoded(which, json_proxy)
    local root = C.sp_json_root(ctx, which)
    if root == SP_JSON_OBJECT then return json_proxy end   -- the field index
    if root == SP_JSON_NULL then return nil end            -- JSON null, or a tombstone
    local rec = batch.recs[batch.cur]
    if which == 1 then
      if rec.val == nil then return nil end
      return (cjson.decode(ffi_string(rec.val, rec.val_len)))
    end
    if rec.key == nil then return nil end
    return (cjson.decode(ffi_string(rec.key, rec.key_len)))
  end

  return {
    value = function(rec, t)
      local set = rawget(t, VSET)
      if set then   -- replaced by nil, or by a projection
        if set == true then return nil end
        return set
      end
      if value_json then return (decoded(1, value_json)) end
      if rec.val == nil then return nil end
      if value_tagged then return (store_decode(rec.val, rec.val_len)) end
      return (ffi_string(rec.val, rec.val_len))
    end,
    key = function(rec, t)
      if rawget(t, KSET) then return nil end
      if key_json then return (decoded(0, key_json)) end
      if rec.key == nil then return nil end
      return (ffi_string(rec.key, rec.key_len))
    end,
    ts = function(rec) return (tonumber(rec.ts)) end,
    offset = function(rec) return (tonumber(rec.offset)) end,
    partition = function(rec) return rec.partition end,
    topic = function(rec)
      local id = rec.topic
      local name = topic_names[id]
      if not name then
        name = ffi_string(C.sp_topic_name(ctx, id))
        topic_names[id] = name
      end
      return name
    end,
    headers = function()
      local h, i = {}, 0
      while C.sp_rec_header(ctx, batch.cur, i, hdr_name, hdr_val, hdr_len) == 0 do
        h[ffi_string(hdr_name[0])] = ffi_string(hdr_val[0], hdr_len[0])
        i = i + 1
      end
      return h
    end,
  }
end

-- Parses record i's JSON (and checks its schema) as the source's serdes
-- say; returns an error message when it does not parse. nil: nothing to
-- parse.
local function parser(ctx, batch, src, value_json, key_json)
  if not (value_json or key_json) then return nil end
  local schema_id = src.schema_id
  -- Avro decodes to JSON (sp_rec_avro), parsed as a JSON value is
  local value_parse = src.avro_value and C.sp_rec_avro or C.sp_rec_json
  local key_parse = src.avro_key and C.sp_rec_avro or C.sp_rec_json
  local vwhat = src.avro_value and "malformed Avro value: " or "malformed JSON value: "
  local kwhat = src.avro_key and "malformed Avro key: " or "malformed JSON key: "
  return function(i)
    if value_json and value_parse(ctx, i, 1, M.errpos, M.errp) ~= 0 then
      return vwhat .. ffi_string(M.errp[0]) .. " at byte " .. tonumber(M.errpos[0])
    end
    if schema_id and C.sp_schema_apply(ctx, schema_id, M.errp) ~= 0 then
      return "value does not fit the schema: " .. ffi_string(M.errp[0])
    end
    if key_json and batch.recs[i].key ~= nil and key_parse(ctx, i, 0, M.errpos, M.errp) ~= 0 then
      return kwhat .. ffi_string(M.errp[0]) .. " at byte " .. tonumber(M.errpos[0])
    end
  end
end

-- Views for the records of one source with the given serdes.
function M.new_view(ctx, batch, src)
  local value_json = src.value == "json" and json_view(ctx, 1, batch)
  local key_json = src.key == "json" and json_view(ctx, 0, batch)
  -- "tagged": a repartition topic's values, typed as the store keeps them
  local getters = field_getters(ctx, batch, value_json, key_json, src.value == "tagged")

  -- The view's table has these keys from the start and never gets other
  -- ones (a script's own fields go to `extra`), so that clearing and
  -- caching fields never adds or drops a key: LuaJIT rehashes a table
  -- whose keys come and go, and small views did so for every record.
  local view = { value = true, key = true, ts = true, offset = true, partition = true,
                 topic = true, headers = true, [VSET] = false, [KSET] = false, [OLD] = false,
                 [RAWKEY] = not key_json }
  for k in pairs(getters) do view[k] = nil end
  local extra = {}
  setmetatable(view, {
    __index = function(t, k)
      local g = getters[k]
      if not g then return extra[k] end
      local v = g(batch.recs[batch.cur], t)
      rawset(t, k, v)
      return v
    end,
    __newindex = function(t, k, v)
      if getters[k] then rawset(t, k, v) else extra[k] = v end
    end,
  })

  local parse = parser(ctx, batch, src, value_json, key_json)

  -- Forgets the previous record's fields; returns an error message when
  -- the record's JSON does not parse.
  local function reset(i)
    if rawget(view, "value") ~= nil then view.value = nil end
    if rawget(view, "key") ~= nil then view.key = nil end
    if rawget(view, "ts") ~= nil then view.ts = nil end
    if rawget(view, "offset") ~= nil then view.offset = nil end
    if rawget(view, "partition") ~= nil then view.partition = nil end
    if rawget(view, "topic") ~= nil then view.topic = nil end
    if rawget(view, "headers") ~= nil then view.headers = nil end
    if rawget(view, VSET) then view[VSET] = false end
    if rawget(view, KSET) then view[KSET] = false end
    if rawget(view, OLD) then view[OLD] = false end
    if parse then return (parse(i)) end
  end

  return view, reset
end

M.errpos = ffi.new("size_t[1]")
M.errp = ffi.new("const char *[1]")

return M
