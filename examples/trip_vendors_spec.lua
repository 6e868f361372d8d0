-- Trips enriched with their vendor, on the test driver.
local testing = require "sproc.testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local T0 = 1451606400000 -- 2016-01-01T00:00:00Z

describe("examples/trip_vendors.lua", function()
  it("joins each trip with its vendor as the table was at the trip's time", function()
    local d = testing.driver{ script = here .. "/trip_vendors.lua" }
    d:pipe("vendors", { key = "1", value = { name = "Creative Mobile Technologies" }, ts = T0 })
    d:pipe("tripdata", {
      { key = "1", value = { trip_id = 1, total_amount = 7.75 }, ts = T0 + 60000 },
      { key = "3", value = { trip_id = 2, total_amount = 9 }, ts = T0 + 120000 },  -- no such vendor
    })
    d:pipe("vendors", { key = "1", value = { name = "CMT" }, ts = T0 + 180000 })
    d:pipe("tripdata", { key = "1", value = { trip_id = 3, total_amount = 4 }, ts = T0 + 240000 })
    local got = {}
    for _, r in ipairs(d:output("trips-with-vendor", { json = true })) do
      got[#got + 1] = string.format("%s %d %s", r.key, r.value.trip_id, tostring(r.value.vendor))
    end
    assert.are.same({ "1 1 Creative Mobile Technologies", "3 2 false", "1 3 CMT" }, got)
    assert.are.equal("CMT", d:store("vendors"):get("1").name)
  end)
end)
