-- Windowed aggregation on the test driver: window bounds, grace and late
-- records, emit modes, sessions, and the end of a bounded run.
local testing = require "sproc.testing"

local function rec(key, ts, v, partition)
  return { key = key, ts = ts, value = { v = v }, partition = partition }
end

local function results(d, topic)
  local out = {}
  for _, r in ipairs(d:output(topic or "out", { json = true })) do
    local v = r.value
    out[#out + 1] = r.key .. "@" .. v.window_start .. "-" .. v.window_end .. ":" ..
                    tostring(v.n) .. (v.total and ("/" .. v.total) or "")
  end
  return out
end

local function pipeline(w, emit, extra)
  return testing.driver(function(sproc)
    local agg = { n = sproc.agg.count(), total = sproc.agg.sum(function(r) return r.value.v end) }
    for k, v in pairs(extra or {}) do agg[k] = v end
    local s = sproc.source{ topic = "in", value = "json" }
      :window(w(sproc))
      :aggregate(agg)
    if emit then s = s:emit(emit) end
    s:to{ topic = "out" }
  end)
end

describe("tumbling windows", function()
  local tumbling = function(sproc) return sproc.window.tumbling{ size = "10s", grace = "2s" } end

  it("emit a final result per key and window when stream time passes end + grace", function()
    local d = pipeline(tumbling)
    d:pipe("in", { rec("a", 1000, 1), rec("a", 9999, 2), rec("b", 5000, 10), rec("a", 10000, 4) })
    assert.are.same({}, results(d))            -- stream time 10000 < 10000 + 2000
    d:pipe("in", rec("c", 11999, 0))
    assert.are.same({}, results(d))
    d:pipe("in", rec("c", 12000, 0))           -- [0, 10000) closes
    local got = results(d)
    table.sort(got)
    assert.are.same({ "a@0-10000:2/3", "b@0-10000:1/10" }, got)
  end)

  it("gives results as records: key, JSON value, the window's latest event time", function()
    local d = pipeline(tumbling)
    d:pipe("in", { rec("k", 3000, 1), rec("k", 7000, 1), rec("x", 30000, 0) })
    local r = d:output("out", { json = true })[1]
    assert.are.equal("k", r.key)
    assert.are.equal(7000, r.ts)
    assert.are.same({ window_start = 0, window_end = 10000, n = 2, total = 2 }, r.value)
  end)

  it("counts late records and leaves their windows alone", function()
    local late = {}
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.tumbling{ size = "10s", grace = "2s" })
        :aggregate{ n = sproc.agg.count(), late = function(r) late[#late + 1] = r.ts end }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("a", 1000, 1), rec("a", 13000, 1) })  -- closes [0, 10s)
    d:pipe("in", { rec("a", 11000, 1), rec("a", 9000, 1) })  -- 11000 on time, 9000 late
    assert.are.same({ 9000 }, late)
    assert.are.equal(1, d:stats().late)
    d:close_windows()
    local got = results(d)
    assert.are.same({ "a@0-10000:1", "a@10000-20000:2" }, got)
  end)

  it("emit update gives a result per change", function()
    local d = pipeline(tumbling, "update")
    d:pipe("in", { rec("a", 1000, 1), rec("a", 2000, 2), rec("a", 11000, 5) })
    assert.are.same({ "a@0-10000:1/1", "a@0-10000:2/3", "a@10000-20000:1/5" }, results(d))
  end)

  it("keeps windows per partition", function()
    local d = pipeline(tumbling)
    d:pipe("in", { rec("a", 1000, 1, 0), rec("a", 2000, 1, 1), rec("a", 20000, 0, 0) })
    assert.are.same({ "a@0-10000:1/1" }, results(d))  -- partition 1's stream time is 2000
    d:close_windows()
    local got = results(d)
    table.sort(got)     -- results closed at one moment have no defined order
    assert.are.same({ "a@0-10000:1/1", "a@0-10000:1/1", "a@20000-30000:1/0" }, got)
  end)
end)

describe("hopping windows", function()
  it("put a record in every window that contains it", function()
    local d = pipeline(function(sproc) return sproc.window.hopping{ size = "10s", advance = "5s", grace = 0 } end)
    d:pipe("in", { rec("a", 7000, 1), rec("a", 12000, 1) })
    d:close_windows()
    local got = results(d)
    table.sort(got)
    assert.are.same({ "a@0-10000:1/1", "a@10000-20000:1/1", "a@5000-15000:2/2" }, got)
  end)
end)

describe("hopping windows against an oracle", function()
  -- Kafka Streams' rules, record by record: stream time per partition
  -- moves first, a record joins each window [s, s + size) holding it whose
  -- end is above stream time - grace, and is late for the others.
  local function oracle(recs, size, adv, grace)
    local stream, acc, late = {}, {}, 0
    for _, r in ipairs(recs) do
      local p = r.partition or 0
      stream[p] = math.max(stream[p] or -1, r.ts)
      local s = r.ts - r.ts % adv
      while s >= 0 and s > r.ts - size do
        if s + size <= stream[p] - grace then
          late = late + 1
        else
          local k = r.key .. "@" .. s
          local a = acc[k] or { n = 0, total = 0, min = math.huge, max = -math.huge,
                                first_t = math.huge, last_t = -math.huge }
          acc[k] = a
          local v = r.value.v
          a.n, a.total = a.n + 1, a.total + v
          a.min, a.max = math.min(a.min, v), math.max(a.max, v)
          if r.ts < a.first_t then a.first, a.first_t = v, r.ts end
          if r.ts >= a.last_t then a.last, a.last_t = v, r.ts end
        end
        s = s - adv
      end
    end
    return acc, late
  end

  local function run(seed, size, adv, grace, rebalance)
    math.randomseed(seed)
    local d = testing.driver{ partitions = 2, build = function(sproc)
      local v = function(r) return r.value.v end
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.hopping{ size = size, advance = adv, grace = grace })
        :aggregate{ name = "hop", n = sproc.agg.count(), total = sproc.agg.sum(v),
                    min = sproc.agg.min(v), max = sproc.agg.max(v), first = sproc.agg.first(v),
                    last = sproc.agg.last(v) }
        :to{ topic = "out" }
    end }
    local recs, t = {}, 100000
    for i = 1, 3000 do
      t = t + math.random(0, 400)
      -- out of order by up to 1.5 s, and now and then far behind
      local ts = math.max(0, t - math.random(0, 1500) - (math.random() < 0.02 and 20000 or 0))
      local k = math.random(1, 6)   -- a key lives on one partition
      recs[i] = rec("k" .. k, ts, math.random(-50, 50), k % 2)
    end
    for i = 1, #recs, 100 do
      d:pipe("in", { unpack(recs, i, math.min(i + 99, #recs)) })
      if rebalance and i == 1501 then d:revoke{ 0, 1 }; d:assign{ 0, 1 } end
    end
    d:close_windows()
    local want, want_late = oracle(recs, size, adv, grace)
    local got = {}
    for _, r in ipairs(d:output("out", { json = true })) do
      local k = r.key .. "@" .. r.value.window_start
      assert.is_nil(got[k], "two results for " .. k)
      assert.are.equal(r.value.window_start + size, r.value.window_end)
      got[k] = r.value
    end
    for k, a in pairs(want) do
      local g = got[k]
      assert.is_truthy(g, "no result for " .. k)
      assert.are.same({ a.n, a.min, a.max, a.first, a.last }, { g.n, g.min, g.max, g.first, g.last })
      assert.is_true(math.abs(a.total - g.total) < 1e-9, k)
    end
    for k in pairs(got) do assert.is_truthy(want[k], "a result for no window: " .. k) end
    assert.are.equal(want_late, d:stats().late)
    return want_late
  end

  it("give Kafka Streams' results and late counts, records out of order", function()
    for seed = 1, 4 do run(seed, 10000, 2000, 3000) end
    assert.is_true(run(5, 10000, 1000, 500) > 0, "some records are late")
  end)

  it("go on after a rebalance restores their state", function()
    run(6, 10000, 2000, 3000, true)
  end)

  it("refuse a store kept under another window layout", function()
    local build = function(advance)
      return function(sproc)
        sproc.source{ topic = "in", value = "json" }
          :window(sproc.window.hopping{ size = "10s", advance = advance, grace = "1m" })
          :aggregate{ name = "hop", n = sproc.agg.count() }
          :to{ topic = "out" }
      end
    end
    local d = testing.driver(build("5s"))
    d:pipe("in", rec("a", 1000, 1))
    d:reload(build("2s"))
    local ok, err = pcall(d.pipe, d, "in", rec("a", 2000, 1))
    assert.is_false(ok)
    assert.matches("its store holds windows kept another way", tostring(err))
  end)
end)

describe("session windows", function()
  local session = function(sproc) return sproc.window.session{ gap = "5s", grace = 0 } end

  it("merge records at most the gap apart and close after last + gap + grace", function()
    local d = pipeline(session)
    d:pipe("in", { rec("a", 1000, 1), rec("a", 6000, 1), rec("a", 20000, 1) })
    -- 1000 and 6000 are exactly one gap apart: one session [1000, 6000]
    assert.are.same({ "a@1000-6000:2/2" }, results(d))
    d:close_windows()
    assert.are.same({ "a@1000-6000:2/2", "a@20000-20000:1/1" }, results(d))
  end)

  it("bridges two sessions with a record between them", function()
    local d = pipeline(function(sproc) return sproc.window.session{ gap = "5s", grace = "1m" } end,
                       "update")
    d:pipe("in", { rec("a", 1000, 1), rec("a", 10000, 1) })
    d:clear()
    d:pipe("in", rec("a", 5500, 1))
    local out = d:output("out")
    -- the two merged-away sessions get tombstones, then the merged one
    assert.are.equal(3, #out)
    assert.is_nil(out[1].value)
    assert.is_nil(out[2].value)
    assert.are.equal("1000", out[1].headers["sproc.window.start"])
    assert.are.same({ window_start = 1000, window_end = 10000, n = 3, total = 3 },
                    require("sproc.json").decode(out[3].value))
  end)
end)

describe("aggregations", function()
  it("computes count, sum, min, max, avg, first and last in C", function()
    local d = testing.driver(function(sproc)
      local v = function(r) return r.value.v end
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.tumbling{ size = 1000, grace = 0 })
        :aggregate{ n = sproc.agg.count(), sum = sproc.agg.sum(v), min = sproc.agg.min(v),
                    max = sproc.agg.max(v), avg = sproc.agg.avg(v), first = sproc.agg.first(v),
                    last = sproc.agg.last(v) }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("k", 500, 4), rec("k", 100, 2), rec("k", 900, 9), rec("k", 700, nil) })
    d:close_windows()
    assert.are.same({ window_start = 0, window_end = 1000, n = 4, sum = 15, min = 2, max = 9,
                      avg = 5, first = 2, last = 9 },
                    d:output("out", { json = true })[1].value)
  end)

  it("drops records with a null key before the aggregation, counted", function()
    local d = pipeline(function(sproc) return sproc.window.tumbling{ size = 1000, grace = 0 } end)
    d:pipe("in", { { value = { v = 1 }, ts = 5 } })
    assert.are.equal(1, d:stats().filtered)
  end)

  it("raises on misuse while the pipeline is built", function()
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in" }:window(sproc.window.tumbling{ size = "10s" })
      end)
    end)
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in" }:aggregate{ n = sproc.agg.count() }
      end)
    end, "aggregate() follows window()")
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in" }:window(sproc.window.tumbling{ size = "10x", grace = 0 })
      end)
    end)
    assert.has_error(function() return require("sproc").agg.sum() end)
  end)
