-- In-process: decode + filter + project + encode over trip records, in
-- Avro (Confluent's wire format, schemas known by id) and in JSON, side by
-- side in alternating runs, records fed straight into the core. Reports
-- records/s per run and the medians.
--   SPROC_LIB=build/libsproc.so LUA_PATH="lua/?.lua;lua/?/init.lua;;" luajit tests/bench/avro.lua [RECORDS] [RUNS]
local bench_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path
local ffi = require "ffi"
local benchlib = require "benchlib"
local json = require "sproc.json"
local C = require("sproc.core").C

local records = tonumber(arg[1]) or 1000000
local runs = tonumber(arg[2]) or 5

local TRIP = json.encode {
  type = "record", name = "Trip", fields = {
    { name = "id", type = "long" }, { name = "vendor", type = "string" },
    { name = "pickup", type = { type = "long", logicalType = "timestamp-millis" } },
    { name = "passengers", type = "int" }, { name = "distance", type = "double" },
    { name = "fare", type = "double" }, { name = "tip", type = "double" },
    { name = "zone", type = "string" }, { name = "cash", type = "boolean" } } }
local FARE = [[{"type":"record","name":"Fare","fields":[{"name":"id","type":"long"},
  {"name":"fare","type":"double"},{"name":"zone","type":"string"}]}]]

local function trip(i)
  return string.format('{"id":%d,"vendor":"v%d","pickup":%d,"passengers":%d,"distance":%.2f,' ..
                       '"fare":%.2f,"tip":%.2f,"zone":"zone-%03d","cash":%s}', i, i % 7,
                       1704164645000 + i, i % 5, (i % 300) / 10, (i % 900) / 10, (i % 50) / 10,
                       i % 263, i % 3 == 0 and "true" or "false")
end

local function make(avro)
  local feed, ctx = benchlib.pipeline(function(sproc)
    sproc.source{ topic = "trips", value = avro and "avro" or "json" }
      :filter(function(r) return r.value.fare > 10 end)
      :map(function(r) return { id = r.value.id, fare = r.value.fare, zone = r.value.zone } end)
      :to(avro and { topic = "fares", value = "avro", schema = FARE } or { topic = "fares" })
  end)
  -- the input: 1,000 distinct records, as a producer would send them
  local errp, out, outl = ffi.new("const char *[1]"), ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local inputs = {}
  local id = avro and C.sp_avro_register(ctx, "trips-value", TRIP, #TRIP, errp)
  for i = 0, 999 do
    local j = trip(i)
    if avro then
      assert(C.sp_avro_frame(ctx, id, j, #j, out, outl, errp) == 0, "frame")
      inputs[i] = ffi.string(out[0], outl[0])
    else
      inputs[i] = j
    end
  end
  return feed, function(i) return nil, 0, inputs[i % 1000], i end, #inputs[1]
end

local results = { avro = {}, json = {} }
local pipes = { avro = { make(true) }, json = { make(false) } }
print(string.format("record sizes: avro %d bytes, json %d bytes", pipes.avro[3], pipes.json[3]))
for r = 1, runs do
  for _, kind in ipairs(r % 2 == 1 and { "avro", "json" } or { "json", "avro" }) do
    local feed, fill = pipes[kind][1], pipes[kind][2]
    local t0 = benchlib.now()
    for b = 0, records / 1000 - 1 do feed("trips", b * 1000, 1000, fill) end
    local rate = records / (benchlib.now() - t0)
    results[kind][#results[kind] + 1] = rate
    print(string.format("run %d %-4s %10.0f records/s", r, kind, rate))
  end
end
local a, j = benchlib.median(results.avro), benchlib.median(results.json)
print(string.format("medians: avro %.0f records/s, json %.0f records/s (avro/json %.2f)", a, j, a / j))
