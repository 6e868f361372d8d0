-- Trips matched with their payments within 30 minutes: a stream-stream
-- join.
--
--   sproc examples/trip_payments.lua --until-end     (embedded dev cluster)
--
-- Both topics are keyed by trip id, so a trip and its payment are in the
-- same partition number. A trip and a payment whose times are at most 30
-- minutes apart make one result as soon as the second of them arrives. A
-- trip with no payment within its 30 minutes comes out once, with
-- paid = false, when stream time has passed its window and the grace
-- (a left join: Kafka Streams' rule, no early "unpaid" that a later
-- payment would contradict). Results are stamped with the later time of
-- the two.
local sproc = require "sproc"

sproc.app{ id = "trip-payments" }

local function at(field) return function(r) return sproc.time.parse_iso(r.value[field]) end end
local function by_trip(r) return r.value.trip_id end

-- Feed the topics from data/, keyed by trip id, stamped with event times.
sproc.source{ file = "data/trips.jsonl", format = "json", time = at("lpep_pickup_datetime") }
  :key_by(by_trip)
  :to{ topic = "trips" }
sproc.source{ file = "data/payments.jsonl", format = "json", time = at("paid_at") }
  :key_by(by_trip)
  :to{ topic = "payments" }

local payments = sproc.source{ topic = "payments", value = "json" }

local matched = sproc.source{ topic = "trips", value = "json" }
  :left_join(payments, function(trip, payment)
    return { trip_id = trip.trip_id, total_amount = trip.total_amount,
             paid = payment and payment.amount or false,
             method = payment and payment.method or false }
  end, { within = "30m", grace = "5m", name = "trip-payment" })
matched:to{ topic = "trip-payments" }
matched:print{ key = true }
