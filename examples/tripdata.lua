-- The NYC green-taxi trips of the Spark Structured Streaming tutorial:
-- read the JSON trips of topic "tripdata" from the earliest offset, keep
-- the declared fields and write them to rolling files.
--
--   export SPROC_BROKERS=$(scripts/kafka start | tail -n 1)   # a broker that keeps topics
--   scripts/gen_trips --count 100000 --out /tmp/trips.jsonl
--   TRIPS=/tmp/trips.jsonl sproc examples/tripdata_feed.lua --until-end --create-topics
--   sproc examples/tripdata.lua --until-end          # bounded, like Spark's batch read
--   sproc examples/tripdata.lua                      # continuous
--   TRIPDATA_FORMAT=parquet sproc examples/tripdata.lua   # the tutorial's Parquet job
--
-- Files appear in $TRIPDATA_OUT (default: tripdata-out/ in the current
-- directory), each published whole by a rename. In Parquet mode the values
-- are typed by the tutorial's schema, and a checkpoint directory
-- (_checkpoint/ inside the output, as Spark's checkpointLocation) makes the
-- files exactly-once across crashes and restarts.
local sproc = require "sproc"

sproc.app{ id = "tripdata" }

-- The tutorial's schema: the fields a trip record declares.
local trip = sproc.schema{
  { "vendorid", "int64" },
  { "lpep_pickup_datetime", "timestamp" },
  { "lpep_dropoff_datetime", "timestamp" },
  { "passenger_count", "int64" },
  { "trip_distance", "double" },
  { "pickup_longitude", "double" },
  { "pickup_latitude", "double" },
  { "dropoff_longitude", "double" },
  { "dropoff_latitude", "double" },
  { "ratecodeid", "int64" },
  { "store_and_fwd_flag", "string" },
  { "payment_type", "int64" },
  { "fare_amount", "double" },
  { "extra", "double" },
  { "mta_tax", "double" },
  { "tip_amount", "double" },
  { "tolls_amount", "double" },
  { "improvement_surcharge", "double" },
  { "total_amount", "double" },
  { "trip_type", "int64" },
}

local topic = os.getenv("TRIPDATA_TOPIC") or "tripdata"
local out = os.getenv("TRIPDATA_OUT") or "tripdata-out"

if os.getenv("TRIPDATA_FORMAT") == "parquet" then
  sproc.source{ topic = topic, schema = trip }
    :to_parquet{ dir = out, prefix = "trips", compression = "snappy",
                 checkpoint = out .. "/_checkpoint",
                 roll_bytes = 64 * 1024 * 1024,
                 roll_seconds = tonumber(os.getenv("TRIPDATA_ROLL_SECONDS")) or 30 }
else
  sproc.source{ topic = topic, value = "json" }
    :select(trip.names)
    :to_files{ dir = out, prefix = "trips", roll_bytes = 16 * 1024 * 1024, roll_seconds = 30 }
end
