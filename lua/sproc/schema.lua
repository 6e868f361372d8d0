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
  local parts, seen, names = {}, {}, {}
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
  end
  return setmetatable({ spec = table.concat(parts, ","), names = names }, Schema)
end

return M