end)

describe("a million records", function()
  it("through a windowed count in a few seconds", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in" }
        :window(sproc.window.tumbling{ size = "1m", grace = 0 })
        :aggregate{ n = sproc.agg.count() }
        :to{ topic = "out" }
    end)
    local t0 = os.clock()
    local batch = {}
    for b = 0, 999 do
      for i = 1, 1000 do
        local n = b * 1000 + i
        batch[i] = { key = "k" .. (n % 100), ts = n * 10 }
      end
      d:pipe("in", batch)
      if b % 100 == 99 then d:clear() end
    end
    d:close_windows()
    local total = 0
    for _, r in ipairs(d:output("out", { json = true })) do total = total + r.value.n end
    print(string.format("\n1M records through a tumbling count: %.2f s", os.clock() - t0))
    assert.is_true(total > 0)
  end)
end)

describe("idle partitions", function()
  it("close their windows on the wall clock, from the last record's time", function()
    local d = testing.driver(function(sproc)
      sproc.app{ idle = "5s" }
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.tumbling{ size = "10s", grace = 0 })
        :aggregate{ n = sproc.agg.count() }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("a", 1000, 1), rec("b", 2000, 1, 1) })
    d:advance_wall_clock(4999)
    assert.are.same({}, results(d))
    d:advance_wall_clock(4000)          -- idle 8999 ms: partition 1 at 2000 + 8999
    assert.are.same({ "b@0-10000:1" }, results(d))
    d:advance_wall_clock(1)             -- partition 0 reaches 1000 + 9000
    assert.are.same({ "b@0-10000:1", "a@0-10000:1" }, results(d))
  end)
