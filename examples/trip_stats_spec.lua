-- Trip statistics on the test driver: 10-minute windows per vendor.
local testing = require "sproc.testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function trip(vendor, pickup, amount, riders)
  return { value = { vendorid = vendor, lpep_pickup_datetime = pickup,
                     total_amount = amount, passenger_count = riders } }
end

describe("examples/trip_stats.lua", function()
  it("counts trips and sums revenue per vendor and 10 minutes of pickup time", function()
    local d = testing.driver{ script = here .. "/trip_stats.lua" }
    d:pipe("tripdata", {
      trip("1", "2016-01-01 00:01:00", "10.50", "1"),
      trip("2", "2016-01-01 00:04:00", "7.25", "2"),
      trip("1", "2016-01-01 00:09:59", "4.50", "1"),
      trip("1", "2016-01-01 00:10:00", "3.00", "3"),   -- the next window
      trip("1", "2016-01-01 00:05:00", "0.00", "1"),   -- free: filtered out
      trip("2", "2016-01-01 00:02:00", "1.00", "1"),   -- out of order, within grace
    })
    d:close_windows()
    local got = {}
    for _, r in ipairs(d:output("trip-stats", { json = true })) do
      local v = r.value
      got[#got + 1] = string.format("%s %d %d %.2f %d", r.key, v.window_start, v.trips, v.revenue, v.riders)
    end
    table.sort(got)
    assert.are.same({
      "1 1451606400000 2 15.00 2",
      "1 1451607000000 1 3.00 3",
      "2 1451606400000 2 8.25 3",
    }, got)
  end)

  it("sends a record whose pickup time does not parse to the error policy", function()
    local d = testing.driver{ script = here .. "/trip_stats.lua" }
    assert.has_error(function() d:pipe("tripdata", trip("1", "yesterday", "1.00", "1")) end)
  end)
end)
