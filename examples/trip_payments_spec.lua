-- Trips matched with payments within 30 minutes, on the test driver.
local testing = require "sproc.testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local T0 = 1451606400000 -- 2016-01-01T00:00:00Z
local MIN = 60000

describe("examples/trip_payments.lua", function()
  it("matches a payment within 30 minutes, and says unpaid once the window is past", function()
    local d = testing.driver{ script = here .. "/trip_payments.lua" }
    d:pipe("trips", {
      { key = "1", value = { trip_id = 1, total_amount = 7.75 }, ts = T0 },
      { key = "2", value = { trip_id = 2, total_amount = 9 }, ts = T0 + 5 * MIN },
    })
    d:pipe("payments", { key = "1", value = { trip_id = 1, amount = 7.75, method = "card" }, ts = T0 + 4 * MIN })
    local function got()
      local out = {}
      for _, r in ipairs(d:output("trip-payments", { json = true })) do
        out[#out + 1] = string.format("%s %s %d", r.key, tostring(r.value.paid), r.ts)
      end
      return out
    end
    -- stamped with the later of the two times; trip 2's window (until
    -- 00:35) plus grace (5 minutes) is not past yet
    assert.are.same({ "1 7.75 " .. (T0 + 4 * MIN) }, got())
    -- a payment 45 minutes after its trip matches nothing, and moves stream
    -- time past trip 2's window: trip 2 comes out unpaid, at its own time
    d:pipe("payments", { key = "2", value = { trip_id = 2, amount = 9, method = "cash" }, ts = T0 + 50 * MIN })
    assert.are.same({ "1 7.75 " .. (T0 + 4 * MIN), "2 false " .. (T0 + 5 * MIN) }, got())
  end)
end)
