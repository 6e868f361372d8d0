-- In-process: state operations through the Lua store API on the native
-- core, at 1M and 10M distinct keys: incr (a read and a write) of every
-- key, then a get of every key, each from a pipeline's each() over records
-- fed straight into the core. Reports operations/s, ns per operation (the
-- record's way through the pipeline included), bytes per key of the store
-- and RSS.
--   SPROC_LIB=build/libsproc.so LUA_PATH="lua/?.lua;lua/?/init.lua;;" luajit tests/bench/state.lua [KEYS...]
local bench_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local C = require("sproc.core").C

local sizes = {}
for i = 1, #arg do sizes[#sizes + 1] = tonumber(arg[i]) end
if #sizes == 0 then sizes = { 1000000, 10000000 } end

for _, keys in ipairs(sizes) do
  local got = 0
  local feed, ctx = benchlib.pipeline(function(sproc)
    local counts = sproc.store{ name = "counts" }
    sproc.source{ topic = "in" }:each(function(r) counts:incr(r.key) end)
    sproc.source{ topic = "read" }:each(function(r) got = got + (counts:get(r.key) or 0) end)
  end)
  C.sp_store_set_budget(ctx, 0)   -- 10M keys are over the default 1 GiB
  local function fill(i) return benchlib.key("user-", i, 9) end
  local function run(topic)
    local t0 = benchlib.now()
    for b = 0, keys / 1000 - 1 do feed(topic, b * 1000, 1000, fill) end
    return keys / (benchlib.now() - t0)
  end
  local w = run("in")
  local r = run("read")
  assert(got == keys, "every key reads back 1")
  local st = C.sp_store_find(ctx, "counts")
  print(string.format("kv store, %9d keys: incr %8.0f ops/s (%6.0f ns)  get %8.0f ops/s (%6.0f ns)  " ..
                      "%5.0f bytes/key  rss %6.0f MiB", keys, w, 1e9 / w, r, 1e9 / r,
                      tonumber(C.sp_store_bytes(ctx, st)) / keys, benchlib.rss_kb() / 1024))
  feed, ctx = nil, nil
  collectgarbage()
  collectgarbage()
end
