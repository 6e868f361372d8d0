"""--start: where a group without committed offsets begins."""
import datetime as dt
import json
import signal

from conftest import FAST, wait_until, write_script


def script(tmp_path, src, dst):
    return write_script(tmp_path, "s.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}:to{{ topic = "{dst}" }}
""")


def test_start_latest_skips_what_was_there(kafka, sproc, tmp_path):
    src = kafka.create("in")
    dst = kafka.create("out")
    kafka.produce("in", [(None, {"n": i}) for i in range(100)])
    p = sproc([script(tmp_path, src, dst), "--brokers", kafka.bootstrap, "--app", kafka.topic("g"),
               "--start", "latest"] + FAST)
    wait_until(lambda: "assigned" in p.stderr(), timeout=60, what="assignment")
    # "latest" is resolved when fetching starts: keep producing until new
    # records come through; none of the old ones may
    n = 100

    def more():
        nonlocal n
        kafka.produce("in", [(None, {"n": i}) for i in range(n, n + 10)])
        n += 10
        return kafka.count("out") > 0
    wait_until(more, timeout=60, interval=0.2, what="new records")
    p.signal(signal.SIGTERM)
    assert p.wait(60) == 0
    got = sorted(json.loads(r["value"])["n"] for r in kafka.read("out"))
    assert got and got[0] >= 100
    assert got == list(range(got[0], got[-1] + 1)), "from where it started, nothing is missed"


def test_start_at_a_time(kafka, sproc, tmp_path):
    src = kafka.create("in")
    dst = kafka.create("out")
    from confluent_kafka import Producer
    prod = Producer({"bootstrap.servers": kafka.bootstrap})
    base = 1_700_000_000_000
    for i in range(10):  # one record a minute
        prod.produce(src, value=json.dumps({"n": i}), timestamp=base + i * 60_000)
    prod.flush(30)
    at = dt.datetime.fromtimestamp((base + 5 * 60_000) / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    p = sproc([script(tmp_path, src, dst), "--brokers", kafka.bootstrap, "--app", kafka.topic("g"),
               "--start", at, "--until-end"] + FAST)
    assert p.wait(60) == 0, p.stderr()
    assert [json.loads(r["value"])["n"] for r in kafka.read("out")] == [5, 6, 7, 8, 9]


def test_bad_start_is_a_usage_error(kafka, sproc, tmp_path):
    p = sproc([script(tmp_path, "x", "y"), "--brokers", kafka.bootstrap, "--start", "yesterday"])
    assert p.wait(30) == 2
    assert "--start takes earliest, latest or an ISO-8601 time" in p.stderr()
