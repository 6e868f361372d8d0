-- Writes trips from a JSON-lines file into topic "tripdata", keyed by
-- vendorid: the companion of examples/tripdata.lua.
--
--   export SPROC_BROKERS=$(scripts/kafka start | tail -n 1)   # a broker that keeps topics
--   scripts/gen_trips --count 100000 --out /tmp/trips.jsonl
--   TRIPS=/tmp/trips.jsonl sproc examples/tripdata_feed.lua --until-end --create-topics
local sproc = require "sproc"

sproc.app{ id = "tripdata-feed" }

sproc.source{ file = os.getenv("TRIPS") or "data/trips.jsonl", format = "json" }
  :key_by(function(r) return r.value.vendorid end)
  :to{ topic = os.getenv("TRIPDATA_TOPIC") or "tripdata" }
