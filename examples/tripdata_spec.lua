-- The tripdata job and its feed, on the test driver.
local testing = require "sproc.testing"
local json = require "sproc.json"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local trip = '{"vendorid":"2","lpep_pickup_datetime":"2016-01-01 00:29:24",' ..
  '"lpep_dropoff_datetime":"2016-01-01 00:39:36","passenger_count":"1","trip_distance":"1.46",' ..
  '"pickup_longitude":"-73.928642","pickup_latitude":"40.680611","dropoff_longitude":"-73.924278",' ..
  '"dropoff_latitude":"40.698044","ratecodeid":"1","store_and_fwd_flag":"N","payment_type":"1",' ..
  '"fare_amount":"8","extra":"0.5","mta_tax":"0.5","tip_amount":"1.86","tolls_amount":"0",' ..
  '"improvement_surcharge":"0.3","total_amount":"11.16","trip_type":"1"}'

describe("examples/tripdata.lua", function()
  it("keeps the declared fields, in order, and drops the rest", function()
    local out = os.tmpname()
    os.remove(out)
    -- the script reads TRIPDATA_OUT; the driver runs it in this process
    local getenv = os.getenv
    os.getenv = function(k) if k == "TRIPDATA_OUT" then return out end return getenv(k) end
    local d = testing.driver{ script = here .. "/tripdata.lua" }
    os.getenv = getenv
    local extra = trip:sub(1, -2) .. ',"surprise":"x"}'
    d:pipe("tripdata", { { key = "2", value = extra } })
    d:flush()
    local p = io.popen("cat " .. out .. "/trips-*.jsonl")
    local line = p:read("*l")
    p:close()
    assert.are.equal(trip, line)
    assert.are.same(json.decode(trip), json.decode(line))
    os.execute("rm -rf " .. out)
  end)

  it("in Parquet mode publishes typed files listed in its checkpoint", function()
    local out = os.tmpname()
    os.remove(out)
    local getenv = os.getenv
    os.getenv = function(k)
      if k == "TRIPDATA_OUT" then return out elseif k == "TRIPDATA_FORMAT" then return "parquet" end
      return getenv(k)
    end
    local d = testing.driver{ script = here .. "/tripdata.lua" }
    os.getenv = getenv
    d:pipe("tripdata", { { key = "2", value = trip }, { key = "2", value = trip } })
    d:flush()
    local p = io.popen("cat " .. out .. "/_checkpoint/*.commit")
    local entry = p:read("*a")
    p:close()
    assert.matches("\nrows 2\noffsets tripdata 0 0 1\n", entry)
    local f = io.popen("ls " .. out .. "/trips-*.parquet")
    local name = f:read("*l")
    f:close()
    local bytes = io.open(name, "rb"):read("*a")
    assert.are.equal("PAR1", bytes:sub(1, 4))
    assert.are.equal("PAR1", bytes:sub(-4))
    os.execute("rm -rf " .. out)
  end)
end)

describe("examples/tripdata_feed.lua", function()
  it("keys each trip by its vendor and passes it on unchanged", function()
    local d = testing.driver{ script = here .. "/tripdata_feed.lua" }
    -- a file source's records carry the file's path as their topic
    d:pipe(here .. "/" .. (os.getenv("TRIPS") or "data/trips.jsonl"), { value = trip })
    local out = d:output(os.getenv("TRIPDATA_TOPIC") or "tripdata")
    assert.are.equal(1, #out)
    assert.are.equal("2", out[1].key)
    assert.are.equal(trip, out[1].value)
  end)
end)
