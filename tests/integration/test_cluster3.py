"""A 3-broker cluster (replication factor 3, min.insync.replicas 2, acks=all):
one broker is killed mid-run and restarted; nothing is lost."""
import json
import os
import signal
import subprocess

import pytest

from conftest import (FAST, ROOT, Kafka, assert_same_payloads, wait_committed_to_end,
                      wait_until, write_script)

N = 300_000
KAFKA = os.path.join(ROOT, "scripts", "kafka")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = dict(os.environ, SPROC_KAFKA_DIR=str(tmp_path_factory.mktemp("kafka3")))
    out = subprocess.run([KAFKA, "start", "--brokers", "3", "--port", "29092"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    yield out.stdout.strip().splitlines()[-1], env
    subprocess.run([KAFKA, "stop"], env=env, timeout=120)


def test_broker_killed_and_restarted_loses_nothing(cluster, sproc, tmp_path):
    bootstrap, env = cluster
    k = Kafka(bootstrap, "c3")
    cfg = {"min.insync.replicas": "2"}
    src = k.create("in", partitions=6, replication=3, config=cfg)
    dst = k.create("out", partitions=6, replication=3, config=cfg)
    k.produce("in", [(f"k{i % 1999}".encode(), {"i": i}) for i in range(N)])
    script = write_script(tmp_path, "c3.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r)
    local t = os.clock() + 20e-6
    while os.clock() < t do end
    return {{ i = r.value.i }}
  end)
  :to{{ topic = "{dst}" }}
""")
    p = sproc([script, "--brokers", bootstrap, "--app", "c3-app", "--set", "acks=all"] + FAST)
    wait_until(lambda: k.count("out") >= 0.2 * N, timeout=180, what="20% of the output")
    assert k.count("out") <= 0.8 * N, "too fast to catch mid-run"
    pid = int(subprocess.run([KAFKA, "pid", "2"], capture_output=True, text=True, env=env,
                             check=True).stdout)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, what="broker 2 gone")
    # progress goes on with two of three replicas in sync
    before = k.count("out")
    wait_until(lambda: k.count("out") > before + 10_000, timeout=120, what="progress without broker 2")
    r = subprocess.run([KAFKA, "restart-node", "2"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    # duplicates after the fault make counting useless: wait for the commits
    wait_committed_to_end(k, "c3-app", "in", proc=p)
    got = [json.loads(r["value"])["i"] for r in k.read("out")]
    assert_same_payloads(got, range(N), p.stderr())
    assert p.alive(), p.stderr()
