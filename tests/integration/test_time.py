"""Timers and store TTLs against the real broker: stream-time timers follow
event time, wall-clock timers fire for every assigned partition, and an
expired entry leaves the store with a tombstone in its changelog."""
import json
import signal

import pytest

from conftest import FAST, wait_until, write_script


def test_timers_and_ttl(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=1)
    app = kafka.topic("app")
    script = write_script(tmp_path, "time.lua", f"""
local sproc = require "sproc"
local seen = sproc.store{{ name = "seen", ttl = 5000 }}
sproc.source{{ topic = "{src}", value = "json", time = function(r) return r.value.t end }}
  :each(function(r) assert(seen:put(r.key, r.value.t)) end)
sproc.timer{{ every = 1000 }}
  :map(function(r)
    local keys = {{}}
    for k in seen:all() do keys[#keys + 1] = k end
    table.sort(keys)
    return {{ kind = "stream", p = r.partition, at = r.ts, keys = keys }}
  end)
  :to{{ topic = "{dst}" }}
sproc.timer{{ every = 200, time = "wall" }}
  :map(function(r) return {{ kind = "wall", p = r.partition }} end)
  :to{{ topic = "{dst}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app] + FAST)

    def reports():
        return [json.loads(r["value"]) for r in kafka.read("out")] if kafka.count("out") else []

    # wall-clock timers: every assigned partition, with no input at all
    wait_until(lambda: {r["p"] for r in reports() if r["kind"] == "wall"} == {0, 1},
               timeout=60, what="wall-clock timers on both partitions")
    # a reaches the changelog (at a commit) before it expires...
    kafka.produce("in", [(b"a", {"t": 0})], partition=0)
    wait_until(lambda: any(r["key"] == b"a" and r["value"] is not None
                           for r in kafka.read("app-seen-changelog")),
               timeout=30, what="the key in the changelog")
    kafka.produce("in", [(b"b", {"t": 3000}), (b"c", {"t": 7000})], partition=0)

    def last_stream():
        rs = [r for r in reports() if r["kind"] == "stream" and r["p"] == 0]
        return rs[-1] if rs else None
    wait_until(lambda: (last_stream() or {}).get("at") == 7000, timeout=60,
               what="the stream timer at stream time 7000")
    # a was written at 0 with a TTL of 5000: gone at 7000
    assert last_stream()["keys"] == ["b", "c"], last_stream()
    # ...so its expiry writes a tombstone there (the changelog
    # <app>-seen-changelog, app being "<prefix>-app")
    wait_until(lambda: any(r["key"] == b"a" and r["value"] is None
                           for r in kafka.read("app-seen-changelog")),
               timeout=30, what="a tombstone for the expired key in the changelog")
    assert p.alive(), p.stderr()
    p.signal(signal.SIGTERM)
    assert p.wait(60) == 0, p.stderr()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_stream_time_goes_on_after_a_restart(kafka, sproc, tmp_path, guarantee):
    """Stream time goes with the committed offsets (as Kafka Streams
    commits partition time): a restarted process goes on from it, so a
    store's TTL counts from where the partition was, not from the first
    record the new process reads."""
    src = kafka.create("in", partitions=1)
    dst = kafka.create("out", partitions=1)
    app = kafka.topic("app")
    script = write_script(tmp_path, "ttl.lua", f"""
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "{guarantee}" }}
local seen = sproc.store{{ name = "seen", ttl = 1000 }}
sproc.source{{ topic = "{src}", value = "json", time = function(r) return r.value.t end }}
  :map(function(r) return {{ t = r.value.t, n = assert(seen:incr(r.key, 1)) }} end)
  :to{{ topic = "{dst}" }}
""")
    args = [script, "--brokers", kafka.bootstrap, "--app", app, "--until-end"] + FAST

    def run(records):
        kafka.produce("in", records, partition=0)
        p = sproc(args)
        assert p.wait(timeout=120) == 0, p.stderr()

    run([(b"x", {"t": 5000})])   # stream time 5000, committed with the offset
    run([(b"k", {"t": 4000})])   # k's entry is written at stream time 5000
    run([(b"k", {"t": 5900})])   # 5900 - 5000 < ttl: k is still there
    got = [json.loads(r["value"]) for r in kafka.read("out")]
    assert [(r["t"], r["n"]) for r in got] == [(5000, 1), (4000, 1), (5900, 2)], got
