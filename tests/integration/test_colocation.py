"""Several processes and several topics: a partition's state is where its
records are processed. A stream joined with a table must find, in the
process that holds the stream's partition p, the table's partition p kept
up to date: the two topics' partitions p must go to one process, as Kafka
Streams' assignor puts co-partitioned topics in one task. The same holds
for a store a topic's records write and the repartition topic a re-keyed
aggregation reads."""
import json
import urllib.request

from conftest import free_port, wait_committed_to_end, wait_until, write_script

SCRIPT = """
local sproc = require "sproc"
sproc.app{ id = "%(app)s" }
local vendors = sproc.table{ topic = "%(vendors)s", value = "json", name = "vendors" }
sproc.source{ topic = "%(trips)s", value = "json" }
  :left_join(vendors, function(trip, vendor)
    return { id = trip.id, version = vendor and vendor.version or false }
  end)
  :to{ topic = "%(out)s" }
"""

PARTS = 8
KEYS = [f"v{i}" for i in range(200)]


def state(port):
    try:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5).read())
    except OSError:
        return None


def ready(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5).status == 200
    except OSError:
        return False


def test_a_joined_table_is_kept_where_its_stream_partition_is(kafka, sproc, tmp_path):
    trips = kafka.create("trips", partitions=PARTS)
    vendors = kafka.create("vendors", partitions=PARTS, config={"cleanup.policy": "compact"})
    out = kafka.create("out", partitions=PARTS)
    app = kafka.topic("app")
    write_script(tmp_path, "join.lua", SCRIPT % {"app": app, "trips": trips, "vendors": vendors,
                                                 "out": out})
    kafka.produce("vendors", [(k, {"version": 1}) for k in KEYS])
    ports = [free_port(), free_port()]
    procs = [sproc(["join.lua", "--brokers", kafka.bootstrap, "--metrics", f"127.0.0.1:{ports[0]}",
                    "--set", "session.timeout.ms=6000"], name="a")]
    wait_until(lambda: ready(ports[0]), what="a ready", proc=procs[0])
    wait_committed_to_end(kafka, app, "vendors", proc=procs[0])
    # a second process joins: partitions move to it
    procs.append(sproc(["join.lua", "--brokers", kafka.bootstrap, "--metrics", f"127.0.0.1:{ports[1]}",
                        "--set", "session.timeout.ms=6000"], name="b"))

    def settled():
        s = [state(p) for p in ports]
        if not all(s) or not all(ready(p) for p in ports):
            return False
        members = s[0]["members"]
        return len(members) == 2 and all(m["partitions"] for m in members) and s[1]["members"] == members

    wait_until(settled, timeout=90, what="both processes hold partitions", proc=procs[1])
    members = state(ports[0])["members"]
    print("assignment:", {m["address"]: m["partitions"] for m in members})
    # the table changes, then every key's trip comes: each must see the change
    kafka.produce("vendors", [(k, {"version": 2}) for k in KEYS])
    wait_committed_to_end(kafka, app, "vendors", proc=procs[1])
    kafka.produce("trips", [(k, {"id": i}) for i, k in enumerate(KEYS)])
    wait_committed_to_end(kafka, app, "trips", proc=procs[1])
    got = {json.loads(r["value"])["id"]: json.loads(r["value"])["version"] for r in kafka.read("out")}
    stale = sorted(KEYS[i] for i, v in got.items() if v != 2)
    assert len(got) == len(KEYS), f"{len(got)} results for {len(KEYS)} trips"
    assert not stale, f"{len(stale)} trips joined an old row (e.g. {stale[:5]}); assignment {members}"
    for m in members:
        t = m["partitions"]
        assert sorted(t.get(trips, [])) == sorted(t.get(vendors, [])), \
            f"{m['address']}: trips {t.get(trips)} but vendors {t.get(vendors)}"
