-- Schemas: sproc.schema{ {"name", "type"}, ... } declares the fields of
-- JSON values (Spark's StructType). The core applies a schema in C: at a
-- source (schema = s) every record's value is converted, and a Parquet
-- sink writes its columns from it.
local M = {}

local Schema = {}
Schema.__index = Schema
Schema.__tostring = function(s) return "sproc.schema(" .. s.spec .. ")" end

M.types = { string = true, int64 = true, double = true, boolean = true, timestamp = true }

function M.is_schema(v) return getmetatable(v) == Schema end

--- Builds a schema from a list of fields, each { name, type,
--- nullable = false? }: type is "string", "int64", "double", "boolean",
--- "timestamp", or a nested struct (a schema or a list of fields). Fields
--- are nullable unless nullable = false.
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
      if not M.types[typ] then
        error("sproc.schema: field " .. name .. " has unknown type \"" .. typ ..
              "\" (string, int64, double, boolean, timestamp or a struct)", level)
      end
      spec = name .. ":" .. typ
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
