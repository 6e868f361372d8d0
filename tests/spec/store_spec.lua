-- Key-value state stores through the test driver: per-partition state,
-- value types, scans, misuse, and the memory budget.
local testing = require "sproc.testing"

local function counting(opts)
  return testing.driver(function(sproc)
    if opts and opts.errors then sproc.app{ errors = opts.errors } end
    local counts = sproc.store{ name = "counts" }
    sproc.source{ topic = "in" }
      :map(function(r)
        local n = assert(counts:incr(r.key, 1))
        return r.key .. "=" .. n
      end)
      :to{ topic = "out" }
  end)
end

describe("key-value store", function()
  it("counts per key and keeps state across batches", function()
    local d = counting()
    d:pipe("in", { { key = "a" }, { key = "b" }, { key = "a" } })
    d:pipe("in", { { key = "a" } })
    assert.are.same({ "a=1", "b=1", "a=2", "a=3" }, d:values("out"))
    local s = d:store("counts")
    assert.are.equal(3, s:get("a"))
    assert.are.equal(1, s:get("b"))
    assert.is_nil(s:get("c"))
    assert.are.equal(2, s:size())
  end)

  it("splits state by the input record's partition", function()
    local d = counting()
    d:pipe("in", { { key = "a", partition = 0 }, { key = "a", partition = 1 },
                   { key = "a", partition = 1 } })
    assert.are.same({ "a=1", "a=1", "a=2" }, d:values("out"))
    local s = d:store("counts")
    assert.are.equal(1, s:get("a", 0))
    assert.are.equal(2, s:get("a", 1))
    assert.are.same({ 0, 1 }, s:partitions())
  end)

  it("seeded state is what the pipeline sees", function()
    local d = counting()
    d:store("counts"):put("a", 41)
    d:pipe("in", { key = "a" })
    assert.are.same({ "a=42" }, d:values("out"))
  end)

  it("keeps numbers, strings, booleans and tables, and deletes", function()
    local seen = {}
    local d = testing.driver(function(sproc)
      local st = sproc.store{ name = "things", kind = "kv" }
      sproc.source{ topic = "in", value = "json" }
        :each(function(r)
          local v = r.value
          if v.op == "put" then assert(st:put(v.k, v.v))
          elseif v.op == "del" then assert(st:delete(v.k))
          else seen[#seen + 1] = { st:get(v.k) } end
        end)
    end)
    d:pipe("in", {
      { value = { op = "put", k = "n", v = 1.5 } },
      { value = { op = "put", k = "s", v = "text" } },
      { value = { op = "put", k = "b", v = false } },
      { value = { op = "put", k = "t", v = { x = 1, y = { "z" } } } },
      { value = { op = "get", k = "n" } }, { value = { op = "get", k = "s" } },
      { value = { op = "get", k = "b" } }, { value = { op = "get", k = "t" } },
      { value = { op = "del", k = "s" } }, { value = { op = "get", k = "s" } },
    })
    assert.are.same({ { 1.5 }, { "text" }, { false }, { { x = 1, y = { "z" } } }, {} }, seen)
    assert.are.equal(3, d:store("things"):size())
  end)

  it("scans ranges and prefixes in byte order within the partition", function()
    local got = {}
    local d = testing.driver(function(sproc)
      local st = sproc.store{ name = "s" }
      sproc.source{ topic = "in" }
        :each(function(r)
          if r.value == "scan" then
            local t = {}
            for k, v in st:range("b", "d") do t[#t + 1] = k .. ":" .. v end
            got.range = t
            t = {}
            for k in st:prefix("user:") do t[#t + 1] = k end
            got.prefix = t
            t = {}
            for k in st:all() do t[#t + 1] = k end
            got.all = t
          else
            st:put(r.key, r.value)
          end
        end)
    end)
    d:pipe("in", { { key = "d", value = "4" }, { key = "a", value = "1" }, { key = "c", value = "3" },
                   { key = "b", value = "2" }, { key = "e", value = "5" },
                   { key = "user:2", value = "x" }, { key = "user:10", value = "y" },
                   { key = "users", value = "z" }, { key = "other", value = "p", partition = 1 } })
    d:pipe("in", { key = "x", value = "scan" })
    assert.are.same({ "b:2", "c:3", "d:4" }, got.range)
    assert.are.same({ "user:10", "user:2" }, got.prefix)
    assert.are.same({ "a", "b", "c", "d", "e", "user:10", "user:2", "users" }, got.all)
  end)

  it("returns nil and an error for a bad key or value at run time", function()
    local res = {}
    local d = testing.driver(function(sproc)
      local st = sproc.store{ name = "s" }
      sproc.source{ topic = "in" }
        :each(function()
          res[#res + 1] = { st:put({}, 1) }
          res[#res + 1] = { st:put("k", function() end) }
          res[#res + 1] = { st:incr("k", "x") }
          assert(st:put("str", "v"))
          res[#res + 1] = { st:incr("str") }
        end)
    end)
    d:pipe("in", { value = "go" })
    assert.is_nil(res[1][1]); assert.matches("key must be a string", res[1][2])
    assert.is_nil(res[2][1]); assert.matches("value must be a number", res[2][2])
    assert.is_nil(res[3][1]); assert.matches("by must be a number", res[3][2])
    assert.is_nil(res[4][1]); assert.matches("not a number", res[4][2])
  end)

  it("raises on misuse while the pipeline is built", function()
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.store{ name = "x" }
        sproc.store{ name = "x" }
        sproc.source{ topic = "in" }:print()
      end)
    end, "sproc.store: a store named x exists already")
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.store{ name = "bad name" }
      end)
    end)
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.store{ name = "w", kind = "nope" }
      end)
    end)
    assert.has_error(function()
      testing.driver(function(sproc)
        sproc.app{ processing_guarantee = "twice" }
      end)
    end, 'sproc.app: processing_guarantee must be "at_least_once" or "exactly_once", got twice')
    assert.has_error(function()
      testing.driver(function(sproc)
        local st = sproc.store{ name = "early" }
        st:get("k")
      end)
    end)
  end)

  it("stops with a clear error when the memory budget is exhausted, whatever the policy", function()
    local ffi = require "ffi"
    local C = require("sproc.core").C
    local d = counting{ errors = "skip" }
    C.sp_store_set_budget(d.ctx, 4096)
    local recs = {}
    for i = 1, 200 do recs[i] = { key = "key-" .. i } end
    local ok, err = pcall(d.pipe, d, "in", recs)
    assert.is_false(ok)
    assert.matches("memory budget", err)
    assert.matches("sproc.state.max.bytes", err)
    assert.is_true(tonumber(C.sp_store_total_bytes(d.ctx)) <= 4096)
    assert.is_true(ffi ~= nil)
  end)
end)

for _, backend in ipairs({ "memory", "lmdb" }) do
  describe("a " .. backend .. " store", function()
    local function driver()
      local seen = {}
      local d = testing.driver(function(sproc)
        local st = sproc.store{ name = "s", backend = backend, ttl = 1000 }
        sproc.source{ topic = "in", value = "json" }
          :each(function(r)
            local v = r.value
            if v.op == "incr" then seen[#seen + 1] = assert(st:incr(r.key, v.by))
            elseif v.op == "put" then assert(st:put(r.key, v.v))
            elseif v.op == "del" then assert(st:delete(r.key))
            elseif v.op == "scan" then
              local t = {}
              for k, x in st:range(v.from, v.to) do t[#t + 1] = k .. "=" .. tostring(x) end
              seen[#seen + 1] = table.concat(t, ",")
            end
          end)
      end)
      return d, seen
    end

    it("keeps typed values per partition, scans in order and deletes", function()
      local d, seen = driver()
      d:pipe("in", {
        { key = "b", value = { op = "incr", by = 2 }, ts = 10 },
        { key = "b", value = { op = "incr" }, ts = 10 },
        { key = "a", value = { op = "put", v = "x" }, ts = 10 },
        { key = "c", value = { op = "put", v = { 1, 2 } }, ts = 10 },
        { key = "a", value = { op = "incr" }, ts = 10, partition = 1 },
        { key = "", value = { op = "scan", from = "a", to = "b" }, ts = 10 },
        { key = "c", value = { op = "del" }, ts = 10 },
        { key = "", value = { op = "scan" }, ts = 10 },
      })
      assert.are.same({ 2, 3, 1, "a=x,b=3", "a=x,b=3" }, seen)
      local s = d:store("s")
      assert.are.equal(3, s:get("b", 0))
      assert.are.equal(1, s:get("a", 1))
      assert.are.equal("x", s:get("a", 0))
      assert.is_nil(s:get("c", 0))
      assert.are.equal(2, s:size(0))
      assert.are.same({ 0, 1 }, s:partitions())
    end)

    it("expires entries on stream time", function()
      local d = driver()
      d:pipe("in", { key = "k", value = { op = "put", v = 1 }, ts = 0 })
      d:advance_stream_time(999)
      assert.are.equal(1, d:store("s"):get("k", 0))
      d:advance_stream_time(1000)
      assert.is_nil(d:store("s"):get("k", 0))
      -- swept (and counted out) as stream time moves on by a quarter TTL
      d:advance_stream_time(1250)
      assert.are.equal(0, d:store("s"):size(0))
    end)
  end)
end

describe("a disk store", function()
  it("holds many keys with the memory budget untouched", function()
    local C = require("sproc.core").C
    local d = testing.driver(function(sproc)
      local st = sproc.store{ name = "big", backend = "lmdb" }
      sproc.source{ topic = "in" }:each(function(r) assert(st:put(r.key, r.value)) end)
    end)
    -- 10 MB of values against a 1 MiB budget (the batch's changed keys count)
    C.sp_store_set_budget(d.ctx, 1024 * 1024)
    local pad = string.rep("v", 1000)
    for b = 0, 9 do
      local recs = {}
      for i = 1, 1000 do recs[i] = { key = "key-" .. (b * 1000 + i), value = pad .. i } end
      d:pipe("in", recs)
    end
    local s = d:store("big")
    assert.are.equal(10000, s:size())
    assert.are.equal(pad .. 7, s:get("key-7", 0))
    assert.are.equal(pad .. 1000, s:get("key-10000", 0))
  end)

  it("rejects the empty key", function()
    local res
    local d = testing.driver(function(sproc)
      local st = sproc.store{ name = "big", backend = "lmdb" }
      sproc.source{ topic = "in" }:each(function() res = { st:put("", 1) } end)
    end)
    d:pipe("in", { value = "x" })
    assert.is_nil(res[1])
    assert.matches("1 to 511 bytes", res[2])
  end)
end)

describe("a window store", function()
  local function windowed(retention)
    return testing.driver(function(sproc)
      local ws = sproc.store{ name = "per-minute", kind = "window", retention = retention }
      sproc.source{ topic = "in" }
        :each(function(r)
          local start = r.ts - r.ts % 60000
          assert(ws:incr(r.key, start))
        end)
      sproc.source{ topic = "ask" }
        :map(function(r)
          local out = {}
          for start, n in ws:fetch(r.key, 0, r.ts) do out[#out + 1] = start .. ":" .. n end
          return table.concat(out, " ")
        end)
        :to{ topic = "answer" }
    end)
  end

  it("keeps values per key and window start, fetched in time order", function()
    local d = windowed(3600000)
    d:pipe("in", { { key = "a", ts = 130000 }, { key = "a", ts = 10000 }, { key = "a", ts = 70000 },
                   { key = "a", ts = 75000 }, { key = "ab", ts = 5000 }, { key = "b", ts = 1000 } })
    local w = d:store("per-minute")
    assert.are.equal(2, w:get("a", 60000))
    assert.is_nil(w:get("a", 180000))
    assert.are.same({ { start = 0, value = 1 }, { start = 60000, value = 2 } }, w:fetch("a", 0, 60000))
    d:pipe("ask", { key = "a", ts = 120000 })
    assert.are.same({ "0:1 60000:2 120000:1" }, d:values("answer"))
    local keys = {}
    for _, e in ipairs(w:all()) do keys[#keys + 1] = e.key .. "@" .. e.start end
    assert.are.same({ "a@0", "a@60000", "a@120000", "b@0", "ab@0" }, keys)
  end)

  it("drops windows once stream time passes their start by the retention", function()
    local d = windowed(120000)
    d:pipe("in", { { key = "a", ts = 10000 }, { key = "a", ts = 70000 } })
    d:advance_stream_time(120000)        -- window 0 is as old as the retention
    local w = d:store("per-minute")
    assert.is_nil(w:get("a", 0))
    assert.are.equal(1, w:get("a", 60000))
  end)

  it("raises on bad options and returns nil, err for a bad start", function()
    assert.has_error(function()
      testing.driver(function(sproc) sproc.store{ name = "w", kind = "window", ttl = 5 } end)
    end)
    local res
    local d = testing.driver(function(sproc)
      local ws = sproc.store{ name = "w", kind = "window" }
      sproc.source{ topic = "in" }:each(function() res = { ws:put("k", -1, 1) } end)
    end)
    d:pipe("in", { value = "x" })
    assert.is_nil(res[1])
    assert.matches("whole milliseconds", res[2])
  end)
end)
