"""Start-up faults: a broker that is not there (yet), a source topic that
does not exist."""
import json
import os
import subprocess
import time

import signal

from conftest import FAST, ROOT, SPROC, Kafka, free_port, wait_until, write_script


def test_connect_timeout_exits_1(tmp_path):
    script = write_script(tmp_path, "t.lua", 'local sproc = require "sproc"\n'
                          'sproc.source{ topic = "x" }:print()\n')
    t0 = time.time()
    r = subprocess.run([SPROC, script, "--brokers", f"127.0.0.1:{free_port()}", "--connect-timeout", "4"],
                       capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    assert r.returncode == 1
    assert "no Kafka broker answered" in r.stderr and "within 4 s" in r.stderr
    assert 3.5 <= took < 20, took


def test_missing_source_topic_exits_1_naming_it(kafka, tmp_path):
    script = write_script(tmp_path, "t.lua", 'local sproc = require "sproc"\n'
                          f'sproc.source{{ topic = "{kafka.topic("nope")}" }}:print()\n')
    r = subprocess.run([SPROC, script, "--brokers", kafka.bootstrap], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert f"source topic {kafka.topic('nope')} does not exist" in r.stderr


# issue 14 #9: the dev cluster made the missing topic and the run read 0 records
def test_missing_source_topic_on_the_dev_cluster_exits_1_too(tmp_path):
    script = write_script(tmp_path, "t.lua", 'local sproc = require "sproc"\n'
                          'sproc.source{ topic = "nope" }:print()\n'
                          'sproc.source{ topic = "fed" }:print()\n'
                          'sproc.source{ file = "in.txt" }:to{ topic = "fed" }\n')
    (tmp_path / "in.txt").write_text("a\n")
    r = subprocess.run([SPROC, script, "--until-end"], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "SPROC_BROKERS"})
    assert r.returncode == 1, r.stderr
    assert "source topic nope does not exist" in r.stderr
    assert "source topic fed" not in r.stderr   # the script writes it: the dev cluster has it


def test_broker_away_at_start_loses_nothing(sproc, tmp_path):
    """The broker (with its topics and data) is down when sproc starts: sproc
    waits, says so every few seconds, and processes everything once the
    broker is back."""
    port = free_port()
    kafka_script = os.path.join(ROOT, "scripts", "kafka")
    env = dict(os.environ, SPROC_KAFKA_DIR=str(tmp_path / "away-kafka"))
    out = subprocess.run([kafka_script, "start", "--port", str(port)],
                         capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr
    bootstrap = out.stdout.strip().splitlines()[-1]
    assert bootstrap == f"127.0.0.1:{port}"
    try:
        k = Kafka(bootstrap, "away")
        k.create("in", partitions=2)
        k.create("out", partitions=2)
        k.produce("in", [(None, {"i": i}) for i in range(5000)])
        pid = int(subprocess.run([kafka_script, "pid", "1"], capture_output=True, text=True,
                                 env=env, check=True).stdout)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, what="broker gone")

        script = write_script(tmp_path, "away.lua", 'local sproc = require "sproc"\n'
                              'sproc.source{ topic = "away-in", value = "json" }\n'
                              '  :map(function(r) return { i = r.value.i } end):to{ topic = "away-out" }\n')
        p = sproc([script, "--brokers", bootstrap, "--app", "away"] + FAST)
        wait_until(lambda: p.stderr().count("waiting for Kafka") >= 2, timeout=30,
                   what="two 'waiting for Kafka' lines")
        assert p.alive()
        r = subprocess.run([kafka_script, "restart-node", "1"], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: not p.alive() or k.count("out") >= 5000, timeout=120, what="outputs")
        assert p.alive(), p.stderr()
        got = {json.loads(r["value"])["i"] for r in k.read("out")}
        assert got == set(range(5000))
        assert "error" not in p.stderr(), p.stderr()
    finally:
        subprocess.run([kafka_script, "stop"], env=env, timeout=120)
