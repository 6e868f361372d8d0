"""Bad input against the real broker: a clear error, and nothing lost. Every
input record is accounted for as output, filtered, skipped or dead-lettered."""
import json
import os
import re
import subprocess

from conftest import FAST, SPROC, assert_committed_to_end, write_script

SCRIPT = """
local sproc = require "sproc"
sproc.app{{ errors = "{policy}", dlq = "{dlq}" }}
sproc.source{{ topic = "{src}", value = "json" }}
  :filter(function(r) return r.value.n ~= 7 end)
  :map(function(r)
    if r.value.n == 13 then error("thirteen is unlucky") end
    if r.value.big then return string.rep("x", 2 * 1024 * 1024) end
    return {{ n = r.value.n }}
  end)
  :to{{ topic = "{dst}" }}
"""


def inputs():
    recs = []
    for i in range(100):
        if i == 20:
            recs.append((b"k20", b'{"n": 20,'))            # malformed JSON
        elif i == 40:
            recs.append((b"k40", {"n": 40, "big": True}))  # output too large for Kafka
        else:
            recs.append((f"k{i}".encode(), {"n": i}))
    return recs


def run(kafka, sproc, tmp_path, policy):
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2)
    dlq = kafka.create("dead")
    kafka.produce("in", inputs())
    script = write_script(tmp_path, "e.lua", SCRIPT.format(policy=policy, src=src, dst=dst, dlq=dlq))
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    return p, p.wait(120)


def test_dlq_accounts_for_every_record(kafka, sproc, tmp_path):
    p, rc = run(kafka, sproc, tmp_path, "dlq")
    assert rc == 0, p.stderr()
    outs = {json.loads(r["value"])["n"] for r in kafka.read("out")}
    dead = kafka.read("dead")
    dead_keys = sorted(r["key"] for r in dead)
    assert dead_keys == [b"k13", b"k20", b"k40"]
    by_key = {r["key"]: r for r in dead}
    assert by_key[b"k20"]["value"] == b'{"n": 20,'            # the record as it came
    assert b"malformed JSON" in by_key[b"k20"]["headers"]["sproc.error"]
    assert b"thirteen is unlucky" in by_key[b"k13"]["headers"]["sproc.error"]
    assert b"e.lua:" in by_key[b"k13"]["headers"]["sproc.error"]  # the script's file:line
    assert b"too large" in by_key[b"k40"]["headers"]["sproc.error"].lower()
    assert by_key[b"k13"]["headers"]["sproc.source.topic"] == kafka.topic("in").encode()
    filtered = {7}
    accounted = outs | filtered | {13, 20, 40}
    assert accounted == set(range(100)) and len(outs) == 96
    assert_committed_to_end(kafka, kafka.topic("app"), "in")


def test_skip_logs_and_goes_on(kafka, sproc, tmp_path):
    p, rc = run(kafka, sproc, tmp_path, "skip")
    assert rc == 0, p.stderr()
    outs = {json.loads(r["value"])["n"] for r in kafka.read("out")}
    assert outs == set(range(100)) - {7, 13, 20, 40}
    assert "skipped a record" in p.stderr()
    assert kafka.count("dead") == 0


def test_fail_stops_with_file_line_and_record_and_commits_nothing_past_it(kafka, sproc, tmp_path):
    p, rc = run(kafka, sproc, tmp_path, "fail")
    assert rc == 1
    err = p.stderr()
    # the first bad record of its partition is named with its coordinates
    assert re.search(r"(malformed JSON value|e\.lua:\d+: thirteen is unlucky|too large)", err), err
    assert re.search(r"record: topic \S+, partition \d+, offset \d+", err) or "output to topic" in err, err
    committed = kafka.committed(kafka.topic("app"), "in")
    # nothing at or after a bad record is committed on its partition
    bad = {}
    for r in kafka.read("in"):
        v = r["value"]
        if v == b'{"n": 20,' or json.loads(v).get("n") in (13,) or json.loads(v).get("big"):
            bad.setdefault(r["partition"], r["offset"])
    for part, off in bad.items():
        assert committed[part] <= off, (part, committed[part], off)
    # a rerun with skip finishes the job: nothing was lost
    p2, rc2 = run_again(kafka, sproc, tmp_path)
    assert rc2 == 0, p2.stderr()
    outs = {json.loads(r["value"])["n"] for r in kafka.read("out")}
    assert outs == set(range(100)) - {7, 13, 20, 40}


def run_again(kafka, sproc, tmp_path):
    script = write_script(tmp_path, "e2.lua", SCRIPT.format(
        policy="skip", src=kafka.topic("in"), dst=kafka.topic("out"), dlq=kafka.topic("dead")))
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    return p, p.wait(120)


