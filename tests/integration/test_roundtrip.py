"""Round trips through a real broker: bounded and continuous."""
import json
import signal
import time

from conftest import FAST, assert_committed_to_end, wait_until, write_script

PIPELINE = """
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}
  :filter(function(r) return r.value.n % 3 ~= 0 end)
  :map(function(r) return {{ n = r.value.n, sq = r.value.n * r.value.n, tag = r.value.tag }} end)
  :to{{ topic = "{dst}" }}
"""


def expected_for(records):
    out = {}
    for key, v in records:
        if v["n"] % 3 != 0:
            out[(key, v["n"])] = {"n": v["n"], "sq": v["n"] * v["n"], "tag": v["tag"]}
    return out


def test_bounded_roundtrip_100k(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=4)
    dst = kafka.create("out", partitions=4)
    records = [(f"key-{i % 1000}".encode(), {"n": i, "tag": "x" * (i % 7)}) for i in range(100_000)]
    kafka.produce("in", records)
    script = write_script(tmp_path, "rt.lua", PIPELINE.format(src=src, dst=dst))
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    assert p.wait(300) == 0, p.stderr()

    out = kafka.read("out")
    want = expected_for(records)
    got = {}
    for r in out:
        v = json.loads(r["value"])
        got[(r["key"], v["n"])] = v
    assert len(out) == len(want), "no duplicates and nothing missing"
    assert got == want
    # keys keep their partition: the same murmur2 choice as the Java producer
    in_parts = {}
    for r in kafka.read("in"):
        in_parts[r["key"]] = r["partition"]
    assert all(in_parts[r["key"]] == r["partition"] for r in out)
    # every input offset is committed
    assert_committed_to_end(kafka, kafka.topic("app"), "in")
    # the input outgrew the prefetch (10,000 records), which was woken
    # rather than left to librdkafka's one-second retry
    woken = int(p.stderr().split("prefetch woken ")[1].split()[0])
    assert woken > 0, p.stderr()


def test_continuous_roundtrip_and_clean_shutdown(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2)
    script = write_script(tmp_path, "rt.lua", PIPELINE.format(src=src, dst=dst))
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app")] + FAST)
    first = [(b"a", {"n": i, "tag": "t"}) for i in range(1000)]
    kafka.produce("in", first)
    wait_until(lambda: kafka.count("out") >= len(expected_for(first)), what="first outputs")
    second = [(f"b{i}".encode(), {"n": i, "tag": "u"}) for i in range(1000, 3000)]
    kafka.produce("in", second)
    want = expected_for(first + second)
    wait_until(lambda: kafka.count("out") >= len(want), what="second outputs")
    p.signal(signal.SIGTERM)
    assert p.wait(60) == 0, p.stderr()
    got = {(r["key"], json.loads(r["value"])["n"]) for r in kafka.read("out")}
    assert got == set(want)
    assert_committed_to_end(kafka, kafka.topic("app"), "in")
