-- Found by tests/fuzz (seed 336, run "batch 1"), shrunk:
-- Defect: merging sessions took an existing session's last() over the record's at an equal time (the record was added before the merge).
-- topic win2: 1 expected, 1 got; missing ["('k0', (('a0', 17.0), ('window_end', 1505.0), ('window_start', 1505.0)))"], unexpected ["('k0', (('a0', 18.0), ('window_end', 1505.0), ('window_start', 1505.0)))"]
local testing = require "sproc.testing"
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = spec_dir .. "/?.lua;" .. package.path
local fuzz = require "spec_fuzz"

describe("fuzz case 336", function()
  it("gives the model's outputs", function()
    local script = os.tmpname() .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write([==[
local sproc = require "sproc"
sproc.app{ id = "fz", errors = "skip" }
local function N(r) local v = r.value; v = type(v) == 'table' and v.n or nil; return type(v) == 'number' and v or 0 end
local function S(r) local v = r.value; v = type(v) == 'table' and v.s or nil; return type(v) == 'string' and v or '-' end
local function NV(r) local v = r.value; v = type(v) == 'table' and v.n or nil; return type(v) == 'number' and v or nil end
local LIST = sproc.agg.custom{ init = function() return 100 end, add = function(a, r) return a + N(r) + 1 end, merge = function(a, b) return a + b end }
local src0 = sproc.source{ topic = "in0", value = "json", tombstones = "pass" }
local chain0 = src0
  :window(sproc.window.session{ grace = 20, gap = 30 })
  :aggregate{ a0 = sproc.agg.last(NV) }
  :emit "final"
  :to{ topic = "win2" }
]==])
    f:close()
    local d = testing.driver{ script = script, partitions = 1 }
    local inputs = {
      { topic = "in0", key = "k0", value = [==[{"n":18,"s":"c","t":1505}]==], ts = 1505, partition = 0 },
      { topic = "in0", key = "k0", value = [==[{"n":17,"s":"c","t":1505}]==], ts = 1505, partition = 0 },
    }
    fuzz.run(d, inputs, "batch", 1, script, 1)
    os.remove(script)
    local update = {  }
    assert.are.same({
      "win2|k0|{\"a0\":17,\"window_end\":1505,\"window_start\":1505}",
    }, fuzz.lines(d, update))
  end)
end)
