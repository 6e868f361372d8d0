-- In-process: windowed counts on the native core, records fed straight
-- into the core's batch:
--   open:    1M distinct keys, one 1-hour tumbling window each, none
--            closing (the state grows to 1M windows);
--   closing: S2 of the broker benchmark: 1M keys, 10-second tumbling
--            windows with grace 0, records 2 ms apart, so windows close
--            (and their results go out) as stream time moves.
-- Reports the median records/s of RUNS runs, the window store's bytes per
-- open window and the RSS after the first run.
--   SPROC_LIB=build/libsproc.so LUA_PATH="lua/?.lua;lua/?/init.lua;;" luajit tests/bench/window.lua [KEYS] [RUNS]
local bench_dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path
local benchlib = require "benchlib"
local C = require("sproc.core").C

local keys = tonumber(arg[1]) or 1000000
local runs = tonumber(arg[2]) or 3

local function bench(name, size, grace, ts_of)
  local rates, per_key, rss = {}, 0, 0
  for run = 1, runs do
    local feed, ctx = benchlib.pipeline(function(sproc)
      sproc.source{ topic = "in" }
        :window(sproc.window.tumbling{ size = size, grace = grace })
        :aggregate{ n = sproc.agg.count(), name = "w" }
        :to{ topic = "out" }
    end)
    local function fill(i)
      local kp, kl = benchlib.key("u", i % 1000000, 6)
      return kp, kl, nil, ts_of(i)
    end
    local t0 = benchlib.now()
    for b = 0, keys / 1000 - 1 do feed("in", b * 1000, 1000, fill) end
    rates[run] = keys / (benchlib.now() - t0)
    local st = C.sp_store_find(ctx, "w")
    local n = tonumber(C.sp_store_size(ctx, st, -1))
    per_key = n > 0 and tonumber(C.sp_store_bytes(ctx, st)) / n or 0
    -- (after the first run: later ones reuse what the allocator kept)
    if run == 1 then rss = benchlib.rss_kb() end
    feed, ctx = nil, nil
    collectgarbage()
    collectgarbage()
  end
  local r = {}
  for i, x in ipairs(rates) do r[i] = string.format("%.0f", x) end
  print(string.format("windowed count, %-8s %d keys: median %8.0f records/s (%5.0f ns; runs %s), " ..
                      "%4.0f bytes/open window, rss %5.0f MiB", name, keys, benchlib.median(rates),
                      1e9 / benchlib.median(rates), table.concat(r, " "), per_key, rss / 1024))
end

-- (closing first: the RSS after the open one includes what the
-- allocator kept from before)
bench("closing", "10s", 0, function(i) return 1700000000000 + 2 * i end)
bench("open", "1h", "1h", function(i) return 1000 + i % 1000000 end)
