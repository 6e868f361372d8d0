"""Avro with a real Schema Registry (Apicurio's Confluent-compatible API,
scripts/registry), checked against Confluent's own Python serializers:
what confluent-kafka's AvroSerializer writes, sproc reads; what sproc
writes, its AvroDeserializer reads; schema evolution; an incompatible
schema refused with the registry's message; a registry that is down."""
import decimal
import json
import os
import signal
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import (FAST, ROOT, SPROC, Probe, free_port, kill_in_open_transaction, lua_work,
                      wait_committed_to_end, wait_until, write_script)

REGISTRY = os.path.join(ROOT, "scripts", "registry")

TRIP = {
    "type": "record", "name": "Trip", "namespace": "nyc",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "vendor", "type": ["null", "string"], "default": None},
        {"name": "fare", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "pickup", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "passengers", "type": "int"},
        {"name": "zones", "type": {"type": "array", "items": "string"}},
    ],
}
FARE = {"type": "record", "name": "Fare", "fields": [
    {"name": "id", "type": "long"}, {"name": "fare", "type": "double"},
    {"name": "vendor", "type": ["null", "string"], "default": None}]}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    env = dict(os.environ, SPROC_REGISTRY_DIR=str(tmp_path_factory.mktemp("registry")))
    port = free_port()
    r = subprocess.run([REGISTRY, "start", "--port", str(port)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip().splitlines()[-1]
    yield url
    subprocess.run([REGISTRY, "stop"], env=env, timeout=60)


def client(url):
    return SchemaRegistryClient({"url": url})


def produce_avro(kafka, topic, url, schema, values):
    ser = AvroSerializer(client(url), json.dumps(schema))
    p = Producer({"bootstrap.servers": kafka.bootstrap})
    for i, v in enumerate(values):
        p.produce(kafka.topic(topic), key=str(i).encode(),
                  value=ser(v, SerializationContext(kafka.topic(topic), MessageField.VALUE)))
    assert p.flush(30) == 0


def read_avro(kafka, topic, url):
    de = AvroDeserializer(client(url))
    return [de(r["value"], SerializationContext(kafka.topic(topic), MessageField.VALUE))
            for r in kafka.read(topic)]


def trips(n, start=0):
    return [{"id": i, "vendor": None if i % 7 == 0 else f"v{i % 5}",
             "fare": decimal.Decimal(f"{i % 40}.{i % 100:02d}"),
             "pickup": 1_704_164_645_000 + i * 1000, "passengers": i % 6,
             "zones": [f"z{i % 3}", f"z{i % 4}"]} for i in range(start, start + n)]


def run(kafka, tmp_path, script, url, app, extra=()):
    r = subprocess.run([SPROC, script, "--brokers", kafka.bootstrap, "--app", kafka.topic(app),
                        "--until-end", "--set", f"schema.registry.url={url}", *extra],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    return r


def test_reads_what_confluent_writes_and_writes_what_it_reads(kafka, tmp_path, registry):
    kafka.create("trips", partitions=2)
    kafka.create("fares", partitions=2)
    data = trips(2000)
    produce_avro(kafka, "trips", registry, TRIP, data)
    # a sink with a fixed id: the schema registered beforehand, by someone else
    kafka.create("fixed", partitions=1)
    fixed_id = client(registry).register_schema(kafka.topic("fixed") + "-value",
                                                Schema(json.dumps(FARE), "AVRO"))
    script = write_script(tmp_path, "fares.lua", f"""
local sproc = require "sproc"
local src = sproc.source{{ topic = "{kafka.topic('trips')}", value = "avro" }}
-- every trip as it came, its Avro types kept in Parquet
src:to_parquet{{ dir = "{tmp_path}/raw", schema = sproc.schema.from_avro([[{json.dumps(TRIP)}]]) }}
local s = src
  :filter(function(r) return r.value.fare > 10 and r.value.passengers > 0 end)
  :map(function(r) return {{ id = r.value.id, fare = r.value.fare, vendor = r.value.vendor }} end)
s:to{{ topic = "{kafka.topic('fares')}", value = "avro", schema = [[{json.dumps(FARE)}]] }}
s:to_parquet{{ dir = "{tmp_path}/pq", schema = sproc.schema.from_avro([[{json.dumps(FARE)}]]) }}
s:to{{ topic = "{kafka.topic('fixed')}", value = "avro", schema_id = {fixed_id} }}
""")
    r = run(kafka, tmp_path, script, registry, "fares")
    assert r.returncode == 0, r.stderr
    want = {t["id"]: (float(t["fare"]), t["vendor"]) for t in data
            if t["fare"] > 10 and t["passengers"] > 0}
    got = {v["id"]: (v["fare"], v["vendor"]) for v in read_avro(kafka, "fares", registry)}
    assert got == want, f"{len(set(got.items()) ^ set(want.items()))} values differ"
    fixed = kafka.read("fixed")
    assert {int.from_bytes(r["value"][1:5], "big") for r in fixed} == {fixed_id}
    assert {v["id"]: (v["fare"], v["vendor"]) for v in read_avro(kafka, "fixed", registry)} == want
    # the subject sproc registered is the topic's, with the schema it gave
    latest = client(registry).get_latest_version(kafka.topic("fares") + "-value")
    assert json.loads(latest.schema.schema_str)["name"] == "Fare"
    import pyarrow.dataset as ds
    rows = ds.dataset(str(tmp_path / "pq"), format="parquet").to_table().to_pylist()
    assert {row["id"]: (row["fare"], row["vendor"]) for row in rows} == want
    raw = ds.dataset(str(tmp_path / "raw"), format="parquet").to_table()
    types = {f.name: str(f.type) for f in raw.schema}
    assert types == {"id": "int64", "vendor": "string", "fare": "decimal128(9, 2)",
                     "pickup": "timestamp[ms, tz=UTC]", "passengers": "int64",
                     "zones": "list<element: string>"}, types
    back = {row["id"]: row for row in raw.to_pylist()}
    for t in data:
        row = back[t["id"]]
        assert (row["vendor"], row["fare"], row["zones"]) == (t["vendor"], t["fare"], t["zones"]), row
        assert int(row["pickup"].timestamp() * 1000) == t["pickup"], row
    print(f"{len(data)} trips in, {len(got)} fares out, equal in Avro (AvroDeserializer) and Parquet; "
          f"the trips in Parquet with their Avro types")


def test_schema_evolution_and_an_incompatible_schema(kafka, tmp_path, registry):
    kafka.create("ev", partitions=1)
    kafka.create("ev-out", partitions=1)
    subject = kafka.topic("ev") + "-value"
    client(registry).set_compatibility(subject_name=subject, level="BACKWARD")
    v1 = {"type": "record", "name": "Ride", "fields": [{"name": "id", "type": "long"},
                                                     {"name": "km", "type": "double"},
                                                     {"name": "note", "type": "string", "default": ""}]}
    # v2 adds a field with a default and removes one: backward compatible
    v2 = {"type": "record", "name": "Ride", "fields": [{"name": "id", "type": "long"},
                                                     {"name": "km", "type": "double"},
                                                     {"name": "city", "type": "string", "default": "?"}]}
    produce_avro(kafka, "ev", registry, v1, [{"id": i, "km": i / 2, "note": "n"} for i in range(50)])
    produce_avro(kafka, "ev", registry, v2, [{"id": i, "km": i / 2, "city": "ams"} for i in range(50, 100)])
    script = write_script(tmp_path, "ev.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{kafka.topic('ev')}", value = "avro" }}
  :map(function(r) return {{ id = r.value.id, km = r.value.km, city = r.value.city or "none" }} end)
  :to{{ topic = "{kafka.topic('ev-out')}" }}
""")
    r = run(kafka, tmp_path, script, registry, "ev")
    assert r.returncode == 0, r.stderr
    out = sorted((json.loads(x["value"]) for x in kafka.read("ev-out")), key=lambda v: v["id"])
    assert [v["city"] for v in out] == ["none"] * 50 + ["ams"] * 50, "each record read by its own writer schema"
    assert [v["km"] for v in out] == [i / 2 for i in range(100)]
    # a sink whose schema the subject's compatibility refuses: the registry's message
    bad = {"type": "record", "name": "Ride", "fields": [{"name": "id", "type": "string"}]}
    script = write_script(tmp_path, "bad.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{kafka.topic('ev')}", value = "avro" }}
  :to{{ topic = "{kafka.topic('ev')}", value = "avro", schema = [[{json.dumps(bad)}]] }}
""")
    r = run(kafka, tmp_path, script, registry, "bad")
    assert r.returncode != 0
    assert "Incompatible" in r.stderr and subject in r.stderr, r.stderr


def test_a_registry_that_is_down_stops_sproc_naming_it(kafka, tmp_path):
    kafka.create("down", partitions=1)
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    script = write_script(tmp_path, "down.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{kafka.topic('down')}", value = "avro" }}:print()
""")
    t0 = time.time()
    r = run(kafka, tmp_path, script, url, "down")
    took = time.time() - t0
    assert r.returncode == 1, r.stderr
    assert url in r.stderr, r.stderr
    assert took < 30, f"took {took:.1f} s"


EOS_SCRIPT = """
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "exactly_once" }}
{work}
sproc.source{{ topic = "{src}", value = "avro" }}
  :filter(function(r) return r.value.passengers > 0 end)
  :map(function(r) work(); return {{ id = r.value.id, fare = r.value.fare, vendor = r.value.vendor{extra} }} end)
  :to{{ topic = "{dst}", value = "avro", schema = [[{schema}]] }}
