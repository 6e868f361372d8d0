-- In-process benchmarks: pipelines on the native core, no broker. Records
-- are pushed into batches once, then the same batch runs repeatedly, so
-- what is measured is sproc's per-record path (view, JSON index, Lua
-- operators, output encoding) and not the input generator.
--
--   luajit tests/bench/inproc.lua [records] [batch]    (SPROC_LIB, LUA_PATH as for busted)
local ffi = require "ffi"
local core = require "sproc.core"
local runtime = require "sproc.runtime"

local C = core.C
local N = tonumber(arg[1]) or 2000000
local BATCH = tonumber(arg[2]) or 1024

local bench_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local now, rss_kb = benchlib.now, benchlib.rss_kb
local unpack = unpack or table.unpack

-- ~100-byte JSON records, as in the benchmark issue.
local function record(i)
  return string.format('{"id":%d,"user":"u%05d","amount":%d.%02d,"country":"%s","ok":%s}',
                       i, i % 50000, i % 997, i % 100, ({ "NL", "DE", "FR", "US" })[i % 4 + 1],
                       i % 3 == 0 and "false" or "true")
end

-- SPROC_BENCH=name runs only the benchmarks whose name contains it
-- (for profiling one).
local only = os.getenv("SPROC_BENCH")
-- SPROC_BENCH_JV=path logs LuaJIT's traces (jit.v) to path.1, path.2, ...,
-- one file a benchmark, while its records run and not while its pipeline
-- is built: what the record path compiles, and only that.
local jv_path, jv_n = os.getenv("SPROC_BENCH_JV"), 0
local jv = jv_path and require("jit.v")

local function bench(name, build)
  if only and not name:find(only, 1, true) then return end
  local _, ctx, env = benchlib.pipeline(build)
  local errp = ffi.new("const char *[1]")
  local tid = C.sp_topic_id(ctx, "in")
  C.sp_batch_reset(ctx)
  -- from record 1: a batch of one then holds a record every filter
  -- passes (record 0 is filtered out), a batch of 64 or 1024 the usual mix
  for i = 1, BATCH do
    local v = record(i)
    C.sp_batch_push(ctx, tid, 0, i, "k" .. i, #("k" .. i), v, #v, 1000 + i, errp)
  end
  -- five timed parts of N records each, reported as their median (the
  -- machine is shared: one long run would mix in whatever else ran)
  local rounds = math.max(1, math.floor(N / 5 / BATCH))
  if jv then
    jv_n = jv_n + 1
    jv.on(jv_path .. "." .. jv_n)
  end
  -- warm up (JIT)
  for _ = 1, 50 do runtime.run_batch(env); C.sp_out_clear(ctx) end
  local rates = {}
  for part = 1, 5 do
    local t0 = now()
    for _ = 1, rounds do
      local msg = runtime.run_batch(env)
      if msg then error(msg) end
      C.sp_out_clear(ctx)
    end
    rates[part] = rounds * BATCH / (now() - t0)
  end
  if jv then jv.off() end
  local rate = benchlib.median(rates)
  print(string.format("%-34s %9.0f records/s  %7.1f ns/record  rss %6.1f MiB  (parts %.0f-%.0f)",
                      name, rate, 1e9 / rate, rss_kb() / 1024,
                      math.min(unpack(rates)), math.max(unpack(rates))))
end

print(string.format("sproc %s, %d records per run, batches of %d", core.version, N, BATCH))

bench("pass-through (bytes)", function(s)
  s.source{ topic = "in", value = "bytes" }:to{ topic = "out" }
end)
bench("json parse + pass-through", function(s)
  s.source{ topic = "in", value = "json" }:to{ topic = "out" }
end)
bench("S1: filter + select 2 fields", function(s)
  s.source{ topic = "in", value = "json" }
    :filter(function(r) return r.value.ok end)
    :select{ "id", "amount" }
    :to{ topic = "out" }
end)
bench("json decode to a table + encode", function(s)
  s.source{ topic = "in", value = "json" }
    :map(function(r) return s.json.totable(r.value) end)
    :to{ topic = "out" }
end)
bench("filter + map to table + encode", function(s)
  s.source{ topic = "in", value = "json" }
    :filter(function(r) return r.value.ok end)
    :map(function(r) return { id = r.value.id, amount = r.value.amount } end)
    :to{ topic = "out" }
end)
bench("filter + key_by + map(string)", function(s)
  s.source{ topic = "in", value = "json" }
    :filter(function(r) return r.value.amount > 10 end)
    :key_by(function(r) return r.value.user end)
    :map(function(r) return r.value.country end)
    :to{ topic = "out" }
end)
