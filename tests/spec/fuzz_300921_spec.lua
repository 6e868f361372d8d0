-- Found by tests/fuzz (seed 300921, run "batch 1"), shrunk:
-- Defect: the test driver's in-place repartition moved a record to its key's partition before its time was counted, so the record moved the stream time of the partition it went to (expiring another source's store entries there early) instead of the one it was read from.
-- topic win3 (update mode, last result per window): 1 windows differ, e.g. [(('k6', 1721), (('a2', 1.0), ('window_end', 1721.0), ('window_start', 1721.0)), (('a2', 2.0), ('window_end', 1721.0), ('window_start', 1721.0)))]
local testing = require "sproc.testing"
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = spec_dir .. "/?.lua;" .. package.path
local fuzz = require "spec_fuzz"

describe("fuzz case 300921", function()
  it("gives the model's outputs", function()
    local script = os.tmpname() .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write([==[
local sproc = require "sproc"
sproc.app{ id = "fz", errors = "fail" }
local function N(r) local v = r.value; v = type(v) == 'table' and v.n or nil; return type(v) == 'number' and v or 0 end
local function S(r) local v = r.value; v = type(v) == 'table' and v.s or nil; return type(v) == 'string' and v or '-' end
local function NV(r) local v = r.value; v = type(v) == 'table' and v.n or nil; return type(v) == 'number' and v or nil end
local LIST = sproc.agg.custom{ init = function() return 100 end, add = function(a, r) return a + N(r) + 1 end, merge = function(a, b) return a + b end }
local st0 = sproc.store{ name = "st0", backend = "memory", ttl = 200 }
local src0 = sproc.source{ topic = "in0", value = "json", tombstones = "pass" }
local b0_0, b0_1 = src0
  :key_by(function(r) return S(r) end)
  :branch(function(r) return (((N(r) + -3) * 2) % 2 == 0) end, function(r) return (N(r) % 3 == 1) end)
b0_0
  :window(sproc.window.sliding{ grace = 100000, size = 50 })
  :aggregate{ a0 = sproc.agg.max(NV) }
  :emit "update"
  :to{ topic = "win1" }
b0_1
  :window(sproc.window.sliding{ grace = 100000, size = 50 })
  :aggregate{ a2 = sproc.agg.avg(NV) }
  :emit "update"
  :to{ topic = "win2" }
local src1 = sproc.source{ topic = "in0", value = "json", tombstones = "pass" }
local chain1 = src1
  :map(function(r) local v = st0:incr(("g" .. (N(r) % 3)), 1); return { n = type(v) == 'number' and v or -1, s = S(r) } end)
  :window(sproc.window.session{ grace = 100000, gap = 5 })
  :aggregate{ a2 = sproc.agg.first(NV) }
  :emit "update"
  :to{ topic = "win3" }
]==])
    f:close()
    local d = testing.driver{ script = script, partitions = 1 }
    local inputs = {
      { topic = "in0", key = "k1", value = [==[{"n":36,"s":"c","t":1552,"x":[1,{"y":"z"}]}]==], ts = 1552, partition = 1 },
      { topic = "in0", key = "k1", value = [==[{"n":51,"s":"c","t":1521}]==], ts = 1521, partition = 0 },
      { topic = "in0", key = "k6", value = [==[{"n":3,"s":"c","t":1721}]==], ts = 1721, partition = 0 },
    }
    fuzz.run(d, inputs, "batch", 1, script, 1)
    os.remove(script)
    local update = { ["win1"] = true, ["win2"] = true, ["win3"] = true }
    assert.are.same({
      "win1|c|1471|{\"a0\":51,\"window_end\":1521,\"window_start\":1471}",
      "win1|c|1502|{\"a0\":51,\"window_end\":1552,\"window_start\":1502}",
      "win1|c|1522|{\"a0\":36,\"window_end\":1572,\"window_start\":1522}",
      "win1|c|1671|{\"a0\":3,\"window_end\":1721,\"window_start\":1671}",
      "win3|k1|1521|{\"a2\":1,\"window_end\":1521,\"window_start\":1521}",
      "win3|k1|1552|{\"a2\":1,\"window_end\":1552,\"window_start\":1552}",
      "win3|k6|1721|{\"a2\":1,\"window_end\":1721,\"window_start\":1721}",
    }, fuzz.lines(d, update))
  end)
end)
