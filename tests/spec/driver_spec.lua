-- The test driver's simulations: reloading the pipeline and rebalancing
-- partitions, deterministically.
local testing = require "sproc.testing"

local function counter(tag)
  return function(sproc)
    local counts = sproc.store{ name = "counts" }
    sproc.source{ topic = "in" }
      :map(function(r) return tag .. ":" .. r.key .. "=" .. counts:incr(r.key) end)
      :to{ topic = "out" }
  end
end

describe("reload", function()
  it("swaps the pipeline and keeps the state", function()
    local d = testing.driver(counter("v1"))
    d:pipe("in", { { key = "a" }, { key = "a" } })
    d:reload(counter("v2"))
    d:pipe("in", { key = "a" })
    assert.are.same({ "v1:a=1", "v1:a=2", "v2:a=3" }, d:values("out"))
  end)

  it("keeps the old pipeline when the new one does not build", function()
    local d = testing.driver(counter("v1"))
    d:pipe("in", { key = "a" })
    assert.has_error(function()
      d:reload(function(sproc) sproc.source{ topic = "in" }:map("not a function") end)
    end)
    d:pipe("in", { key = "a" })
    assert.are.same({ "v1:a=1", "v1:a=2" }, d:values("out"))
  end)

  it("finds open windows again by the aggregation's name", function()
    local function win(tag)
      return function(sproc)
        sproc.source{ topic = "in" }
          :window(sproc.window.tumbling{ size = 1000, grace = 0 })
          :aggregate{ n = sproc.agg.count(), name = "per-key" }
          :map(function(r) return tag .. " " .. r.value.n end)
          :to{ topic = "out" }
      end
    end
    local d = testing.driver(win("old"))
    d:pipe("in", { { key = "k", ts = 10 }, { key = "k", ts = 20 } })
    d:reload(win("new"))
    d:pipe("in", { { key = "k", ts = 30 }, { key = "k", ts = 1500 } })
    assert.are.same({ "new 3" }, d:values("out"))
  end)
end)

describe("rebalance", function()
  it("drops a revoked partition's state and restores it from the changelog on assign", function()
    local d = testing.driver(counter("v"))
    d:pipe("in", { { key = "a", partition = 0 }, { key = "b", partition = 1 }, { key = "b", partition = 1 } })
    d:revoke(1)
    assert.is_nil(d:store("counts"):get("b", 1))
    assert.are.equal(1, d:store("counts"):get("a", 0))
    d:assign(1)
    assert.are.equal(2, d:store("counts"):get("b", 1))
    d:pipe("in", { key = "b", partition = 1 })
    assert.are.same({ "v:a=1", "v:b=1", "v:b=2", "v:b=3" }, d:values("out"))
    -- the changelog holds one record per key and batch
    assert.are.equal(3, #d:changelog("counts"))
  end)

  it("restores deletes and open windows too", function()
    local d = testing.driver(function(sproc)
      local st = sproc.store{ name = "s" }
      sproc.source{ topic = "in", value = "json" }
        :each(function(r) if r.value.del then st:delete(r.key) else st:put(r.key, r.value.v) end end)
      sproc.source{ topic = "w" }
        :window(sproc.window.tumbling{ size = 1000, grace = 0 })
        :aggregate{ n = sproc.agg.count(), name = "win" }
        :to{ topic = "out" }
    end)
    d:pipe("in", { { key = "x", value = { v = 1 } }, { key = "y", value = { v = 2 } } })
    d:pipe("in", { key = "x", value = { del = true } })
    d:pipe("w", { { key = "k", ts = 5 }, { key = "k", ts = 6 } })
    d:revoke(0)
    assert.are.equal(0, d:store("s"):size())
    d:assign(0)
    assert.is_nil(d:store("s"):get("x", 0))
    assert.are.equal(2, d:store("s"):get("y", 0))
    d:pipe("w", { key = "k", ts = 2000 })
    assert.are.equal(2, d:output("out", { json = true })[1].value.n)
  end)
end)

describe("determinism", function()
  it("gives byte-identical outputs over a run with a reload and a revoke/assign", function()
    local function run()
      local d = testing.driver{ partitions = 3, build = counter("a") }
      for i = 1, 300 do
        d:pipe("in", { key = "k" .. (i % 13), partition = i % 3, ts = i })
        if i == 100 then d:reload(counter("b")) end
        if i == 200 then d:revoke({ 0, 2 }); d:assign({ 2, 0 }) end
      end
      local out = {}
      for _, r in ipairs(d:outputs()) do
        out[#out + 1] = table.concat({ r.topic, r.partition, r.key, r.value, r.ts }, "|")
      end
      return table.concat(out, "\n")
    end
    local a, b = run(), run()
    assert.are.equal(300, select(2, a:gsub("\n", "")) + 1)
    assert.are.equal(a, b)
  end)
end)
