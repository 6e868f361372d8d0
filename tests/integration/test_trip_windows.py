"""The randomized window test: 200,000 generated trips (seeded; pickups out
of order by up to 20 minutes, a few much later) on 4 partitions keyed by
vendorid, aggregated per vendor in 10-minute tumbling and 1-hour/5-minute
hopping windows (count, sum of total_amount, avg of trip_distance), once
with 30 minutes of grace and once with 5, in bounded runs through the real
broker. An oracle written here (it shares no code with sproc) replays each
partition in offset order with Kafka Streams' rules; the results must be
the same multiset, and the late counts the same."""
import datetime
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import FAST, ROOT, write_script

N = int(os.environ.get("SPROC_TRIPS", "200000"))
TUMBLE = 600_000
HOP_SIZE, HOP_ADVANCE = 3_600_000, 300_000


def epoch_ms(s):
    d = datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) * 1000


def oracle(records_by_partition, grace):
    """{(op, vendor, start): (count, sum, avg)}, late counts per op."""
    acc, late = {}, {"tumbling": 0, "hopping": 0}
    for part, recs in records_by_partition.items():
        stream = -1
        for _, vendor, ts, amount, dist in sorted(recs):
            stream = max(stream, ts)          # before the lateness check
            wins = [("tumbling", ts - ts % TUMBLE, TUMBLE)]
            s = ts - ts % HOP_ADVANCE
            while s >= 0 and s > ts - HOP_SIZE:
                wins.append(("hopping", s, HOP_SIZE))
                s -= HOP_ADVANCE
            for op, start, size in wins:
                if start + size <= stream - grace:
                    late[op] += 1
                    continue
                a = acc.setdefault((op, vendor, start), [0, 0.0, 0.0])
                a[0] += 1
                a[1] += amount
                a[2] += dist
    return {k: (c, s, d / c) for k, (c, s, d) in acc.items()}, late


@pytest.fixture(scope="module")
def trips(tmp_path_factory):
    path = tmp_path_factory.mktemp("trips") / "trips.jsonl"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_trips"), "--count", str(N),
                    "--seed", "2024", "--out", str(path)], check=True)
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("grace_min", [30, 5])
def test_trip_windows_match_the_oracle(kafka, sproc, tmp_path, trips, grace_min):
    kafka.create("trips", partitions=4)
    kafka.create("tumbling", partitions=4)
    kafka.create("hopping", partitions=4)
    kafka.produce("trips", [(t["vendorid"].encode(), t) for t in trips])
    script = write_script(tmp_path, "trip_windows.lua", f"""
local sproc = require "sproc"
local trips = sproc.source{{ topic = "{kafka.topic('trips')}", value = "json",
  time = function(r) return sproc.time.parse_iso(r.value.lpep_pickup_datetime) end }}
local function aggs(name)
  return {{ name = name, n = sproc.agg.count(),
           total = sproc.agg.sum(function(r) return tonumber(r.value.total_amount) end),
           distance = sproc.agg.avg(function(r) return tonumber(r.value.trip_distance) end) }}
end
trips:window(sproc.window.tumbling{{ size = "10m", grace = "{grace_min}m" }})
  :aggregate(aggs("tumbling"))
  :to{{ topic = "{kafka.topic('tumbling')}" }}
trips:window(sproc.window.hopping{{ size = "1h", advance = "5m", grace = "{grace_min}m" }})
  :aggregate(aggs("hopping"))
  :to{{ topic = "{kafka.topic('hopping')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    assert p.wait(600) == 0, p.stderr()

    by_part = {}
    for r in kafka.read("trips"):
        v = json.loads(r["value"])
        by_part.setdefault(r["partition"], []).append(
            (r["offset"], v["vendorid"], epoch_ms(v["lpep_pickup_datetime"]),
             float(v["total_amount"]), float(v["trip_distance"])))
    want, want_late = oracle(by_part, grace_min * 60_000)

    got = {}
    for op in ("tumbling", "hopping"):
        for r in kafka.read(op):
            v = json.loads(r["value"])
            k = (op, r["key"].decode(), v["window_start"])
            assert k not in got, f"two results for {k}"
            got[k] = (v["n"], v["total"], v["distance"])
    assert set(got) == set(want)
    diff = {k: (got[k], want[k]) for k in want
            if got[k][0] != want[k][0] or abs(got[k][1] - want[k][1]) > 1e-6 * max(1, abs(want[k][1]))
            or abs(got[k][2] - want[k][2]) > 1e-9 * max(1, abs(want[k][2]))}
    assert not diff, f"{len(diff)} results differ, e.g. {list(diff.items())[:5]}"
    log = p.stderr()
    got_late = {op: int(re.search(rf"aggregate {op}: (\d+) late", log).group(1))
                for op in ("tumbling", "hopping")}
    print(f"grace {grace_min} min: {len(got)} results, late {got_late}")
    assert got_late == want_late
    if grace_min == 5:
        assert want_late["tumbling"] > 0 and want_late["hopping"] > 0


def test_trip_stats_example_on_kafka(kafka, sproc, tmp_path):
    """examples/trip_stats.lua, fed by examples/tripdata_feed.lua, against the
    broker: its results equal the aggregation replayed from the repartition
    topic it reads (the order its windows saw)."""
    topic = kafka.create("tripdata", partitions=4)
    out = kafka.create("stats", partitions=4)
    trips = tmp_path / "trips.jsonl"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_trips"), "--count", "30000",
                    "--seed", "9", "--out", str(trips)], check=True)
    env = {"TRIPS": str(trips), "TRIPDATA_TOPIC": topic, "TRIP_STATS_TOPIC": out}
    feed = sproc([os.path.join(ROOT, "examples", "tripdata_feed.lua"), "--brokers", kafka.bootstrap,
                  "--app", kafka.topic("feed"), "--until-end"] + FAST, env=env, name="feed")
    assert feed.wait(120) == 0, feed.stderr()
    app = kafka.topic("stats-app")
    job = sproc([os.path.join(ROOT, "examples", "trip_stats.lua"), "--brokers", kafka.bootstrap,
                 "--app", app, "--until-end"] + FAST, env=env, name="stats")
    assert job.wait(300) == 0, job.stderr()
    grace, size = 30 * 60_000, TUMBLE
    acc, late = {}, 0
    by_part = {}
    for r in kafka.read("stats-app-per-vendor-repartition"):
        v = json.loads(r["value"])
        by_part.setdefault(r["partition"], []).append((r["offset"], r["key"].decode(), v))
    for recs in by_part.values():
        stream = -1
        for _, vendor, v in sorted(recs, key=lambda x: x[0]):
            ts = epoch_ms(v["lpep_pickup_datetime"])
            stream = max(stream, ts)
            start = ts - ts % size
            if start + size <= stream - grace:
                late += 1
                continue
            a = acc.setdefault((vendor, start), [0, 0.0, 0.0])
            a[0] += 1
            a[1] += float(v["total_amount"])
            a[2] += float(v["passenger_count"])
    got = {}
    for r in kafka.read("stats"):
        v = json.loads(r["value"])
        got[(r["key"].decode(), v["window_start"])] = [v["trips"], v["revenue"], v["riders"]]
    assert set(got) == set(acc)
    for k, (n, rev, riders) in acc.items():
        assert got[k][0] == n and abs(got[k][1] - rev) < 1e-6 * max(1, rev) and got[k][2] == riders, k
    m = re.search(r"aggregate per-vendor: (\d+) late", job.stderr())
    assert m and int(m.group(1)) == late
