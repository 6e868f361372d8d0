-- The NYC green-taxi trips of the Spark Structured Streaming tutorial:
-- read the JSON trips of topic "tripdata" from the earliest offset, keep
-- the declared fields and write them to rolling JSON-lines files.
--
--   scripts/gen_trips --count 100000 --out /tmp/trips.jsonl
--   TRIPS=/tmp/trips.jsonl sproc examples/tripdata_feed.lua --until-end
--   sproc examples/tripdata.lua --until-end          # bounded, like Spark's batch read
--   sproc examples/tripdata.lua                      # continuous
--
-- Files appear in $TRIPDATA_OUT (default: tripdata-out/ in the current
-- directory), each published whole by a rename.
local sproc = require "sproc"

sproc.app{ id = "tripdata" }

-- The tutorial's schema: the fields a trip record declares.
local fields = {
  "vendorid", "lpep_pickup_datetime", "lpep_dropoff_datetime", "passenger_count",
  "trip_distance", "pickup_longitude", "pickup_latitude", "dropoff_longitude",
  "dropoff_latitude", "ratecodeid", "store_and_fwd_flag", "payment_type",
  "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
  "improvement_surcharge", "total_amount", "trip_type",
}

sproc.source{ topic = os.getenv("TRIPDATA_TOPIC") or "tripdata", value = "json" }
  :select(fields)
  :to_files{ dir = os.getenv("TRIPDATA_OUT") or "tripdata-out",
             prefix = "trips", roll_bytes = 16 * 1024 * 1024, roll_seconds = 30 }
