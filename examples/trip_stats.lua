-- Trip statistics: per vendor, the trips and the revenue of every 10
-- minutes of pickup time, the windowed aggregation of the Spark
-- Structured Streaming tutorial.
--
--   export SPROC_BROKERS=$(scripts/kafka start | tail -n 1)   # a broker that keeps topics
--   scripts/gen_trips --count 100000 --out /tmp/trips.jsonl
--   TRIPS=/tmp/trips.jsonl sproc examples/tripdata_feed.lua --until-end --create-topics
--   sproc examples/trip_stats.lua --until-end --create-topics   # every window closes at the end
--
-- Results go to the topic "trip-stats": key = the vendor, value =
-- {"window_start":..,"window_end":..,"trips":..,"revenue":..,"riders":..}.
local sproc = require "sproc"

sproc.app{ id = "trip-stats" }

sproc.source{ topic = os.getenv("TRIPDATA_TOPIC") or "tripdata", value = "json",
              time = function(r) return sproc.time.parse_iso(r.value.lpep_pickup_datetime) end }
  :filter(function(r) return tonumber(r.value.total_amount) > 0 end)
  :key_by(function(r) return r.value.vendorid end)
  :window(sproc.window.tumbling{ size = "10m", grace = "30m" })
  :aggregate{ name = "per-vendor",
              trips = sproc.agg.count(),
              revenue = sproc.agg.sum(function(r) return tonumber(r.value.total_amount) end),
              riders = sproc.agg.sum(function(r) return tonumber(r.value.passenger_count) end) }
  :emit "final"
  :to{ topic = os.getenv("TRIP_STATS_TOPIC") or "trip-stats" }
