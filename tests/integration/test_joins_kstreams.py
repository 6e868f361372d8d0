"""sproc's joins side by side with Kafka Streams itself (3.9,
tests/bench/kstreams: sproc.bench.Joins) on the same seeded, randomized
input topics: a stream joined with a table (inner, left), with a versioned
table (as-of lookups: inner, left) and with a global
table, two streams within a window (inner, left, outer) and two tables
(inner, left, outer). The inputs have records out of order within the
grace, records later than the grace, tombstones on the tables, keys on one
side only and several partitions; every record's timestamp differs from the
others', so the order of the two systems' timestamp synchronization is one.
The outputs are compared as multisets of (key, value, timestamp) per join:
the order in which results of different partitions (and, for the outer
joins' non-joined records, of one stream-time step) come out may differ."""
import collections
import importlib.util
import json
import os
import random
import shutil
import subprocess

import pytest

from conftest import FAST, ROOT, wait_until, write_script

WITHIN, GRACE, HISTORY = 5000, 2000, 4000
JOINS = ["st-inner", "st-left", "sv-inner", "sv-left", "gt-inner", "gt-left", "ss-inner", "ss-left", "ss-outer",
         "tt-inner", "tt-left", "tt-outer"]


def kstreams_classpath():
    path = os.path.join(ROOT, "tests", "bench", "compare.py")
    spec = importlib.util.spec_from_file_location("compare", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    return compare.kstreams_classpath()


def inputs(seed):
    """Per topic: (partition, key, value, timestamp) in the order written."""
    rnd = random.Random(seed)
    base = 1_700_000_000_000
    used = set()

    def ts(t):
        t = max(0, t)
        while t in used:
            t += 1
        used.add(t)
        return base + t

    def stream(n, keys, spread, late):
        recs = []
        for i in range(n):
            t = i * spread + rnd.randrange(-3 * GRACE // 4, 1)        # out of order within grace
            if rnd.random() < late:
                t -= WITHIN + GRACE + rnd.randrange(1000, 5000)      # later than the grace
            recs.append((rnd.choice(keys), t))
        return recs

    keys = [f"k{i}" for i in range(12)]
    topics = collections.defaultdict(list)
    for k, t in stream(300, keys + ["only-s"], 200, 0.0):
        topics["S"].append((k, {"i": len(topics["S"]), "g": f"g{rnd.randrange(10)}"}, ts(t)))
    for i, (k, t) in enumerate(stream(80, keys[:9] + ["only-t"], 750, 0.0)):
        v = None if rnd.random() < 0.15 else {"name": f"t{i}"}
        topics["T"].append((k, v, ts(t)))
    # a versioned table: rows out of order, some further back than the history
    for i, (k, t) in enumerate(stream(80, keys[:9] + ["only-v"], 750, 0.0)):
        if rnd.random() < 0.3:
            t -= rnd.randrange(1000, 2 * HISTORY)
        v = None if rnd.random() < 0.15 else {"ver": i}
        topics["V"].append((k, v, ts(t)))
    for i in range(8):
        topics["G"].append((f"g{i}", {"zone": f"zone{i}"}, ts(-1000 - i)))
    for side in "LR":
        for k, t in stream(250, keys[:8] + [f"only-{side}"], 240, 0.05):
            topics[side].append((k, {side: len(topics[side])}, ts(t)))
    for side in "AB":
        for i, (k, t) in enumerate(stream(60, keys[:6] + [f"only-{side}"], 1000, 0.0)):
            v = None if rnd.random() < 0.2 else {side: i}
            topics[side].append((k, v, ts(t)))
    # stream time past every window: a last record on each partition of L and R
    for side in "LR":
        for p in range(3):
            topics[side].append((f"end{p}", {side: "end"}, ts(10_000_000 + p), p))
    return topics


SCRIPT = """
local sproc = require "sproc"
local function pair(l, r) return {{ l = l, r = r }} end
local S = sproc.source{{ topic = "{i}-S", value = "json" }}
local T = sproc.table{{ topic = "{i}-T", value = "json" }}
S:join(T, pair):to{{ topic = "{o}-st-inner" }}
S:left_join(T, pair):to{{ topic = "{o}-st-left" }}
local V = sproc.table{{ topic = "{i}-V", value = "json", history = {h} }}
S:join(V, pair):to{{ topic = "{o}-sv-inner" }}
S:left_join(V, pair):to{{ topic = "{o}-sv-left" }}
local G = sproc.global_table{{ topic = "{i}-G", value = "json" }}
local function g(r) return r.value.g end
S:join(G, pair, {{ key = g }}):to{{ topic = "{o}-gt-inner" }}
S:left_join(G, pair, {{ key = g }}):to{{ topic = "{o}-gt-left" }}
local L = sproc.source{{ topic = "{i}-L", value = "json" }}
local R = sproc.source{{ topic = "{i}-R", value = "json" }}
local w = {{ within = {w}, grace = {g} }}
L:join(R, pair, w):to{{ topic = "{o}-ss-inner" }}
L:left_join(R, pair, w):to{{ topic = "{o}-ss-left" }}
L:outer_join(R, pair, w):to{{ topic = "{o}-ss-outer" }}
local A = sproc.table{{ topic = "{i}-A", value = "json" }}
local B = sproc.table{{ topic = "{i}-B", value = "json" }}
A:join(B, pair):to_stream():to{{ topic = "{o}-tt-inner" }}
A:left_join(B, pair):to_stream():to{{ topic = "{o}-tt-left" }}
A:outer_join(B, pair):to_stream():to{{ topic = "{o}-tt-outer" }}
"""


def results(kafka, prefix):
    """Per join: a multiset of (key, value without null sides, timestamp)."""
    out = {}
    for j in JOINS:
        c = collections.Counter()
        for r in kafka.read(f"{prefix}-{j}"):
            v = None if r["value"] is None else json.loads(r["value"])
            if isinstance(v, dict):
                v = {k: x for k, x in v.items() if x is not None}
            c[(r["key"].decode() if r["key"] else None,
               json.dumps(v, sort_keys=True), r["timestamp"])] += 1
        out[j] = c
    return out


@pytest.mark.parametrize("seed", [int(os.environ.get("SPROC_JOIN_SEED", 7))])
def test_joins_equal_kafka_streams(kafka, sproc, tmp_path, seed):
    if not shutil.which("mvn") or not shutil.which("java"):
        pytest.skip("Maven and Java build the Kafka Streams side")
    cp = kstreams_classpath()
    parts = {"S": 3, "T": 3, "V": 3, "G": 2, "L": 3, "R": 3, "A": 3, "B": 3}
    for t, n in parts.items():
        kafka.create(f"in-{t}", partitions=n)
    for who in ("ks", "sp"):
        for j in JOINS:
            kafka.create(f"{who}-{j}", partitions=2)
    data = inputs(seed)
    for t, recs in data.items():
        kafka.produce(f"in-{t}", [(r[0].encode(), r[1], None, r[2]) for r in recs if len(r) == 3])
        for r in recs:
            if len(r) == 4:   # on a partition of its own
                kafka.produce(f"in-{t}", [(r[0].encode(), r[1], None, r[2])], partition=r[3])
    ks_app, sp_app = kafka.topic("ks-app"), kafka.topic("sp-app")
    ks = subprocess.Popen(["java", "-Xmx512m", "-cp", cp, "sproc.bench.Joins", kafka.bootstrap, ks_app,
                           kafka.topic("in"), kafka.topic("ks"), str(WITHIN), str(GRACE),
                           str(tmp_path / "ks-state"), str(HISTORY)],
                          stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ks.log", "w"))
    script = write_script(tmp_path, "joins.lua", SCRIPT.format(i=kafka.topic("in"), o=kafka.topic("sp"),
                                                               w=WITHIN, g=GRACE, h=HISTORY))
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", sp_app] + FAST)
    try:
        def done(group):
            for t in "STVLRAB":
                ends = kafka.end_offsets(f"in-{t}")
                got = kafka.committed(group, f"in-{t}")
                if any(got.get(q, -1) < e for q, e in ends.items() if e > 0):
                    return False
            return True
        wait_until(lambda: done(sp_app), timeout=300, what="sproc read everything")
        wait_until(lambda: done(ks_app), timeout=300, what="Kafka Streams read everything")
        assert p.alive(), p.stderr()
        ks_out, sp_out = results(kafka, "ks"), results(kafka, "sp")
    finally:
        ks.terminate()
        ks.wait(60)
    for j in JOINS:
        missing = ks_out[j] - sp_out[j]
        extra = sp_out[j] - ks_out[j]
        assert not missing and not extra, (
            f"{j}: {sum(ks_out[j].values())} from Kafka Streams, {sum(sp_out[j].values())} from sproc; "
            f"only Kafka Streams: {sorted(missing.items())[:5]}; only sproc: {sorted(extra.items())[:5]}")
    counts = {j: sum(ks_out[j].values()) for j in JOINS}
    print(f"seed {seed}: equal outputs per join: {counts}")
    assert all(n > 0 for n in counts.values()), counts
