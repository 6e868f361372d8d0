-- Stream time, timers and store TTLs on the test driver's virtual clocks.
local cjson = require "cjson"
local testing = require "sproc.testing"

-- Counts per key; a timer reports each partition's counts when it fires.
local function reporting(time, every, ttl)
  return testing.driver(function(sproc)
    local counts = sproc.store{ name = "counts", ttl = ttl }
    sproc.source{ topic = "in", value = "json", time = function(r) return r.value.t end }
      :each(function(r) counts:incr(r.key) end)
    sproc.timer{ every = every, time = time }
      :map(function(r)
        local t = { at = r.ts, partition = r.partition }
        for k, v in counts:all() do t[k] = v end
        return t
      end)
      :to{ topic = "report" }
  end)
end

local function reports(d)
  local out = {}
  for _, r in ipairs(d:output("report", { json = true })) do out[#out + 1] = r.value end
  return out
end

describe("stream time", function()
  it("is the highest event time seen per partition", function()
    local d = reporting("stream", 1000)
    assert.is_nil(d:stream_time(0))
    d:pipe("in", { { key = "a", value = { t = 500 } }, { key = "a", value = { t = 300 } },
                   { key = "b", value = { t = 700 }, partition = 1 } })
    assert.are.equal(500, d:stream_time(0))
    assert.are.equal(700, d:stream_time(1))
  end)

  it("fires stream timers as it crosses each multiple of every, per partition", function()
    local d = reporting("stream", 1000)
    d:pipe("in", { { key = "a", value = { t = 100 } }, { key = "a", value = { t = 900 } } })
    assert.are.same({}, reports(d))
    d:pipe("in", { key = "b", value = { t = 1200 } })
    assert.are.same({ { at = 1200, partition = 0, a = 2, b = 1 } }, reports(d))
    d:clear()
    d:pipe("in", { key = "b", value = { t = 1999 } })         -- same interval
    assert.are.same({}, reports(d))
    d:pipe("in", { key = "a", value = { t = 5000 } })         -- several at once: one firing
    assert.are.same({ { at = 5000, partition = 0, a = 3, b = 2 } }, reports(d))
    d:clear()
    -- a late record does not move stream time back
    d:pipe("in", { key = "a", value = { t = 10 } })
    assert.are.equal(5000, d:stream_time(0))
    assert.are.same({}, reports(d))
    -- another partition has its own stream time
    d:pipe("in", { { key = "c", value = { t = 100 }, partition = 1 },
                   { key = "c", value = { t = 1100 }, partition = 1 } })
    assert.are.same({ { at = 1100, partition = 1, c = 2 } }, reports(d))
  end)

  it("fires stream timers right after the record that makes them due, however records are batched", function()
    local recs = { { key = "a", value = { t = 100 } }, { key = "a", value = { t = 1100 } },
                   { key = "b", value = { t = 1500 } }, { key = "b", value = { t = 2100 } },
                   { key = "a", value = { t = 2500 } } }
    local want = { { at = 1100, partition = 0, a = 2 }, { at = 2100, partition = 0, a = 2, b = 2 } }
    local whole = reporting("stream", 1000)
    whole:pipe("in", recs)                                  -- one batch
    assert.are.same(want, reports(whole))
    local one = reporting("stream", 1000)
    for _, r in ipairs(recs) do one:pipe("in", r) end       -- a batch per record
    assert.are.same(want, reports(one))
  end)

  it("can be advanced by the driver", function()
    local d = reporting("stream", 1000)
    d:pipe("in", { key = "a", value = { t = 0 } })
    d:advance_stream_time(1000)
    assert.are.same({ { at = 1000, partition = 0, a = 1 } }, reports(d))
  end)
end)

describe("wall-clock timers", function()
  it("fire on the driver's virtual wall clock for every partition", function()
    local d = reporting("wall", 1000)
    d:pipe("in", { { key = "a", value = { t = 1 } }, { key = "b", value = { t = 1 }, partition = 2 } })
    d:advance_wall_clock(999)
    assert.are.same({}, reports(d))
    d:advance_wall_clock(1)
    assert.are.same({ { at = 1000, partition = 0, a = 1 }, { at = 1000, partition = 2, b = 1 } }, reports(d))
    d:clear()
    d:advance_wall_clock(2500)       -- late: one firing, then every 1000 from now
    assert.are.equal(2, #reports(d))
    d:clear()
    d:advance_wall_clock(999)
    assert.are.same({}, reports(d))
  end)

  -- issue 14 #6: with no input source there was no partition to fire for
  it("fire on partition 0 in a script that reads no topic or file", function()
    local d = testing.driver(function(sproc)
      sproc.timer{ every = 100, time = "wall" }:map(function(r) return "tick " .. r.partition end)
        :to{ topic = "ticks" }
    end)
    d:advance_wall_clock(250)
    d:advance_wall_clock(100)
    assert.are.same({ "tick 0", "tick 0" }, d:values("ticks"))
  end)

  it("fire in the executable when the script has only timers", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
local sproc = require "sproc"
sproc.timer{ every = 50, time = "wall" }:map(function(r) return "tick " .. r.partition end):print()
]])
    f:close()
    local bin = os.getenv("SPROC_BIN") or "build/sproc"
    local p = io.popen("timeout -s INT 2 " .. bin .. " " .. path .. " --quiet 2>/dev/null")
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.matches("^tick 0\ntick 0\n", out)
  end)

  it("errors in a timer go through the error policy", function()
    local d = testing.driver(function(sproc)
      sproc.app{ errors = "skip" }
      sproc.source{ topic = "in" }:print()
      sproc.timer{ every = 10, time = "wall" }:each(function() error("boom") end)
    end)
    d:pipe("in", { value = "x" })
    d:advance_wall_clock(10)
    assert.are.equal(1, d:stats().skipped)
  end)

  it("raises on a bad timer while the pipeline is built", function()
    assert.has_error(function()
      testing.driver(function(sproc) sproc.timer{ every = 0 } end)
    end, "sproc.timer: every must be a positive number of milliseconds")
    assert.has_error(function()
      testing.driver(function(sproc) sproc.timer{ every = 5, time = "cpu" } end)
    end, 'sproc.timer: time must be "stream" or "wall", got cpu')
  end)
