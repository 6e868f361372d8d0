-- Avro sources and sinks on the test driver: records in the Confluent
-- wire format decoded to fields as JSON values are, filtered, projected
-- and written as Avro of another schema.
local testing = require "sproc.testing"
local json = require "sproc.json"

local TRIP = {
  type = "record", name = "Trip", namespace = "nyc",
  fields = {
    { name = "id", type = "long" },
    { name = "vendor", type = { "null", "string" }, default = json.null },
    { name = "fare", type = { type = "bytes", logicalType = "decimal", precision = 9, scale = 2 } },
    { name = "pickup", type = { type = "long", logicalType = "timestamp-millis" } },
    { name = "tags", type = { type = "array", items = "string" } },
  },
}
local OUT = [[{"type":"record","name":"Fare","fields":[
  {"name":"id","type":"long"},{"name":"fare","type":"double"},
  {"name":"vendor","type":["null","string"],"default":null}]}]]

local function pipeline()
  return testing.driver(function(sproc)
    sproc.source{ topic = "trips", value = "avro" }
      :filter(function(r) return r.value.fare > 10 end)
      :map(function(r) return { id = r.value.id, fare = r.value.fare, vendor = r.value.vendor } end)
      :to{ topic = "fares", value = "avro", schema = OUT }
  end)
end

describe("Avro", function()
  it("reads fields of Avro values and writes Avro of another schema", function()
    local d = pipeline()
    local recs = {}
    for i = 1, 20 do
      recs[i] = { key = "t" .. i, value = d:avro(TRIP, {
        id = i, vendor = i % 3 == 0 and json.null or ("v" .. i), fare = string.format("%d.%02d", i, i),
        pickup = "2024-01-02T03:04:05Z", tags = { "a" } }, "trips-value") }
    end
    d:pipe("trips", recs)
    local got = {}
    for _, r in ipairs(d:output("fares")) do got[#got + 1] = d:from_avro(r.value) end
    assert.are.equal(11, #got)                 -- fares 10.10 .. 20.20
    assert.are.same({ id = 10, fare = 10.1, vendor = "v10" }, got[1])
    assert.are.equal(json.null, got[3].vendor) -- 12 is a multiple of 3
    assert.are.equal(20.2, got[11].fare)
  end)

  it("sends a record that is not Avro to the error policy", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "dead" }
      sproc.source{ topic = "trips", value = "avro" }:to{ topic = "out" }
    end)
    d:pipe("trips", { { key = "a", value = '{"id":1}' } })
    local dead = d:output("dead")
    assert.are.equal(1, #dead)
    assert.matches("not Avro", dead[1].headers["sproc.error"] or "")
  end)

  it("refuses a value that does not fit the sink's schema, naming the field", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "dlq", dlq = "dead" }
      sproc.source{ topic = "in", value = "json" }:to{ topic = "out", value = "avro", schema = OUT }
    end)
    d:pipe("in", { { key = "a", value = { id = 1, fare = "x" } }, { key = "b", value = { id = 2, fare = 3 } } })
    assert.are.equal(1, #d:output("out"))
    assert.matches("field fare: expected a number", d:output("dead")[1].headers["sproc.error"] or "")
  end)

  it("checks its options while the pipeline is built", function()
    assert.has_error(function()
      testing.driver(function(sproc) sproc.source{ topic = "in" }:to{ topic = "o", value = "avro" } end)
    end)
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in" }:to{ topic = "o", value = "avro", schema = '{"type":"nosuch"}' }
      end)
    end)
  end)
end)

describe("sproc schemas and Avro schemas", function()
  local sproc = require "sproc"

  it("derives a sproc schema from an Avro record, types kept for Parquet", function()
    local s = sproc.schema.from_avro(TRIP)
    assert.are.equal("id:int64!,vendor:string,fare:decimal(9,2)!,pickup:timestamp!,tags:list<string>!", s.spec)
    assert.has_error(function()
      sproc.schema.from_avro { type = "record", name = "M", fields = { { name = "m", type = { type = "map", values = "int" } } } }
    end, "sproc.schema.from_avro: field m: a map")
  end)

  it("gives an Avro schema of a sproc schema that reads back the same", function()
    local s = sproc.schema{ { "id", "int64", nullable = false }, { "at", "timestamp" }, { "day", "date" },
                            { "price", "decimal(10,2)" }, { "tags", "list<string>" },
                            { "where", { { "lat", "double" }, { "ok", "boolean", nullable = false } } } }
    local avro = s:to_avro("Row")
    assert.are.equal(s.spec, sproc.schema.from_avro(avro).spec)
    -- and the codec takes it: a value written by it reads back
    local d = testing.driver(function(sp)
      sp.source{ topic = "in", value = "json" }:to{ topic = "out", value = "avro", schema = avro }
    end)
    d:pipe("in", { key = "a", value = { id = 1, at = 5, day = "2024-02-29", price = 1.5, tags = { "x" },
                                        where = { lat = 52.3, ok = true } } })
    local v = d:from_avro(d:output("out")[1].value)
    assert.are.same({ id = 1, at = 5, day = "2024-02-29", price = 1.5, tags = { "x" },
                      where = { lat = 52.3, ok = true } }, v)
  end)
end)

describe("Avro subjects", function()
  it("registers under the topic's name or, with subject_strategy = \"record\", the record's", function()
    local NYC = [[{"type":"record","name":"Fare","namespace":"nyc","fields":[{"name":"id","type":"long"}]}]]
    local d = testing.driver(function(sproc)
      local s = sproc.source{ topic = "in", value = "json" }
      s:to{ topic = "a", value = "avro", schema = OUT }
      s:to{ topic = "b", value = "avro", subject_strategy = "record", schema = NYC }
    end)
    local C = require("sproc.core").C
    local errp = require("ffi").new("const char *[1]")
    -- the same subject and schema give the same id: the sinks registered these
    local a = C.sp_avro_register(d.ctx, "a-value", OUT, #OUT, errp)
    local b = C.sp_avro_register(d.ctx, "nyc.Fare", NYC, #NYC, errp)
    d:pipe("in", { key = "k", value = { id = 7, fare = 1.5 } })
    local ida = string.byte(d:output("a")[1].value, 5)
    local idb = string.byte(d:output("b")[1].value, 5)
    assert.are.equal(a % 256, ida)
    assert.are.equal(b % 256, idb)
  end)
end)

describe("Avro keys", function()
  it("are read and written like values, under <topic>-key", function()
    local KEY = [[{"type":"record","name":"K","fields":[{"name":"trip","type":"long"}]}]]
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", key = "avro", value = "json" }
        :map(function(r) return { seen = r.key.trip } end)
        :to{ topic = "out", key = "avro", key_schema = KEY, value = "avro", schema =
             [[{"type":"record","name":"V","fields":[{"name":"seen","type":"long"}]}]] }
    end)
    d:pipe("in", { key = d:avro(KEY, { trip = 42 }, "in-key"), value = { x = 1 } })
    local o = d:output("out")[1]
    assert.are.same({ trip = 42 }, d:from_avro(o.key))
    assert.are.same({ seen = 42 }, d:from_avro(o.value))
  end)
end)

describe("Avro with a fixed schema id", function()
  it("needs the id known to the registry when the pipeline is built", function()
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in", value = "json" }:to{ topic = "out", value = "avro", schema_id = 7 }
      end)
    end, "to(out): schema_id: no schema with id 7 (no registry)")
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in" }:to{ topic = "out", value = "json", schema_id = 7 }
      end)
    end)
  end)
end)
