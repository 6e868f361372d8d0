-- Writes trips from a JSON-lines file into topic "tripdata", keyed by
-- vendorid: the companion of examples/tripdata.lua.
--
--   scripts/gen_trips --count 100000 --out /tmp/trips.jsonl
--   TRIPS=/tmp/trips.jsonl sproc examples/tripdata_feed.lua --until-end
local sproc = require "sproc"

sproc.app{ id = "tripdata-feed" }

sproc.source{ file = os.getenv("TRIPS") or "data/trips.jsonl", format = "json" }
  :key_by(function(r) return r.value.vendorid end)
  :to{ topic = os.getenv("TRIPDATA_TOPIC") or "tripdata" }
