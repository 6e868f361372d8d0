"""Tables and joins against the real broker: a table's state is restored
from its own topic up to the group's committed offset, a global table is
read whole before anything else, co-partitioning is checked at start, and
a stream-stream join runs bounded, and both kinds of join give under
exactly-once, killed five times, what a run without kills gives."""
import json
import os
import random
import re
import urllib.request
from collections import Counter

from conftest import (FAST, Probe, free_port, kill_in_open_transaction, lua_work,
                      wait_committed_to_end,
                      wait_until, write_script)


def canon(pairs):
    return sorted(pairs, key=lambda kv: (str(kv[0]), json.dumps(kv[1], sort_keys=True)))


def values(kafka, name):
    return canon((r["key"].decode() if r["key"] else None,
                  json.loads(r["value"]) if r["value"] is not None else None)
                 for r in kafka.read(name))


def test_stream_table_join_restores_the_table_from_its_topic(kafka, sproc, tmp_path):
    kafka.create("vendors", partitions=3)
    kafka.create("trips", partitions=3)
    kafka.create("out", partitions=3)
    kafka.produce("vendors", [(f"v{i}".encode(), {"name": f"vendor {i}"}) for i in range(20)])
    kafka.produce("vendors", [(b"v3", None)])   # deleted
    script = write_script(tmp_path, "enrich.lua", f"""
local sproc = require "sproc"
local vendors = sproc.table{{ topic = "{kafka.topic('vendors')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :left_join(vendors, function(trip, vendor)
    return {{ trip = trip.id, vendor = vendor and vendor.name or false }}
  end)
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    args = [script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST
    # first run: the table only (its offsets are committed)
    p = sproc(args)
    assert p.wait(120) == 0, p.stderr()
    assert kafka.count("out") == 0
    # second run, a new process with a memory store: the trips find the
    # vendors restored from the vendors topic itself
    kafka.produce("trips", [(f"v{i % 25}".encode(), {"id": i}) for i in range(100)])
    p = sproc(args)
    assert p.wait(120) == 0, p.stderr()
    assert "restored store" in p.stderr(), p.stderr()
    want = canon((f"v{i % 25}", {"trip": i, "vendor": f"vendor {i % 25}"
                                 if i % 25 < 20 and i % 25 != 3 else False}) for i in range(100))
    assert values(kafka, "out") == want
    assert not any(t.endswith("changelog") for t in kafka.admin.list_topics().topics
                   if t.startswith(kafka.prefix)), "a table's topic is its changelog"


def test_global_table_is_read_whole_before_the_stream(kafka, sproc, tmp_path):
    kafka.create("zones", partitions=2)
    kafka.create("trips", partitions=3)
    kafka.create("out", partitions=1)
    kafka.produce("zones", [(f"z{i}".encode(), {"name": f"zone {i}"}) for i in range(50)])
    kafka.produce("trips", [(f"t{i}".encode(), {"id": i, "zone": f"z{i % 60}"}) for i in range(300)])
    script = write_script(tmp_path, "zones.lua", f"""
local sproc = require "sproc"
local zones = sproc.global_table{{ topic = "{kafka.topic('zones')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :join(zones, function(trip, zone) return {{ id = trip.id, zone = zone.name }} end,
        {{ key = function(r) return r.value.zone end }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    assert "global tables: read 2 partitions to their end" in p.stderr()
    want = canon((f"t{i}", {"id": i, "zone": f"zone {i % 60}"}) for i in range(300) if i % 60 < 50)
    assert values(kafka, "out") == want


def test_copartitioning_is_checked_at_start(kafka, sproc, tmp_path):
    kafka.create("a", partitions=2)
    kafka.create("b", partitions=3)
    script = write_script(tmp_path, "copart.lua", f"""
local sproc = require "sproc"
local b = sproc.table{{ topic = "{kafka.topic('b')}" }}
sproc.source{{ topic = "{kafka.topic('a')}" }}
  :join(b, function(x, y) return x .. y end)
  :print()
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app")] + FAST)
    assert p.wait(60) == 1, p.stderr()
    err = p.stderr()
    assert "co-partitioned" in err, err
    assert f"{kafka.topic('a')} (2 partitions)" in err and f"{kafka.topic('b')} (3 partitions)" in err


def test_stream_stream_join_bounded(kafka, sproc, tmp_path):
    kafka.create("trips", partitions=2)
    kafka.create("payments", partitions=2)
    kafka.create("out", partitions=2)
    base = 1_700_000_000_000
    kafka.produce("trips", [(f"t{i}".encode(), {"id": i}, None, base + i * 1000) for i in range(40)])
    # a payment within 5 s of its trip for even trips, 60 s late for odd ones
    kafka.produce("payments", [(f"t{i}".encode(), {"amount": i},
                                None, base + i * 1000 + (2000 if i % 2 == 0 else 60000))
                               for i in range(40)])
    script = write_script(tmp_path, "pay.lua", f"""
local sproc = require "sproc"
local payments = sproc.source{{ topic = "{kafka.topic('payments')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :join(payments, function(t, p) return {{ id = t.id, amount = p.amount }} end,
        {{ within = "5s", grace = "1h" }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    assert values(kafka, "out") == canon((f"t{i}", {"id": i, "amount": i}) for i in range(0, 40, 2))


def test_joined_partitions_are_processed_in_timestamp_order(kafka, sproc, tmp_path):
    """A stream record joins the table as it was at the record's time
    (Kafka Streams' timestamp synchronization), whatever order the topics
    were written in: here the trips first, the vendor's updates after."""
    kafka.create("vendors", partitions=2)
    kafka.create("trips", partitions=2)
    kafka.create("out", partitions=2)
    base = 1_700_000_000_000
    kafka.produce("trips", [(b"v1", {"id": i}, None, base + t)
                            for i, t in enumerate([500, 2000, 4000, 6000])], partition=0)
    kafka.produce("vendors", [(b"v1", {"name": n}, None, base + t)
                              for n, t in [("A", 1000), ("B", 3000)]], partition=0)
    kafka.produce("vendors", [(b"v1", None, None, base + 5000)], partition=0)
    script = write_script(tmp_path, "sync.lua", f"""
local sproc = require "sproc"
local vendors = sproc.table{{ topic = "{kafka.topic('vendors')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :left_join(vendors, function(trip, vendor) return {{ id = trip.id, vendor = vendor and vendor.name or false }} end)
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    got = sorted((json.loads(r["value"])["id"], json.loads(r["value"])["vendor"]) for r in kafka.read("out"))
    assert got == [(0, False), (1, "A"), (2, "B"), (3, False)], got


def test_join_by_another_key_goes_through_a_repartition_topic(kafka, sproc, tmp_path):
    """Trips (4 partitions, keyed by trip) join a vendor table (2
    partitions) by the trip's vendor: the trips are re-keyed through
    <app>-<name>-repartition, made with the table's 2 partitions."""
    kafka.create("vendors", partitions=2)
    kafka.create("trips", partitions=4)
    kafka.create("out", partitions=2)
    base = 1_700_000_000_000
    kafka.produce("vendors", [(f"v{i}".encode(), {"name": f"vendor {i}"}, None, base) for i in range(10)])
    kafka.produce("trips", [(f"t{i}".encode(), {"id": i, "vendor": f"v{i % 12}"}, None, base + 1000 + i)
                            for i in range(200)])
    app = kafka.topic("app")
    script = write_script(tmp_path, "rekey.lua", f"""
local sproc = require "sproc"
local vendors = sproc.table{{ topic = "{kafka.topic('vendors')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :join(vendors, function(trip, vendor) return {{ id = trip.id, vendor = vendor.name }} end,
        {{ key = function(r) return r.value.vendor end, name = "by-vendor" }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app, "--until-end"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    md = kafka.admin.list_topics(f"{app}-by-vendor-repartition", timeout=10)
    assert len(md.topics[f"{app}-by-vendor-repartition"].partitions) == 2
    want = canon((f"v{i % 12}", {"id": i, "vendor": f"vendor {i % 12}"}) for i in range(200) if i % 12 < 10)
    assert values(kafka, "out") == want


CRASH_SCRIPT = """
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "exactly_once" }}
{work}
local vendors = sproc.table{{ topic = "{vendors}", value = "json" }}
local payments = sproc.source{{ topic = "{payments}", value = "json" }}
local trips = sproc.source{{ topic = "{trips}", value = "json" }}
trips
  :left_join(vendors, function(trip, vendor)
    work()
    return {{ id = trip.id, vendor = vendor and vendor.name or false }}
  end, {{ key = function(r) return r.value.vendor end, name = "by-vendor" }})
  :to{{ topic = "{out_st}" }}
trips
  :left_join(payments, function(trip, pay)
    work()
    return {{ id = trip.id, amount = pay and pay.amount or false }}
  end, {{ within = "30s", grace = "1m" }})
  :to{{ topic = "{out_ss}" }}
"""


def crash_inputs(kafka, n, seed):
    """Vendors with several versions and deletions, all older than the
    trips (so that which version a trip sees does not depend on when the
    re-keyed trips reach the repartition topic); trips with disorder;
    payments within 30 s of their trip, later, or missing."""
    rnd = random.Random(seed)
    base = 1_700_000_000_000
    vend = []
    for i in range(600):
        k = f"v{rnd.randrange(150)}"
        vend.append((k.encode(), None if rnd.random() < 0.1 else {"name": f"{k}.{i}"}, None, base + i))
    kafka.produce("vendors", vend)
    trips, pays = [], []
    for i in range(n):
        ts = base + 100_000 + i * 20 + rnd.randrange(-2000, 2000)
        trips.append((f"t{i}".encode(), {"id": i, "vendor": f"v{rnd.randrange(170)}"}, None, ts))
        r = rnd.random()
        if r < 0.7:
            pays.append((f"t{i}".encode(), {"amount": i % 97}, None, ts + rnd.randrange(-25_000, 25_000)))
        elif r < 0.85:
            pays.append((f"t{i}".encode(), {"amount": -1}, None, ts + rnd.randrange(40_000, 90_000)))
    kafka.produce("trips", trips)
    kafka.produce("payments", pays)


def committed_outputs(kafka, name):
    """(key, value, timestamp) of read_committed records, as a multiset; a
    JSON object's fields may come in any order."""
    return Counter((r["key"], json.dumps(json.loads(r["value"]), sort_keys=True), r["timestamp"])
                   for r in kafka.read(name, isolation="read_committed"))


def test_joins_exactly_once_killed_five_times_equal_a_run_without_kills(kafka, sproc, tmp_path):
    seed = int(os.environ.get("SPROC_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    n = 40_000
    for t, parts in (("vendors", 3), ("trips", 4), ("payments", 4)):
        kafka.create(t, partitions=parts)
    for run in ("ref", "crash"):
        kafka.create(f"{run}-st", partitions=3)
        kafka.create(f"{run}-ss", partitions=4)
    crash_inputs(kafka, n, seed)

    def args(run):
        # time enough per record for kills to land mid-run
        script = write_script(tmp_path, f"{run}.lua", CRASH_SCRIPT.format(
            work=lua_work(0.00005), vendors=kafka.topic("vendors"), payments=kafka.topic("payments"),
            trips=kafka.topic("trips"), out_st=kafka.topic(f"{run}-st"),
            out_ss=kafka.topic(f"{run}-ss")))
        group = kafka.topic(f"{run}-app")
        return group, [script, "--brokers", kafka.bootstrap, "--app", group] + FAST + \
            ["--set", "group.instance.id=" + group + "-1"]

    _, ref = args("ref")
    p = sproc(ref + ["--until-end"], name="ref")
    assert p.wait(300) == 0, p.stderr()

    group, crash = args("crash")
    probe = Probe(kafka, group, "trips", "crash-ss")
    rnd = random.Random(seed)
    marks = sorted(rnd.uniform(0.1, 0.75) for _ in range(5))
    logs, seen, open_txns = [], 0, 0
    for i, mark in enumerate(marks):
        p = sproc(crash, name=f"run{i}")
        goal = min(max(mark * n, seen + 0.03 * n), 0.85 * n)
        pending = kill_in_open_transaction(p, lambda: probe.committed() >= goal, [probe],
                                           what=f"{goal:.0f} trips committed before kill {i + 1}")
        seen = probe.committed()
        open_txns += pending[0] > 0
        print(f"kill {i + 1} at {seen} trips committed (mark {mark:.2f})")
        logs.append(p.stderr())
    probe.close()
    p = sproc(crash + ["--until-end"], name="last")
    assert p.wait(300) == 0, p.stderr()
    logs.append(p.stderr())
    log = "\n".join(logs)
    assert open_txns == 5, f"only {open_txns} of 5 kills hit an open transaction\n{log[-3000:]}"
    for side in ("st", "ss"):
        want, got = committed_outputs(kafka, f"ref-{side}"), committed_outputs(kafka, f"crash-{side}")
        assert sum(want.values()) > n // 2, (side, sum(want.values()))
        missing, extra = want - got, got - want
        assert not missing and not extra, \
            f"{side}: {sum(missing.values())} missing (e.g. {list(missing)[:5]}), " \
            f"{sum(extra.values())} unexpected (e.g. {list(extra)[:5]})\n{log[-4000:]}"


def test_held_records_are_bounded_and_survive_a_rebalance(kafka, sproc, tmp_path):
    """Joined partitions read from a backlog are paused while they hold
    5,000 records waiting for the other side (the consumer would fetch the
    whole backlog), and a second process joining mid-run takes half of
    them over: every trip paid within the window comes out, none twice."""
    import signal
    from conftest import wait_committed_to_end
    n = 40_000
    for t in ("trips", "payments", "out"):
        kafka.create(t, partitions=4)
    base = 1_700_000_000_000
    kafka.produce("trips", [(f"t{i}".encode(), {"id": i}, None, base + i * 10) for i in range(n)])
    # each payment 0-9 s after its trip, one in ten a minute late (outside)
    kafka.produce("payments", sorted(((f"t{i}".encode(), {"amount": i % 97}, None,
                                       base + i * 10 + (60_000 if i % 10 == 9 else i * 7 % 9_000))
                                      for i in range(n)), key=lambda r: r[3]))
    script = write_script(tmp_path, "held.lua", f"""
local sproc = require "sproc"
{lua_work(0.0002)}  -- slower than the fetch, so records pile up held
local payments = sproc.source{{ topic = "{kafka.topic('payments')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :join(payments, function(t, p) work(); return {{ id = t.id, amount = p.amount }} end,
        {{ within = "10s", grace = "1s" }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    group = kafka.topic("app")
    args = [script, "--brokers", kafka.bootstrap, "--app", group, "--log-level", "debug"] + FAST
    a = sproc(args, name="a")
    want = {i for i in range(n) if i % 10 != 9}
    wait_until(lambda: kafka.count("out") >= len(want) // 5, timeout=180, what="a fifth joined", proc=a)
    b = sproc(args, name="b")
    wait_until(lambda: "assigned" in b.stderr(), timeout=60, what="the second process assigned", proc=b)
    at_rebalance = kafka.count("out")
    assert at_rebalance < 0.9 * len(want), f"the rebalance came late: {at_rebalance} joined"
    wait_committed_to_end(kafka, group, "trips", proc=a)
    wait_committed_to_end(kafka, group, "payments", proc=a)
    for p in (a, b):
        p.signal(signal.SIGTERM)
        assert p.wait(60) == 0, p.stderr()[-3000:]
    assert "records" in a.stderr() and " paused " in a.stderr(), "the bound was not reached"
    got = Counter(json.loads(r["value"])["id"] for r in kafka.read("out"))
    assert set(got) == want, f"{len(want - set(got))} missing, {len(set(got) - want)} unexpected"
    assert max(got.values()) == 1, f"{sum(v > 1 for v in got.values())} trips joined twice"


def test_join_sides_expire_without_tombstones_and_restore_what_they_keep(kafka, sproc, tmp_path):
    """A join side's records leave its store when its retention (before +
    after + grace) has passed, as Kafka Streams' window stores do: with no
    tombstone in the changelog, which deletes by time a day after the
    retention instead. A restore then reads records the join can no
    longer see, and keeps only those it can (not every record of the
    last day)."""
    from confluent_kafka.admin import ConfigResource
    kafka.create("trips")
    kafka.create("payments")
    kafka.create("out")
    base, n = 1_700_000_000_000, 600
    kafka.produce("trips", [(f"t{i}".encode(), {"id": i}, None, base + i * 1000) for i in range(n)])
    kafka.produce("payments", [(f"t{i}".encode(), {"amount": i}, None, base + i * 1000 + 500)
                               for i in range(n)])
    # 5 ms a pair and 20 records a batch, so that records reach the
    # changelog (a commit) before their 100 s of record time have passed
    script = write_script(tmp_path, "pay.lua", f"""
local sproc = require "sproc"
{lua_work(0.005)}
local payments = sproc.source{{ topic = "{kafka.topic('payments')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :join(payments, function(t, p) work() return {{ id = t.id, amount = p.amount }} end,
        {{ within = "30s", grace = "40s", name = "pay" }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    app = kafka.topic("app")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app, "--until-end",
               "--set", "sproc.batch.size=20", "--set", f"sproc.state.dir={tmp_path}/a"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    assert values(kafka, "out") == canon((f"t{i}", {"id": i, "amount": i}) for i in range(n))
    retention_ms = 30_000 + 30_000 + 40_000
    for side in ("left", "right"):
        topic = f"{app}-pay.{side}-changelog"
        res = ConfigResource("topic", topic)
        cfg = kafka.admin.describe_configs([res])[res].result(timeout=30)
        assert cfg["cleanup.policy"].value == "compact,delete", topic
        assert int(cfg["retention.ms"].value) == retention_ms + 86_400_000, topic
        recs = kafka.read(f"app-pay.{side}-changelog")
        assert sum(1 for r in recs if r["value"] is None) == 0, f"tombstones in {topic}"
        assert sum(1 for r in recs if len(r["key"]) > 4) > 0.9 * n, topic
    # a second process (no checkpoint of the first's) restores both sides
    # from their changelogs and keeps what the join can
    # still see, swept every half retention as a running join is: up to
    # 150 s of records and the two entries of its own, not 600
    port = free_port()
    q = sproc([script, "--brokers", kafka.bootstrap, "--app", app, "--metrics", f"127.0.0.1:{port}",
               "--set", f"sproc.state.dir={tmp_path}/b"] + FAST)

    def ready():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5).status == 200
        except OSError:
            return False
    wait_until(ready, timeout=60, what="the restore", proc=q)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    keys = {m.group(1): int(m.group(2))
            for m in re.finditer(r'sproc_store_keys\{store="pay\.(left|right)"\} (\d+)', body)}
    print("restored keys", keys)
    assert set(keys) == {"left", "right"}, body
    assert all(k <= 2 + 151 for k in keys.values()), keys


def test_stream_stream_join_keeps_its_windows_across_a_reload(kafka, sproc, tmp_path):
    """Hot reload of a running stream-stream join: trips buffered by
    version 1 meet payments that arrive after the script was saved as
    version 2, and the results are version 2's. A reload that changed the
    join's window would be a new join; here only its function changes."""
    kafka.create("trips", partitions=2)
    kafka.create("payments", partitions=2)
    kafka.create("out", partitions=2)

    def version(v):
        return f"""local sproc = require "sproc"
local payments = sproc.source{{ topic = "{kafka.topic('payments')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :left_join(payments, function(t, p) return {{ id = t.id, amount = p and p.amount, v = {v} }} end,
             {{ within = "5s", grace = "1m", name = "pay" }})
  :to{{ topic = "{kafka.topic('out')}" }}
"""
    path = tmp_path / "live.lua"
    path.write_text(version(1))
    app = kafka.topic("app")
    base, n = 1_700_000_000_000, 40
    p = sproc([str(path), "--brokers", kafka.bootstrap, "--app", app, "--watch"] + FAST)
    kafka.produce("trips", [(f"t{i}".encode(), {"id": i}, None, base + i * 1000) for i in range(n)])
    wait_committed_to_end(kafka, app, "trips", proc=p)
    assert kafka.count("out") == 0, "a left join waits for its window to close"
    path.write_text(version(2))
    wait_until(lambda: "version 2 runs" in p.stderr(), timeout=30, what="the reload", proc=p)
    # payments within 2 s of their trips, and later ones (of no trip, in
    # both partitions) that close every window
    kafka.produce("payments", [(f"t{i}".encode(), {"amount": i}, None, base + i * 1000 + 2000)
                               for i in range(0, n, 2)] +
                  [(f"late{i}".encode(), {"amount": -1}, None, base + 3_600_000) for i in range(10)])
    wait_until(lambda: kafka.count("out") >= n, timeout=60, what="the joined trips", proc=p)
    want = canon([(f"t{i}", {"id": i, "amount": i, "v": 2} if i % 2 == 0 else {"id": i, "v": 2})
                  for i in range(n)])
    assert values(kafka, "out") == want
    assert p.alive(), p.stderr()


def test_a_join_changelog_made_compacted_only_is_named_with_the_fix(kafka, sproc, tmp_path):
    """A join side's changelog an earlier sproc made (compacted only) would
    keep every record now that expiry writes no tombstones: sproc says so
    at start, with the settings that fix it."""
    kafka.create("trips")
    kafka.create("payments")
    kafka.create("out")
    app = kafka.topic("app")
    kafka.create("app-pay.left-changelog", config={"cleanup.policy": "compact"})
    script = write_script(tmp_path, "pay.lua", f"""
local sproc = require "sproc"
local payments = sproc.source{{ topic = "{kafka.topic('payments')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :join(payments, function(t, p) return {{ id = t.id }} end, {{ within = "5s", grace = "0s", name = "pay" }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app, "--until-end"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    warned = [ln for ln in p.stderr().splitlines() if "has cleanup.policy=compact:" in ln]
    assert len(warned) == 1 and f"{app}-pay.left-changelog" in warned[0], p.stderr()
    assert "retention.ms=86410000" in warned[0], warned