def test_script_that_does_not_load_exits_2(tmp_path):
    bad = write_script(tmp_path, "bad.lua", 'local sproc = require "sproc"\nsproc.source{ topic = "x" }:filter(\n')
    r = subprocess.run([SPROC, bad, "--brokers", "127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "bad.lua:3:" in r.stderr
    boom = write_script(tmp_path, "boom.lua", 'local sproc = require "sproc"\n\nerror("no config")\n')
    r = subprocess.run([SPROC, boom, "--brokers", "127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "boom.lua:3: no config" in r.stderr
    misuse = write_script(tmp_path, "misuse.lua", 'local sproc = require "sproc"\nsproc.source{ topic = "x" }:map(42)\n')
    r = subprocess.run([SPROC, misuse, "--brokers", "127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "misuse.lua:2: map() expects a function, got number" in r.stderr


def test_usage_errors_exit_2():
    r = subprocess.run([SPROC, "--no-such-option", "x.lua"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([SPROC], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no script given" in r.stderr
    r = subprocess.run([SPROC, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and re.fullmatch(r"sproc \d+\.\d+\.\d+\n", r.stdout)
    r = subprocess.run([SPROC, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--until-end" in r.stdout


def test_missing_output_topic_stops_the_start(kafka, sproc, tmp_path):
    """An output or dead-letter topic that does not exist (auto-creation is
    off): sproc exits 1 before reading anything, naming each missing topic
    and how to make it, whatever the error policy; nothing is consumed or
    committed."""
    src = kafka.create("in", partitions=1)
    ok = kafka.create("ok")
    kafka.produce("in", [(f"k{i}".encode(), {"n": i}) for i in range(20)])
    for policy in ("dlq", "fail"):
        script = write_script(tmp_path, f"gone-{policy}.lua", f"""
local sproc = require "sproc"
sproc.app{{ errors = "{policy}", dlq = "{kafka.topic('no-such-dead')}" }}
local odd, even = sproc.source{{ topic = "{src}", value = "json" }}
  :branch(function(r) return r.value.n % 2 == 1 end, function() return true end)
odd:to{{ topic = "{kafka.topic('no-such-topic')}" }}
even:to{{ topic = "{ok}" }}
""")
        group = kafka.topic("a-" + policy)
        p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--until-end"] + FAST)
        assert p.wait(60) == 1, p.stderr()
        err = p.stderr()
        assert f"output topic {kafka.topic('no-such-topic')} does not exist" in err, err
        assert "--create --topic " + kafka.topic("no-such-topic") in err, err
        dead_missing = f"output topic {kafka.topic('no-such-dead')} does not exist" in err
        assert dead_missing == (policy == "dlq"), err
        assert kafka.count("ok") == 0
        assert kafka.committed(group, "in")[0] < 0


# issue 14 #10: an output Kafka refuses (larger than the topic allows): the
# dead letter held the re-encoded output with offset -1, the counters added
# up to one more than the input, and under fail it was labelled "error in
# script". The dead letter holds the input as it came, with its coordinates,
# once however many of its outputs failed; in = out + filtered + skipped +
# dead-lettered with outputs counted once per input.
REFUSED = """
local sproc = require "sproc"
sproc.app{{ errors = "{policy}", dlq = "{dlq}" }}
local s = sproc.source{{ topic = "{src}", value = "json" }}
  :filter(function(r) return r.value.n ~= 7 end)
s:map(function(r) return r.value.n % 10 == 3 and string.rep("y", 5000) or r.value end)
  :to{{ topic = "{small}" }}
s:flat_map(function(r, emit) emit(r.value.n); emit(-r.value.n) end):to{{ topic = "{wide}" }}
"""


def refused_run(kafka, sproc, tmp_path, policy, name, extra=(), dead="dead"):
    script = write_script(tmp_path, f"{name}.lua", REFUSED.format(
        policy=policy, dlq=kafka.topic(dead), src=kafka.topic("in"), small=kafka.topic("small"),
        wide=kafka.topic("wide")))
    # Kafka's limit is per record batch: batches of small outputs stay
    # under it (librdkafka does not split a refused batch)
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic(name), "--until-end",
               "--set", "message.timeout.ms=10000", "--set", "producer.batch.size=1500"] + FAST +
              list(extra), name=name)
    return p, p.wait(120)


def done_counts(log):
    m = re.search(r"done: (\d+) records in, (\d+) out, (\d+) filtered, (\d+) skipped, "
                  r"(\d+) dead-lettered", log)
    return [int(x) for x in m.groups()]


def test_refused_outputs_dead_letter_their_inputs(kafka, sproc, tmp_path):
    kafka.create("in", partitions=2)
    kafka.create("small", partitions=2, config={"max.message.bytes": "3000"})
    kafka.create("wide", partitions=2)
    kafka.create("dead", config={"max.message.bytes": "1700"})   # the failing runs'
    recs = []
    for i in range(100):
        v = {"n": i, "pad": "p" * (1800 if i == 53 else 0)}
        recs.append((f"k{i}".encode(), v, [("trace", f"t{i}".encode())]))
    kafka.produce("in", recs)
    sent = {r["key"]: r for r in kafka.read("in")}
    # refused by the broker (after the produce), then by the producer itself
    for name, extra in (("async", ()), ("sync", ("--set", "producer.message.max.bytes=4000"))):
        # a dead-letter topic of its own per run (deleting and making one
        # again by the same name crashes the test's Kafka client library at
        # its exit)
        kafka.create(f"dead-{name}", config={"max.message.bytes": "1700"})
        p, rc = refused_run(kafka, sproc, tmp_path, "dlq", name, extra, dead=f"dead-{name}")
        assert rc == 0, p.stderr()
        dead = [r for r in kafka.read(f"dead-{name}")
                if r["headers"].get("sproc.error", b"").find(b"small") >= 0 and
                r["headers"].get("trace") is not None]
        keys = sorted(int(r["key"][1:]) for r in dead)
        assert keys == [i for i in range(100) if i % 10 == 3], (name, keys)
        for r in dead:
            src = sent[r["key"]]
            h = r["headers"]
            assert h["trace"] == src["headers"]["trace"]
            assert h["sproc.source.topic"] == kafka.topic("in").encode()
            assert int(h["sproc.source.partition"]) == src["partition"]
            assert int(h["sproc.source.offset"]) == src["offset"]
            assert r["timestamp"] == src["timestamp"]
            if r["key"] == b"k53":   # too large for the dead-letter topic as well
                assert r["value"] is None
            else:
                assert r["value"] == src["value"]
        n_in, out, filtered, skipped, dead_lettered = done_counts(p.stderr())
        assert (n_in, filtered, skipped, dead_lettered) == (100, 1, 0, 10), p.stderr()
        assert n_in == out + filtered + skipped + dead_lettered
    # under fail: exit 1, named for what it is, with the record's coordinates
    p, rc = refused_run(kafka, sproc, tmp_path, "fail", "failing")
    assert rc == 1
    err = p.stderr()
    assert "output to topic " + kafka.topic("small") in err and "error in script" not in err, err
    assert re.search(r"record from: topic \S+, partition \d, offset \d+", err), err
    p, rc = refused_run(kafka, sproc, tmp_path, "fail", "failing2",
                        ("--set", "producer.message.max.bytes=4000"))
    assert rc == 1
    assert "output refused: output to topic " + kafka.topic("small") in p.stderr(), p.stderr()


# issue 18 #4: JSON logs carry fields, not only a message
def test_json_logs_carry_the_records_coordinates_and_the_app(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2)
    kafka.produce("in", inputs())
    script = write_script(tmp_path, "e.lua", SCRIPT.format(policy="skip", src=src, dst=dst,
                                                           dlq=kafka.topic("dead")))
    group = kafka.topic("app")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--until-end",
               "--log-format", "json"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    lines = [json.loads(x) for x in p.stderr().splitlines() if x.strip()]
    assert all({"time", "level", "msg"} <= set(x) for x in lines)
    assert all(x.get("app") == group and x.get("script_version") == 1
               for x in lines if "app" in x), lines
    skips = [x for x in lines if x["msg"].startswith("skipped a record")]
    assert skips, lines
    by_offset = {(r["partition"], r["offset"]): r for r in kafka.read("in")}
    for x in skips:
        assert x["topic"] == src and isinstance(x["partition"], int) and isinstance(x["offset"], int), x
        assert (x["partition"], x["offset"]) in by_offset, x
        assert f"partition {x['partition']}, offset {x['offset']}" in x["msg"], x
    # the dev cluster's banner goes through the logger as well
    env = {k: v for k, v in os.environ.items() if k != "SPROC_BROKERS"}
    dev = subprocess.run([SPROC, script, "--log-format", "json", "--until-end"],
                         capture_output=True, text=True, timeout=60, env=env)
    first = json.loads(dev.stderr.splitlines()[0])
    assert "embedded in-process dev cluster" in first["msg"], dev.stderr
