"""The benchmark's scenarios in Quix Streams (PyPI), as sproc runs them:
  python quix_app.py BROKERS APP SCENARIO IN OUT
s0 pass-through; s1 parse, keep ok, project id and amount, serialize;
s2 10-second tumbling count per key, emitted when the window closes;
s3 1-hour/5-minute hopping sum of amount per country (re-keyed through a
repartition topic, grace 3 h), emitted when the window closes. Event
time is the records' Kafka timestamp, grace 0 unless said, windows closed by the partition's
stream time (as Kafka Streams and sproc do; Quix's default closes a
key's windows only when that key comes back), at-least-once, commit every
second.
Runs until killed; the harness watches the output topic."""
import os
import sys
import tempfile

from quixstreams import Application


def main():
    brokers, app_id, scenario, src, dst = sys.argv[1:6]
    app = Application(broker_address=brokers, consumer_group=app_id,
                      auto_offset_reset="earliest", commit_interval=1.0,
                      processing_guarantee="at-least-once", loglevel="WARNING",
                      producer_extra_config={"linger.ms": 5},
                      # its RocksDB state goes outside the source tree
                      state_dir=os.path.join(tempfile.gettempdir(), "sproc-quix-state", app_id))
    raw = scenario == "s0"
    inp = app.topic(src, key_deserializer="str",
                    value_deserializer="bytes" if raw else "json")
    out = app.topic(dst, key_serializer="str", value_serializer="bytes" if raw else "json")
    sdf = app.dataframe(inp)
    if scenario == "s1":
        sdf = sdf.filter(lambda v: v["ok"]).apply(lambda v: {"id": v["id"], "amount": v["amount"]})
    elif scenario == "s2":
        sdf = (sdf.tumbling_window(duration_ms=10_000, grace_ms=0).count().final(closing_strategy="partition")
               .apply(lambda w: {"window_start": w["start"], "window_end": w["end"], "n": w["value"]}))
    elif scenario == "s3":
        sdf = (sdf.group_by(lambda v: v["country"], name="country")
               .apply(lambda v: v["amount"])
               .hopping_window(duration_ms=3_600_000, step_ms=300_000, grace_ms=3 * 3_600_000).sum().final(closing_strategy="partition")
               .apply(lambda w: {"window_start": w["start"], "window_end": w["end"],
                                 "total": w["value"]}))
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