end)

describe("store TTL", function()
  it("forgets entries ttl ms of stream time after their last write", function()
    local d = reporting("stream", 1000000, 1000)
    d:pipe("in", { { key = "a", value = { t = 0 } }, { key = "b", value = { t = 500 } } })
    local s = d:store("counts")
    assert.are.equal(1, s:get("a"))
    d:advance_stream_time(999)
    assert.are.equal(1, s:get("a"))
    d:advance_stream_time(1000)          -- a was written at 0: gone
    assert.is_nil(s:get("a"))
    assert.are.equal(1, s:get("b"))
    d:pipe("in", { key = "b", value = { t = 1400 } })   -- a write renews b
    d:advance_stream_time(2000)
    assert.are.equal(2, s:get("b"))
    d:advance_stream_time(2400)
    assert.is_nil(s:get("b"))
    assert.are.equal(0, s:size())
  end)

  it("counts from zero again after expiry", function()
    local d = reporting("stream", 1000000, 100)
    d:pipe("in", { { key = "a", value = { t = 0 } }, { key = "a", value = { t = 50 } } })
    d:pipe("in", { key = "a", value = { t = 500 } })
    assert.are.equal(1, d:store("counts"):get("a"))
  end)
end)

-- issue 14 #5: stream time was kept per partition number across every
-- source, so a store's TTL ran on another source's records
describe("stream time per task", function()
  local function two_sources()
    return testing.driver(function(sproc)
      local seen = sproc.store{ name = "seen", ttl = 1000 }
      sproc.source{ topic = "clicks", value = "json", time = function(r) return r.value.t end }
        :each(function(r) seen:incr(r.key) end)
      sproc.source{ topic = "audit", value = "json", time = function(r) return r.value.t end }
        :to{ topic = "audit-out" }
    end)
  end

  it("a store's TTL does not run on another source's records", function()
    local d = two_sources()
    d:pipe("clicks", { key = "a", value = { t = 0 } })
    d:pipe("audit", { key = "x", value = { t = 1e9 } })
    assert.are.equal(1, d:store("seen"):get("a"))
    d:pipe("clicks", { key = "b", value = { t = 999 } })
    assert.are.equal(1, d:store("seen"):get("a"))
    d:pipe("clicks", { key = "b", value = { t = 1000 } })
    assert.is_nil(d:store("seen"):get("a"))
    assert.are.equal(2, d:store("seen"):get("b"))
  end)

  it("entries written after another source moved ahead still expire on their own source's time", function()
    local d = two_sources()
    d:pipe("audit", { key = "x", value = { t = 1e9 } })
    d:pipe("clicks", { key = "a", value = { t = 0 } })
    d:pipe("clicks", { key = "b", value = { t = 5000 } })
    assert.is_nil(d:store("seen"):get("a"))
    assert.are.equal(1, d:store("seen"):get("b"))
  end)

  it("a store used by two sources follows the later of their times", function()
    local d = testing.driver(function(sproc)
      local seen = sproc.store{ name = "seen", ttl = 1000 }
      for _, t in ipairs { "a", "b" } do
        sproc.source{ topic = t, value = "json", time = function(r) return r.value.t end }
          :each(function(r) seen:incr(r.key) end)
      end
    end)
    d:pipe("a", { key = "k", value = { t = 0 } })
    d:pipe("b", { key = "j", value = { t = 3000 } })
    assert.is_nil(d:store("seen"):get("k"))
  end)

  it("the driver's stream time of a partition is the latest of its sources'", function()
    local d = two_sources()
    d:pipe("clicks", { key = "a", value = { t = 10 } })
    d:pipe("audit", { key = "a", value = { t = 20 } })
    assert.are.equal(20, d:stream_time(0))
  end)
end)

describe("determinism", function()
  -- (values compared decoded: a Lua table's keys come out in the order of
  -- its hash part, which LuaJIT does not keep from one run to the next)
  it("gives the same outputs, in the same order, for the same inputs and clock moves", function()
    local function run()
      local d = reporting("wall", 100)
      for i = 1, 50 do
        d:pipe("in", { key = "k" .. (i % 7), value = { t = i * 37 }, partition = i % 3 })
        if i % 10 == 0 then d:advance_wall_clock(100) end
      end
      local out = {}
      for _, r in ipairs(d:outputs()) do
        out[#out + 1] = { topic = r.topic, partition = r.partition, value = cjson.decode(r.value) }
      end
      return out
    end
    local a, b = run(), run()
    assert.is_true(#a > 0)
    assert.are.same(a, b)
  end)
end)
