"""Topics sproc makes when asked (issue 18 #1): under --create-topics the
missing output and dead-letter topics, with the source's partitions; and
the topics a script declares in sproc.app{ topics = ... }, as declared;
repartition topics that lose what the group committed."""
import json
import subprocess

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource

from conftest import FAST, SPROC, admin_client, wait_committed_to_end, wait_until, write_script

SCRIPT = """
local sproc = require "sproc"
sproc.app{{ errors = "dlq", dlq = "{dlq}"{topics} }}
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r)
    if r.value.n == 7 then error("seven") end
    return {{ n = r.value.n }}
  end)
  :to{{ topic = "{dst}" }}
"""


def partitions(kafka, name):
    md = admin_client(kafka.bootstrap).list_topics(kafka.topic(name), timeout=10)
    t = md.topics[kafka.topic(name)]
    return None if t.error else len(t.partitions)


def run(kafka, sproc, tmp_path, extra, topics=""):
    src = kafka.create("in", partitions=3)
    kafka.produce("in", [(f"k{n}".encode(), {"n": n}) for n in range(20)])
    script = write_script(tmp_path, "t.lua", SCRIPT.format(
        src=src, dst=kafka.topic("out"), dlq=kafka.topic("dead"), topics=topics))
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"),
               "--until-end"] + extra + FAST)
    return p, p.wait(120)


def test_create_topics_makes_missing_outputs_with_the_sources_partitions(kafka, sproc, tmp_path):
    p, rc = run(kafka, sproc, tmp_path, ["--create-topics"])
    assert rc == 0, p.stderr()
    assert partitions(kafka, "out") == 3 and partitions(kafka, "dead") == 3
    assert sorted(json.loads(r["value"])["n"] for r in kafka.read("out")) == \
        [n for n in range(20) if n != 7]
    assert kafka.count("dead") == 1
    assert f"created output topic {kafka.topic('out')} (3 partitions" in p.stderr()


def test_declared_topics_are_made_as_declared(kafka, sproc, tmp_path):
    topics = ', topics = {{ ["{out}"] = {{ partitions = 2, config = {{ ["retention.ms"] = 3600000 }} }}, ' \
             '["{dead}"] = {{ partitions = 1 }} }}'.format(out=kafka.topic("out"), dead=kafka.topic("dead"))
    p, rc = run(kafka, sproc, tmp_path, [], topics=topics)
    assert rc == 0, p.stderr()
    assert partitions(kafka, "out") == 2 and partitions(kafka, "dead") == 1
    res = ConfigResource("topic", kafka.topic("out"))
    cfg = admin_client(kafka.bootstrap).describe_configs([res])[res].result(30)
    assert cfg["retention.ms"].value == "3600000"
    assert kafka.count("out") == 19 and kafka.count("dead") == 1
    # a second run finds them there and leaves them as they are
    p2 = sproc([p.proc.args[1], "--brokers", kafka.bootstrap, "--app", kafka.topic("app"),
                "--until-end"] + FAST)
    assert p2.wait(120) == 0, p2.stderr()
    assert "created" not in p2.stderr()


def test_a_bad_topic_declaration_is_refused_at_load(tmp_path):
    script = write_script(tmp_path, "bad.lua", """
local sproc = require "sproc"
sproc.app{ topics = { out = { partitions = 0 } } }
sproc.source{ file = "x.txt" }:print()
""")
    r = subprocess.run([SPROC, script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "bad.lua:3: sproc.app: topics[out]: partitions must be a positive integer" in r.stderr


def low_watermarks(kafka, name):
    t = kafka.topic(name)
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "lo-" + t})
    parts = c.list_topics(t, timeout=10).topics[t].partitions
    out = {p: c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[0] for p in parts}
    c.close()
    return out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_repartition_topics_lose_what_the_group_committed(kafka, sproc, tmp_path, guarantee):
    """Issue 18 #1: a repartition topic is made as Kafka Streams makes its
    own (deleted, not compacted, no time limit) and sproc deletes its
    records once the group has committed past them, so it does not grow
    for ever."""
    kafka.create("in", partitions=3)
    kafka.create("out", partitions=3)
    kafka.produce("in", [(f"s{i % 97}".encode(), {"user": f"u{i % 13}"}) for i in range(6000)])
    app = kafka.topic("app")
    script = write_script(tmp_path, "rekey.lua", f"""
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "{guarantee}" }}
sproc.source{{ topic = "{kafka.topic('in')}", value = "json" }}
  :key_by(function(r) return r.value.user end)
  :window(sproc.window.tumbling{{ size = "1h", grace = "0s" }})
  :aggregate{{ n = sproc.agg.count(), name = "per-user" }}
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app,
               "--set", "sproc.repartition.purge.interval.ms=200"] + FAST)
    rep = "app-per-user-repartition"
    wait_until(lambda: "assigned" in p.stderr() or not p.alive(), timeout=60, what="start", proc=p)
    assert p.alive(), p.stderr()
    wait_committed_to_end(kafka, app, "in", proc=p)

    def purged():
        # under exactly-once a transaction's commit marker takes the last
        # offset: the group commits up to it, not past it
        committed = kafka.committed(app, rep)
        return sum(committed.values()) >= 6000 and low_watermarks(kafka, rep) == committed

    wait_until(purged, timeout=120, interval=0.5,
               what="the repartition topic's committed records deleted", proc=p)
    res = ConfigResource("topic", kafka.topic(rep))
    cfg = admin_client(kafka.bootstrap).describe_configs([res])[res].result(30)
    assert cfg["cleanup.policy"].value == "delete" and cfg["retention.ms"].value == "-1"
    assert p.alive(), p.stderr()