end)

describe("re-keying before a window", function()
  it("aggregates a key from every input partition in one place", function()
    local d = testing.driver{ partitions = 4, build = function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :key_by(function(r) return r.value.user end)
        :window(sproc.window.tumbling{ size = "10s", grace = 0 })
        :aggregate{ n = sproc.agg.count() }
        :to{ topic = "out" }
    end }
    d:pipe("in", { { key = "x", value = { user = "ann" }, ts = 1, partition = 0 },
                   { key = "y", value = { user = "ann" }, ts = 2, partition = 1 },
                   { key = "z", value = { user = "bob" }, ts = 3, partition = 2 } })
    d:close_windows()
    local got = {}
    for _, r in ipairs(d:output("out", { json = true })) do
      got[r.key] = r.value.n
      assert.are.equal(testing.partition_for(r.key, 4), r.partition)
    end
    assert.are.same({ ann = 2, bob = 1 }, got)
  end)
end)

describe("update with an interval", function()
  it("compacts a burst of changes into the latest result per window", function()
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.tumbling{ size = "10s", grace = "1m" })
        :aggregate{ n = sproc.agg.count() }
        :emit{ "update", interval = "1s" }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("a", 1000, 1), rec("a", 2000, 1), rec("b", 3000, 1) })
    d:pipe("in", rec("a", 4000, 1))
    assert.are.same({}, results(d))
    d:advance_wall_clock(1000)
    local got = results(d)
    table.sort(got)
    assert.are.same({ "a@0-10000:3", "b@0-10000:1" }, got)
    d:clear()
    d:advance_wall_clock(1000)             -- nothing changed
    assert.are.same({}, results(d))
    d:pipe("in", rec("a", 5000, 1))
    d:close_windows()                      -- a closing window's last change goes out
    assert.are.same({ "a@0-10000:4" }, results(d))
  end)
