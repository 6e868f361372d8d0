"""Topics sproc makes when asked (issue 18 #1): under --create-topics the
missing output and dead-letter topics, with the source's partitions; and
the topics a script declares in sproc.app{ topics = ... }, as declared."""
import json
import subprocess

from confluent_kafka.admin import ConfigResource

from conftest import FAST, SPROC, admin_client, write_script

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
