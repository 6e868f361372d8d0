-- Found by tests/fuzz (seed 165, run "random 7"), shrunk:
-- Defect: a store's TTL ran on stream time as of the batch's start: an entry written in a batch was stamped with an earlier time and expired early.
-- topic win1: 2 expected, 2 got; missing ["('k13', (('a2', 3.0), ('window_end', 1253.0), ('window_start', 1253.0)))"], unexpected ["('k13', (('a2', 1.0), ('window_end', 1253.0), ('window_start', 1253.0)))"]
local testing = require "sproc.testing"
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = spec_dir .. "/?.lua;" .. package.path
local fuzz = require "spec_fuzz"

describe("fuzz case 165", function()
  it("gives the model's outputs", function()
    local script = os.tmpname() .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write([==[
local sproc = require "sproc"
sproc.app{ id = "fz", errors = "fail" }
local function N(r) local v = r.value; v = type(v) == 'table' and v.n or nil; return type(v) == 'number' and v or 0 end
local function S(r) local v = r.value; v = type(v) == 'table' and v.s or nil; return type(v) == 'string' and v or '-' end
local function NV(r) local v = r.value; v = type(v) == 'table' and v.n or nil; return type(v) == 'number' and v or nil end
local LIST = sproc.agg.custom{ init = function() return 0 end, add = function(a, r) return a + N(r) + 1 end, merge = function(a, b) return a + b end }
local st0 = sproc.store{ name = "st0", backend = "memory", ttl = 200 }
local st1 = sproc.store{ name = "st1", backend = "memory", ttl = 200 }
local src0 = sproc.source{ topic = "in0" }
local chain0 = src0
  :map(function(r) local v = st0:incr(("g" .. (N(r) % 6)), 1); return { n = type(v) == 'number' and v or -1, s = S(r) } end)
  :window(sproc.window.session{ grace = 20, gap = 5 })
  :aggregate{ a2 = sproc.agg.avg(NV) }
  :emit "final"
  :to{ topic = "win1" }
]==])
    f:close()
    local d = testing.driver{ script = script, partitions = 1 }
    local inputs = {
      { topic = "in0", key = "k2", value = [==[{"n":26,"s":"b","t":1097,"x":[1,{"y":"z"}]}]==], ts = 1097, partition = 0 },
      { topic = "in0", key = "k1", value = [==[{"s":"a","t":933}]==], ts = 933, partition = 0 },
      { topic = "in0", key = "k13", value = [==[{"n":61,"s":"a","t":1253}]==], ts = 1253, partition = 0 },
    }
    fuzz.run(d, inputs, "random", 7, script, 1)
    os.remove(script)
    local update = {  }
    assert.are.same({
      "win1|k13|{\"a2\":3,\"window_end\":1253,\"window_start\":1253}",
      "win1|k2|{\"a2\":1,\"window_end\":1097,\"window_start\":1097}",
    }, fuzz.lines(d, update))
  end)
end)
