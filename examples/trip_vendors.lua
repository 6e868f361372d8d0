-- Trips enriched with their vendor's record: a stream joined with a table.
--
--   sproc examples/trip_vendors.lua --until-end      (embedded dev cluster)
--
-- The vendors are a table: the latest record per vendor id of topic
-- "vendors" (in production a compacted topic someone else writes). Each
-- trip looks its vendor up when it is processed; a trip whose vendor is
-- not in the table goes on with vendor = false (a left join; join() would
-- drop it). The table's topic is its own changelog: a restarted process
-- reads it back before the trips.
--
-- The first two pipelines feed the topics from data/ (leave them out when
-- the topics are written elsewhere). Records' Kafka timestamps are their
-- event times: a trip joins the table as it was at the trip's time, so a
-- vendor record counts from its "since" on.
local sproc = require "sproc"

sproc.app{ id = "trip-vendors" }

local function at(field) return function(r) return sproc.time.parse_iso(r.value[field]) end end

sproc.source{ file = "data/vendors.jsonl", format = "json", time = at("since") }
  :key_by(function(r) return r.value.vendorid end)
  :to{ topic = "vendors" }
sproc.source{ file = "data/trips.jsonl", format = "json", time = at("lpep_pickup_datetime") }
  :key_by(function(r) return r.value.vendorid end)
  :to{ topic = "tripdata" }

local vendors = sproc.table{ topic = "vendors", value = "json" }

local enriched = sproc.source{ topic = "tripdata", value = "json" }
  :left_join(vendors, function(trip, vendor)
    return { trip_id = trip.trip_id, pickup = trip.lpep_pickup_datetime,
             total_amount = trip.total_amount, vendor = vendor and vendor.name or false }
  end)
enriched:to{ topic = "trips-with-vendor" }
enriched:print{ key = true }
