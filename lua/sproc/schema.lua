-- Schemas: sproc.schema{ {"name", "type"}, ... } declares the fields of
-- JSON values (Spark's StructType). The core applies a schema in C: at a
-- source (schema = s) every record's value is converted, and a Parquet
-- sink writes its columns from it.
local M = {}

local Schema = {}
Schema.__index = Schema
Schema.__tostring = function(s) return "sproc.schema(" .. s.spec .. ")" end

M.types = { string = true, int64 = true, double = true, boolean = true, timestamp = true,
            date = true }

local TYPES = "string, int64, double, boolean, timestamp, date, decimal(p,s), " ..
              "list<type> or a struct"

function M.is_schema(v) return getmetatable(v) == Schema end

-- The spec of a plain type ("decimal(10,2)" checked), or nil.
local function plain(typ)
  if M.types[typ] then return typ end
  local p, s = typ:match("^decimal%((%d+),%s*(%d+)%)$")
  p, s = tonumber(p), tonumber(s)
  if p and p >= 1 and p <= 18 and s <= p then return "decimal(" .. p .. "," .. s .. ")" end
end

-- The spec of a field's type given as a string, or nil and why not.
local function leaf_spec(typ)
  local spec = plain(typ)
  if spec then return spec end
  if typ:match("^decimal") then
    return nil, "decimal(p,s) needs a precision p from 1 to 18 and a scale s from 0 to p"
  end
  local el = typ:match("^list<(.*)>$")
  if el then
    local es = plain(el)
    if es then return "list<" .. es .. ">" end
    return nil, "a list's elements are of a plain type (" ..
                "string, int64, double, boolean, timestamp, date or decimal(p,s))"
  end
  return nil, "unknown type \"" .. typ .. "\" (" .. TYPES .. ")"
end

--- Builds a schema from a list of fields, each { name, type,
--- nullable = false? }: type is "string", "int64", "double", "boolean",
--- "timestamp", "date", "decimal(p,s)" (p up to 18), "list<T>" (T one of
--- those before), or a nested struct (a schema or a list of fields).
--- Fields are nullable unless nullable = false; a list's elements are.
function M.new(fields, level)
  level = (level or 1) + 1
  for k in pairs(type(fields) == "table" and fields or {}) do
    if type(k) ~= "number" then
      error("sproc.schema: \"" .. tostring(k) .. "\" is not a field: give fields as " ..
            "{ \"" .. tostring(k) .. "\", \"type\" } in a list (a list keeps the column order)", level)
    end
  end
  if type(fields) ~= "table" or #fields == 0 then
    error("sproc.schema expects a list of fields: { {\"name\", \"type\"}, ... } " ..
          "(a list keeps the column order)", level)
  end
  local parts, seen, names, kept = {}, {}, {}, {}
  for i, f in ipairs(fields) do
    if type(f) ~= "table" then
      error("sproc.schema: field " .. i .. " must be { \"name\", \"type\" }", level)
    end
    require("sproc.options").check("sproc.schema: field " .. i, f,
                                   { 1, 2, "name", "type", "nullable" }, level)
    local name, typ = f[1] or f.name, f[2] or f.type
    if type(name) ~= "string" or name == "" or name:find("[:,{}!]") then
      error("sproc.schema: field " .. i .. " needs a name without : , { } or !", level)
    end
    if seen[name] then error("sproc.schema: field " .. name .. " is declared twice", level) end
    seen[name] = true
    local spec
    if type(typ) == "string" then
      local ts, why = leaf_spec(typ)
      if not ts then error("sproc.schema: field " .. name .. ": " .. why, level) end
      spec = name .. ":" .. ts
    elseif M.is_schema(typ) then
      spec = name .. ":struct{" .. typ.spec .. "}"
    elseif type(typ) == "table" then
      spec = name .. ":struct{" .. M.new(typ, level).spec .. "}"
    else
      error("sproc.schema: field " .. name .. " needs a type", level)
    end
    if f.nullable == false then spec = spec .. "!" end
    parts[#parts + 1] = spec
    names[#names + 1] = name
    kept[#kept + 1] = { name = name, nullable = f.nullable ~= false,
                        type = type(typ) == "string" and leaf_spec(typ) or
                               (M.is_schema(typ) and typ or M.new(typ, level)) }
  end
  return setmetatable({ spec = table.concat(parts, ","), names = names, fields = kept }, Schema)
end

-- Avro's types as sproc's schemas take them (what the Avro decoder gives).
local from_avro_types = { boolean = "boolean", int = "int64", long = "int64", float = "double",
                          double = "double", string = "string", bytes = "string", enum = "string",
                          fixed = "string" }

--- The sproc schema of an Avro record schema (Avro's JSON, a string or a
--- table): the same fields in the same order, a union with null nullable,
--- the others not; timestamp-millis a timestamp, date a date, decimal a
--- decimal (up to 18 digits), arrays of those lists, records structs.
--- Maps, unions of two types and arrays of records have no counterpart.
function M.from_avro(avro, level)
  level = (level or 1) + 1
  if type(avro) == "string" then
    local ok, t = pcall(require("sproc.json").decode, avro)
    if not ok or type(t) ~= "table" then error("sproc.schema.from_avro: not Avro's JSON", level) end
    avro = t
  end
  if type(avro) ~= "table" or avro.type ~= "record" or type(avro.fields) ~= "table" then
    error("sproc.schema.from_avro expects an Avro record schema", level)
  end
  local function leaf(t, where)
    local nullable = false
    if type(t) == "table" and t[1] ~= nil then
      local other
      for _, b in ipairs(t) do
        if b == "null" then nullable = true elseif other == nil then other = b
        else error("sproc.schema.from_avro: " .. where .. ": a union of two types", level + 1) end
      end
      t = other
    end
    if type(t) == "string" then
      local st = from_avro_types[t]
      if not st then error("sproc.schema.from_avro: " .. where .. ": type " .. t .. " (a named type " ..
                           "given again by name is not followed)", level + 1) end
      return st, nullable
    end
    if type(t) ~= "table" then error("sproc.schema.from_avro: " .. where .. ": no type", level + 1) end
    local lt = t.logicalType
    if lt == "timestamp-millis" and t.type == "long" then return "timestamp", nullable end
    if lt == "date" and t.type == "int" then return "date", nullable end
    if lt == "decimal" and (t.type == "bytes" or t.type == "fixed") then
      if (t.precision or 0) > 18 then
        error("sproc.schema.from_avro: " .. where .. ": a decimal over 18 digits", level + 1)
      end
      return "decimal(" .. t.precision .. "," .. (t.scale or 0) .. ")", nullable
    end
    if t.type == "record" then return M.from_avro(t, level + 1), nullable end
    if t.type == "array" then
      local el = leaf(t.items, where .. "[]")
      if type(el) ~= "string" then
        error("sproc.schema.from_avro: " .. where .. ": an array of records", level + 1)
      end
      return "list<" .. el .. ">", nullable
    end
    if t.type == "map" then error("sproc.schema.from_avro: " .. where .. ": a map", level + 1) end
    return leaf(t.type, where)
  end
  local fields = {}
  for i, f in ipairs(avro.fields) do
    local st, nullable = leaf(f.type, "field " .. tostring(f.name))
    fields[i] = { f.name, st, nullable = nullable }
  end
  return M.new(fields, level)
end

local to_avro_types = { string = "string", int64 = "long", double = "double", boolean = "boolean",
                        timestamp = { type = "long", logicalType = "timestamp-millis" },
                        date = { type = "int", logicalType = "date" } }

--- The Avro record schema (Avro's JSON text) of this schema, named name
--- (nested structs name_field): nullable fields a union with null,
--- defaulting to null.
function Schema:to_avro(name)
  local function avro_type(t, path)
    if M.is_schema(t) then
      local fields = {}
      for i, f in ipairs(t.fields) do
        local ft = avro_type(f.type, path .. "_" .. f.name)
        fields[i] = f.nullable and { name = f.name, type = { "null", ft }, default = require("sproc.json").null }
                               or { name = f.name, type = ft }
      end
      return { type = "record", name = path, fields = fields }
    end
    local el = t:match("^list<(.*)>$")
    if el then return { type = "array", items = avro_type(el, path) } end
    local p, sc = t:match("^decimal%((%d+),(%d+)%)$")
    if p then return { type = "bytes", logicalType = "decimal", precision = tonumber(p), scale = tonumber(sc) } end
    return to_avro_types[t]
  end
  return require("sproc.json").encode(avro_type(self, name or "Record"))
end

return M
