-- Parquet write throughput, in process: trip records (~430-byte JSON, the
-- tutorial's 20 fields) through a schema into Parquet files, one batch of
-- distinct records run repeatedly; the files are written and published
-- for real (to a temporary directory) and the time includes the last
-- flush. Prints records/s and MB/s of JSON input per configuration.
--
--   luajit tests/bench/parquet.lua [records]    (SPROC_LIB, LUA_PATH as for busted)
local ffi = require "ffi"
local core = require "sproc.core"
local sproc = require "sproc"
local runtime = require "sproc.runtime"

local C = core.C
local N = tonumber(arg[1]) or 2000000
local BATCH = 1024

local bench_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local now, rss_kb = benchlib.now, benchlib.rss_kb

local function trip(i)
  local m = i % 60
  return string.format('{"vendorid":"%d","lpep_pickup_datetime":"2016-01-01 %02d:%02d:%02d",' ..
    '"lpep_dropoff_datetime":"2016-01-01 %02d:%02d:%02d","passenger_count":"%d",' ..
    '"trip_distance":"%d.%02d","pickup_longitude":"-73.%06d","pickup_latitude":"40.%06d",' ..
    '"dropoff_longitude":"-73.%06d","dropoff_latitude":"40.%06d","ratecodeid":"1",' ..
    '"store_and_fwd_flag":"N","payment_type":"%d","fare_amount":"%d.%02d","extra":"0.5",' ..
    '"mta_tax":"0.5","tip_amount":"%d.%02d","tolls_amount":"0","improvement_surcharge":"0.3",' ..
    '"total_amount":"%d.%02d","trip_type":"1"}',
    i % 2 + 1, i % 24, m, (i * 7) % 60, (i + 1) % 24, m, (i * 11) % 60, i % 5 + 1,
    i % 20, i % 100, (i * 7919) % 1000000, (i * 104729) % 1000000, (i * 15485863) % 1000000,
    (i * 32452843) % 1000000, i % 2 + 1, 5 + i % 40, i % 100, i % 10, i % 100, 7 + i % 50, i % 100)
end

local fields = {
  { "vendorid", "int64" }, { "lpep_pickup_datetime", "timestamp" },
  { "lpep_dropoff_datetime", "timestamp" }, { "passenger_count", "int64" },
  { "trip_distance", "double" }, { "pickup_longitude", "double" }, { "pickup_latitude", "double" },
  { "dropoff_longitude", "double" }, { "dropoff_latitude", "double" }, { "ratecodeid", "int64" },
  { "store_and_fwd_flag", "string" }, { "payment_type", "int64" }, { "fare_amount", "double" },
  { "extra", "double" }, { "mta_tax", "double" }, { "tip_amount", "double" },
  { "tolls_amount", "double" }, { "improvement_surcharge", "double" }, { "total_amount", "double" },
  { "trip_type", "int64" },
}

local dir = os.tmpname()
os.remove(dir)

local function bench(name, opts)
  local ctx = ffi.gc(C.sp_ctx_create(), C.sp_ctx_destroy)
  sproc._reset(nil)
  local out = dir .. "/" .. name:gsub("%W", "_")
  opts.dir, opts.schema = out, sproc.schema(fields)
  sproc.source{ topic = "in", value = "string" }:to_parquet(opts)
  local env = runtime.compile(ctx, { default_id = "bench" })
  local errp = ffi.new("const char *[1]")
  local tid = C.sp_topic_id(ctx, "in")
  C.sp_batch_reset(ctx)
  local bytes = 0
  for i = 0, BATCH - 1 do
    local v = trip(i)
    bytes = bytes + #v
    C.sp_batch_push(ctx, tid, 0, i, nil, 0, v, #v, 1000 + i, errp)
  end
  local rounds = math.floor(N / BATCH)
  for _ = 1, 20 do runtime.run_batch(env) end
  local t0 = now()
  for _ = 1, rounds do
    local msg = runtime.run_batch(env)
    if msg then error(msg) end
  end
  if C.sp_ctx_flush(ctx, errp) ~= 0 then error(ffi.string(errp[0])) end
  local dt = now() - t0
  local n = rounds * BATCH
  local p = io.popen("du -sk " .. out)
  local kb = tonumber(p:read("*l"):match("^(%d+)"))
  p:close()
  print(string.format("%-26s %9.0f records/s  %6.1f MB/s JSON in  %7.1f ns/record  files %6.1f MiB  rss %6.1f MiB",
                      name, n / dt, n * bytes / BATCH / dt / 1e6, dt / n * 1e9, kb / 1024,
                      rss_kb() / 1024))
end

print(string.format("%d trip records (%d distinct), batch %d", N, BATCH, BATCH))
bench("parquet snappy+dictionary", { compression = "snappy" })
bench("parquet zstd+dictionary", { compression = "zstd" })
bench("parquet zstd plain", { compression = "zstd", dictionary = false })
bench("parquet uncompressed plain", { compression = "none", dictionary = false })
os.execute("rm -rf " .. dir)