"""
# the version the reload brings: one more field, with a default (BACKWARD)
FARE2 = dict(FARE, fields=FARE["fields"] + [{"name": "version", "type": "int", "default": 1}])


def test_avro_under_exactly_once_through_kills_and_a_reload(kafka, sproc, tmp_path, registry):
    """Avro in and out under exactly-once, killed twice in an open
    transaction, then a reload that registers a new version of the output's
    schema while records flow: read_committed, every trip that passes comes
    out exactly once, equal, written under the old schema id before the
    reload and the new one after."""
    n = 12_000
    kafka.create("trips", partitions=4)
    kafka.create("fares", partitions=4)
    client(registry).set_compatibility(subject_name=kafka.topic("fares") + "-value", level="BACKWARD")
    data = trips(n)
    produce_avro(kafka, "trips", registry, TRIP, data)
    path = tmp_path / "fares.lua"

    def version(extra, schema):
        # time enough per record for kills to land mid-run
        path.write_text(EOS_SCRIPT.format(src=kafka.topic("trips"), dst=kafka.topic("fares"), work=lua_work(0.0002),
                                          extra=extra, schema=json.dumps(schema)))
    version("", FARE)
    group = kafka.topic("eos")
    args = [str(path), "--brokers", kafka.bootstrap, "--app", group, "--set",
            f"schema.registry.url={registry}"] + FAST
    probe = Probe(kafka, group, "trips", "fares")
    for i, goal in enumerate((0.2 * n, 0.45 * n)):
        p = sproc(args, name=f"kill{i}")
        kill_in_open_transaction(p, lambda: probe.committed() >= goal, [probe],
                                 what=f"{goal:.0f} trips committed")
    p = sproc(args, name="last")
    wait_until(lambda: probe.committed() >= 0.6 * n, timeout=180, what="60% committed", proc=p)
    version(", version = 2", FARE2)
    p.signal(signal.SIGHUP)
    wait_until(lambda: "version 2 runs" in p.stderr(), timeout=60, what="the reload", proc=p)
    wait_committed_to_end(kafka, group, "trips", proc=p)
    probe.close()
    p.signal(signal.SIGTERM)
    assert p.wait(60) == 0, p.stderr()[-3000:]

    recs = kafka.read("fares", isolation="read_committed")
    de = AvroDeserializer(client(registry))
    ctx = SerializationContext(kafka.topic("fares"), MessageField.VALUE)
    got = [(int.from_bytes(r["value"][1:5], "big"), de(r["value"], ctx)) for r in recs]
    ids = [v["id"] for _, v in got]
    want = {t["id"]: (float(t["fare"]), t["vendor"]) for t in data if t["passengers"] > 0}
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} trips came out twice"
    assert {v["id"]: (v["fare"], v["vendor"]) for _, v in got} == want
    v1 = client(registry).get_version(kafka.topic("fares") + "-value", 1).schema_id
    v2 = client(registry).get_latest_version(kafka.topic("fares") + "-value").schema_id
    assert v1 != v2
    by_id = {}
    for sid, v in got:
        by_id.setdefault(sid, []).append(v)
    assert set(by_id) == {v1, v2}, set(by_id)
    assert all("version" not in v for v in by_id[v1])
    assert all(v["version"] == 2 for v in by_id[v2])
    print(f"{len(ids)} fares exactly once through 2 kills and a reload; "
          f"{len(by_id[v1])} under schema {v1}, {len(by_id[v2])} under {v2}")

