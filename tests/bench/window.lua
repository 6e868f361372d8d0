-- In-process: a windowed count over 1M distinct keys (one tumbling window
-- each, none closing), on the native core through the test driver.
-- Reports records/s, the window store's bytes per key and RSS.
--   SPROC_LIB=build/libsproc.so LUA_PATH="lua/?.lua;lua/?/init.lua;;" luajit tests/bench/window.lua [KEYS] [RUNS]
local testing = require "sproc.testing"
local C = require("sproc.core").C

local keys = tonumber(arg[1]) or 1000000
local runs = tonumber(arg[2]) or 3

local bench_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local rss_kib = benchlib.rss_kb

local rates = {}
local per_key, rss
for run = 1, runs do
  local d = testing.driver(function(sproc)
    sproc.source{ topic = "in" }
      :window(sproc.window.tumbling{ size = "1h", grace = "1h" })
      :aggregate{ n = sproc.agg.count(), name = "w" }
      :to{ topic = "out" }
  end)
  local batch = {}
  for i = 1, 1000 do batch[i] = { key = "", ts = 0 } end
  local t0 = os.clock()
  for b = 0, keys / 1000 - 1 do
    for i = 1, 1000 do
      local n = b * 1000 + i
      batch[i].key = "user-" .. n
      batch[i].ts = n
    end
    d:pipe("in", batch)
  end
  local dt = os.clock() - t0
  rates[run] = keys / dt
  per_key = tonumber(C.sp_store_bytes(d.ctx, C.sp_store_find(d.ctx, "w"))) / keys
  rss = rss_kib()
  d = nil
  collectgarbage()
end
table.sort(rates)
print(string.format("windowed count, %d distinct keys: median %.0f records/s (runs %s), " ..
                    "window store %.0f bytes/key, RSS %.0f MiB",
                    keys, rates[math.ceil(runs / 2)],
                    table.concat((function() local t = {} for i, r in ipairs(rates) do t[i] = string.format("%.0f", r) end return t end)(), " "),
                    per_key, rss / 1024))