end)

describe("distinct counts", function()
  local function distinct_driver(w)
    return testing.driver(function(sproc)
      local user = function(r) return r.value.user end
      sproc.source{ topic = "in", value = "json" }
        :window(w(sproc))
        :aggregate{ users = sproc.agg.count_distinct(user),
                    approx = sproc.agg.approx_count_distinct(user), n = sproc.agg.count() }
        :to{ topic = "out" }
    end)
  end

  it("are exact, and approximate within a few percent (HyperLogLog)", function()
    local d = distinct_driver(function(sproc) return sproc.window.tumbling{ size = "1h", grace = 0 } end)
    local recs = {}
    for i = 1, 20000 do recs[i] = { key = "k", ts = i, value = { user = "u" .. (i % 5000) } } end
    recs[#recs + 1] = { key = "k", ts = 1, value = {} }          -- no value: not counted
    d:pipe("in", recs)
    d:close_windows()
    local v = d:output("out", { json = true })[1].value
    assert.are.equal(5000, v.users)
    assert.are.equal(20001, v.n)
    assert.is_true(math.abs(v.approx - 5000) / 5000 < 0.05, "estimate " .. v.approx)
  end)

  it("merge when sessions merge, and leave with their window", function()
    local d = distinct_driver(function(sproc) return sproc.window.session{ gap = 100, grace = "1m" } end)
    d:pipe("in", { { key = "k", ts = 0, value = { user = "a" } }, { key = "k", ts = 0, value = { user = "b" } },
                   { key = "k", ts = 200, value = { user = "b" } }, { key = "k", ts = 200, value = { user = "c" } } })
    d:pipe("in", { key = "k", ts = 100, value = { user = "a" } })  -- bridges both sessions
    d:close_windows()
    local out = d:output("out", { json = true })
    assert.are.equal(1, #out)
    local v = out[1].value
    assert.are.same({ 0, 200, 3, 3, 5 }, { v.window_start, v.window_end, v.users, v.approx, v.n })
    assert.are.equal(0, d:store("window-1.distinct"):size())
  end)
end)

describe("aggregates written in Lua", function()
  local function median_driver(w, emit)
    return testing.driver(function(sproc)
      local median = sproc.agg.custom{
        init = function() return {} end,
        add = function(acc, r) acc[#acc + 1] = r.value.v; return acc end,
        merge = function(a, b) for _, x in ipairs(b) do a[#a + 1] = x end; return a end,
        result = function(acc)
          table.sort(acc)
          return acc[math.floor((#acc + 1) / 2)]
        end,
      }
      local total = sproc.agg.custom{ init = function() return 0 end,
                                      add = function(acc, r) return acc + r.value.v end,
                                      merge = function(a, b) return a + b end }
      local s = sproc.source{ topic = "in", value = "json" }
        :window(w(sproc))
        :aggregate{ median = median, total = total, n = sproc.agg.count() }
      if emit then s = s:emit(emit) end
      s:to{ topic = "out" }
    end)
  end

  it("keep a stored accumulator per window and give their result", function()
    local d = median_driver(function(sproc) return sproc.window.tumbling{ size = 1000, grace = 0 } end)
    d:pipe("in", { rec("k", 10, 5), rec("k", 20, 1), rec("k", 30, 9), rec("k", 1500, 7) })
    d:close_windows()
    local got = {}
    for _, r in ipairs(d:output("out", { json = true })) do
      got[#got + 1] = { r.value.window_start, r.value.median, r.value.total, r.value.n }
    end
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.are.same({ { 0, 5, 15, 3 }, { 1000, 7, 7, 1 } }, got)
    assert.are.equal(0, d:store("window-1.distinct"):size())
  end)

  it("merge with merge() when sessions merge, and give updates after the record's add", function()
    local d = median_driver(function(sproc) return sproc.window.session{ gap = 100, grace = "1m" } end,
                            "update")
    d:pipe("in", { rec("k", 0, 1), rec("k", 200, 3) })
    d:clear()
    d:pipe("in", rec("k", 100, 2))
    local last = d:output("out", { json = true })
    last = last[#last].value
    assert.are.same({ 0, 200, 2, 6, 3 }, { last.window_start, last.window_end, last.median, last.total, last.n })
  end)

  it("need merge() for sessions", function()
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.source{ topic = "in" }
          :window(sproc.window.session{ gap = 10, grace = 0 })
          :aggregate{ x = sproc.agg.custom{ init = function() return 0 end, add = function(a) return a end } }
      end)
    end)
  end)
end)

describe("sliding windows", function()
  it("are the distinct sets of records at most size apart (Kafka Streams' SlidingWindows)", function()
    local d = pipeline(function(sproc) return sproc.window.sliding{ size = "10s", grace = "1m" } end)
    d:pipe("in", { rec("k", 1000, 1), rec("k", 5000, 2), rec("k", 12000, 3) })
    d:close_windows()
    local got = results(d)
    table.sort(got)
    assert.are.same({ "k@0-10000:2/3", "k@1001-11001:1/2", "k@2000-12000:2/5", "k@5001-15001:1/3" }, got)
  end)

  it("close at end + grace and drop late records", function()
    local d = pipeline(function(sproc) return sproc.window.sliding{ size = 100, grace = 0 } end)
    d:pipe("in", { rec("k", 1000, 1), rec("k", 1050, 1), rec("k", 1200, 1) })
    local got = results(d)
    table.sort(got)
    -- [900, 1000], [950, 1050] and [1001, 1101] closed by stream time 1200
    assert.are.same({ "k@1001-1101:1/1", "k@900-1000:1/1", "k@950-1050:2/2" }, got)
    d:pipe("in", rec("k", 1040, 1))     -- its window [940, 1040] closed long ago
    assert.are.equal(1, d:stats().late)
  end)

  it("give updates for every window a record changes", function()
    local d = pipeline(function(sproc) return sproc.window.sliding{ size = 100, grace = "1m" } end, "update")
    d:pipe("in", { rec("k", 1000, 1) })
    d:pipe("in", { rec("k", 1050, 1) })
    local got = results(d)
    table.sort(got)
    assert.are.same({ "k@1001-1101:1/1", "k@900-1000:1/1", "k@950-1050:2/2" }, got)
  end)
end)

-- issue 14 #7: window boundaries as Kafka Streams draws them
describe("Kafka Streams' window boundaries", function()
  local json = require "sproc.json"
  local function sorted(t) table.sort(t); return t end

  it("(a) a sliding record late for its own left window still updates the windows still open", function()
    local d = pipeline(function(sproc) return sproc.window.sliding{ size = 10, grace = 0 } end)
    d:pipe("in", { rec("k", 100, 1), rec("k", 92, 1) })
    d:close_windows()
    -- 92's left window [82, 92] closed (stream time 100); [90, 100] is open
    -- and takes it; its right window [93, 103] holds 100
    assert.are.same({ "k@90-100:2/2", "k@93-103:1/1" }, sorted(results(d)))
    assert.are.equal(1, d:stats().late)
  end)

  it("(a) a sliding record is dropped only when t + size is behind stream time - grace", function()
    local d = pipeline(function(sproc) return sproc.window.sliding{ size = 10, grace = 0 } end)
    d:pipe("in", { rec("k", 100, 1), rec("k", 89, 1) })
    d:close_windows()
    assert.are.same({ "k@90-100:1/1" }, sorted(results(d)))
    assert.are.equal(1, d:stats().late)
  end)

  it("(b) sliding windows in update mode emit the record's new right window", function()
    local d = pipeline(function(sproc) return sproc.window.sliding{ size = 10, grace = 100 } end, "update")
    d:pipe("in", rec("k", 110, 1))
    d:pipe("in", rec("k", 105, 1))
    assert.are.same({ "k@100-110:1/1", "k@100-110:2/2", "k@106-116:1/1", "k@95-105:1/1" },
                    sorted(results(d)))
  end)

  local session = function(sproc) return sproc.window.session{ gap = 10, grace = 0 } end

  it("(c) a session stays open while stream time is at last + gap + grace", function()
    for _, batched in ipairs { true, false } do
      local d = pipeline(session)
      local input = { rec("a", 0, 1), rec("b", 10, 1), rec("a", 5, 1) }
      if batched then d:pipe("in", input) else for _, r in ipairs(input) do d:pipe("in", r) end end
      d:close_windows()
      assert.are.same({ "a@0-5:2/2", "b@10-10:1/1" }, sorted(results(d)))
    end
  end)

  it("(d) session results do not depend on how records are batched", function()
    local want
    for _, batched in ipairs { true, false } do
      local d = pipeline(session)
      local input = { rec("a", 0, 1), rec("b", 11, 1), rec("a", 5, 1) }
      if batched then d:pipe("in", input) else for _, r in ipairs(input) do d:pipe("in", r) end end
      d:close_windows()
      local got = sorted(results(d))
      want = want or got
      assert.are.same(want, got)
    end
    -- [0, 0] closed at stream time 11: a@5 starts a session of its own
    assert.are.same({ "a@0-0:1/1", "a@5-5:1/1", "b@11-11:1/1" }, want)
  end)

  it("(e) a late record gives no tombstone in update mode", function()
    local d = pipeline(session, "update")
    d:pipe("in", { rec("a", 0, 1), rec("b", 100, 1), rec("a", 1, 1) })
    for _, r in ipairs(d:output("out")) do assert.is_not_nil(r.value) end
    assert.are.equal(1, d:stats().late)
  end)

  it("(f) merging sessions starts from a fresh init(), as Kafka Streams' merger does", function()
    local d = testing.driver(function(sproc)
      local trail = sproc.agg.custom{
        init = function() return { "i" } end,
        add = function(acc, r) acc[#acc + 1] = r.ts; return acc end,
        merge = function(a, b) for _, x in ipairs(b) do a[#a + 1] = x end; return a end,
      }
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.session{ gap = 10, grace = 100 })
        :aggregate{ trail = trail }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("k", 0, 1), rec("k", 20, 1), rec("k", 10, 1), rec("x", 500, 1) })
    d:close_windows()
    local out = d:output("out", { json = true })
    local trail
    for _, r in ipairs(out) do if r.key == "k" then trail = r.value.trail end end
    -- Kafka Streams: agg = init(); for each session: agg = merge(agg, session); add(agg, r)
    assert.are.same({ "i", "i", 0, "i", 20, 10 }, trail)
  end)
end)

-- issue 14 #8
describe("Lua aggregates on sliding windows", function()
  it("give each window the records it holds", function()
    local d = testing.driver(function(sproc)
      local list = sproc.agg.custom{
        init = function() return {} end,
        add = function(acc, r) acc[#acc + 1] = r.value.v; return acc end,
        merge = function(a, b) for _, x in ipairs(b) do a[#a + 1] = x end; return a end,
        result = function(acc) table.sort(acc); return table.concat(acc, ",") end,
      }
      sproc.source{ topic = "in", value = "json" }
        :window(sproc.window.sliding{ size = 10, grace = 100 })
        :aggregate{ list = list, n = sproc.agg.count() }
        :to{ topic = "out" }
    end)
    d:pipe("in", { rec("k", 100, 1), rec("k", 105, 2), rec("k", 103, 3), rec("k", 130, 4) })
    d:close_windows()
    local got = {}
    for _, r in ipairs(d:output("out", { json = true })) do
      got[#got + 1] = r.value.window_start .. ":" .. r.value.list .. ":" .. r.value.n
    end
    table.sort(got)
    -- the same windows a count gives, each with its own records
    assert.are.same({ "101:2,3:2", "104:2:1", "120:4:1", "90:1:1", "93:1,3:2", "95:1,2,3:3" }, got)
  end)
end)

describe("a jump in event time", function()
  -- A gap in event time longer than what a window's kept records live (the
  -- records of sliding windows, Lua accumulators: 2 x (size + grace) + 1 h
  -- of stream time) closes the windows open before it with what they held:
  -- their records went nowhere before the windows closed.
  local function after_gap(window, batches)
    local d = testing.driver(function(sproc)
      sproc.source{ topic = "in", value = "json" }
        :window(window(sproc))
        :aggregate{ n = sproc.agg.count(), total = sproc.agg.sum(function(r) return r.value.v end),
                    mine = sproc.agg.custom{ init = function() return 0 end,
                                             add = function(a, r) return a + r.value.v end,
                                             merge = function(a, b) return a + b end } }
        :to{ topic = "out" }
    end)
    local recs = { rec("a", 1000, 1), rec("a", 1500, 2), rec("b", 2000, 10) }
    if batches then for _, r in ipairs(recs) do d:pipe("in", r) end else d:pipe("in", recs) end
    d:pipe("in", rec("z", 10 * 3600 * 1000, 0))  -- ten hours later
    local got = {}
    for _, r in ipairs(d:output("out", { json = true })) do
      got[#got + 1] = r.key .. ":" .. r.value.n .. "/" .. r.value.total .. "/" .. tostring(r.value.mine)
    end
    table.sort(got)
    return got
  end

  it("leaves tumbling windows' Lua aggregates as they were", function()
    local tumbling = function(sproc) return sproc.window.tumbling{ size = "10s", grace = "0s" } end
    assert.are.same({ "a:2/3/3", "b:1/10/10" }, after_gap(tumbling))
    assert.are.same({ "a:2/3/3", "b:1/10/10" }, after_gap(tumbling, true))
  end)

  it("gives sliding windows their records", function()
    local sliding = function(sproc) return sproc.window.sliding{ size = "1s", grace = "0s" } end
    -- a's windows: [0, 1000] holds 1000; [500, 1500] holds both; [1001, 2001] holds 1500
    local want = { "a:1/1/1", "a:1/2/2", "a:2/3/3", "b:1/10/10" }
    assert.are.same(want, after_gap(sliding))
    assert.are.same(want, after_gap(sliding, true))
  end)
end)
