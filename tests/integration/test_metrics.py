"""The metrics endpoint during real runs: per-operator counters equal what
the known input makes them (a filter, a flat_map with fan-out 0 to 3, a
window with late records, a dead-letter topic), lag reaches 0; and the
ready endpoint answers 503 while state restores, 200 after."""
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

from conftest import FAST, ROOT, SPROC, free_port, wait_committed_to_end, wait_until, write_script


def version():
    return subprocess.run([SPROC, "--version"], capture_output=True, text=True).stdout.split()[1]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def metrics(port):
    status, text = get(port, "/metrics")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_operator_counters_and_lag(kafka, sproc, tmp_path):
    kafka.create("in", partitions=2)
    kafka.create("out", partitions=2)
    kafka.create("win", partitions=2)
    kafka.create("dlq", partitions=1)
    n = 3000
    recs = []
    for i in range(n):
        # every 10th record is not JSON: dead-lettered
        recs.append((f"k{i % 7}".encode(), b"oops" if i % 10 == 9 else
                     {"i": i, "fan": i % 4, "t": 100000 + i * 10}))
    # two records far too late for their window (same key, same partition)
    recs += [(b"k0", {"i": n, "fan": 0, "t": 1}), (b"k0", {"i": n + 1, "fan": 0, "t": 2})]
    kafka.produce("in", recs)
    port = free_port()
    script = write_script(tmp_path, "m.lua", f"""
local sproc = require "sproc"
sproc.app{{ errors = "dlq", dlq = "{kafka.topic('dlq')}" }}
local s = sproc.source{{ topic = "{kafka.topic('in')}", value = "json",
                        time = function(r) return r.value.t end }}
s:filter(function(r) return r.value.i % 2 == 0 end)
 :flat_map(function(r, emit) for j = 1, r.value.fan do emit(r.value.i * 10 + j) end end)
 :to{{ topic = "{kafka.topic('out')}" }}
s:window(sproc.window.tumbling{{ size = 1000, grace = 0 }})
 :aggregate{{ n = sproc.agg.count(), name = "w" }}
 :to{{ topic = "{kafka.topic('win')}" }}
""")
    group = kafka.topic("app")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--metrics", f"127.0.0.1:{port}"] + FAST)
    wait_committed_to_end(kafka, group, "in", proc=p)
    wait_until(lambda: all(v == 0 for k, v in metrics(port).items() if k.startswith("sproc_consumer_lag"))
               and any(k.startswith("sproc_consumer_lag") for k in metrics(port)),
               timeout=30, what="lag 0")
    m = metrics(port)
    good = [v for _, v in recs if isinstance(v, dict)]
    evens = [v for v in good if v["i"] % 2 == 0]
    fanned = sum(v["fan"] for v in evens)
    src = f'operator="source:{kafka.topic("in")}"'
    assert m[f'sproc_operator_records_total{{{src},direction="in"}}'] == len(good)
    assert m['sproc_operator_records_total{operator="filter#2",direction="in"}'] == len(good)
    assert m['sproc_operator_records_total{operator="filter#2",direction="out"}'] == len(evens)
    assert m['sproc_operator_records_total{operator="flat_map#3",direction="in"}'] == len(evens)
    assert m['sproc_operator_records_total{operator="flat_map#3",direction="out"}'] == fanned
    assert m['sproc_operator_records_total{operator="aggregate:w",direction="in"}'] == len(good)
    assert m['sproc_window_late_total{aggregate="w"}'] == 2
    assert m["sproc_dead_lettered_total"] == n // 10
    assert m["sproc_records_in_total"] == len(recs)
    assert kafka.count("out") == fanned
    status, text = get(port, "/health/live")
    assert status == 200
    assert get(port, "/nope")[0] == 404


def latency_buckets(m):
    return {k: v for k, v in m.items() if k.startswith("sproc_latency_seconds_bucket")}


# issue 14 #9: on the dev cluster every sample was in +Inf and the sum was
# near epoch milliseconds (it reports a fixed append time, 1234)
def test_latency_histogram_holds_real_latencies(kafka, sproc, tmp_path):
    kafka.create("in", partitions=1)
    kafka.create("out", partitions=1)
    kafka.produce("in", [(None, b"x")] * 100)
    port = free_port()
    script = write_script(tmp_path, "l.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{kafka.topic('in')}" }}:to{{ topic = "{kafka.topic('out')}" }}
""")
    group = kafka.topic("app")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--metrics", f"127.0.0.1:{port}"] + FAST)
    wait_committed_to_end(kafka, group, "in", proc=p)
    m = metrics(port)
    assert m["sproc_latency_seconds_count"] == 100
    assert 0 < m["sproc_latency_seconds_sum"] / 100 < 60
    dev_port = free_port()
    dev = sproc([os.path.join(ROOT, "examples", "wordcount.lua"), "--metrics", f"127.0.0.1:{dev_port}"],
                env={"SPROC_BROKERS": ""}, name="dev")
    wait_until(lambda: metrics(dev_port).get("sproc_records_out_total", 0) > 20, timeout=60,
               what="the word count's outputs")
    d = metrics(dev_port)
    b = latency_buckets(d)
    # no sample beyond the last finite bucket, and a sum that is a latency
    assert b['sproc_latency_seconds_bucket{le="+Inf"}'] == b['sproc_latency_seconds_bucket{le="10"}']
    assert d["sproc_latency_seconds_sum"] <= 10 * d["sproc_latency_seconds_count"]


# issue 18 #4: Prometheus' conventions
def test_every_metric_has_help_and_type_and_the_process_metrics_are_there(kafka, sproc, tmp_path):
    kafka.create("in", partitions=1)
    kafka.create("out", partitions=1)
    kafka.produce("in", [(None, b"x")] * 10)
    port = free_port()
    script = write_script(tmp_path, "m.lua", f"""
local sproc = require "sproc"
local seen = sproc.store{{ name = "seen" }}
sproc.source{{ topic = "{kafka.topic('in')}" }}
  :each(function(r) seen:incr("n") end)
  :to{{ topic = "{kafka.topic('out')}" }}
-- a window's metrics too
sproc.source{{ topic = "{kafka.topic('in')}" }}
  :window(sproc.window.tumbling{{ size = "1m", grace = "0s" }})
  :aggregate{{ n = sproc.agg.count(), name = "w" }}
  :each(function(r) end)
""")
    group = kafka.topic("app")
    started = time.time()
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--metrics", f"127.0.0.1:{port}"] + FAST)
    wait_committed_to_end(kafka, group, "in", proc=p)
    status, text = get(port, "/metrics")
    assert status == 200
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    families = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-z_]+", line).group(0)
            stem = re.sub(r"_(bucket|sum|count)$", "", name)
            families.add(stem if types.get(stem) == "histogram" else name)
    assert families - helps == set(), families - helps
    assert families - set(types) == set(), families - set(types)
    # base units: seconds and bytes, not milliseconds
    assert not [f for f in families if f.endswith("_ms") or "_ms_" in f], families
    m = metrics(port)
    assert m[f'sproc_build_info{{version="{version()}"}}'] == 1
    assert m["process_resident_memory_bytes"] > 1 << 20
    assert m["process_virtual_memory_bytes"] >= m["process_resident_memory_bytes"]
    assert 0 < m["process_cpu_seconds_total"] < 600
    assert 3 < m["process_open_fds"] <= m["process_max_fds"]
    assert started - 5 < m["process_start_time_seconds"] <= time.time()
    assert m["sproc_script_interrupts_total"] == 0


def test_ready_is_503_while_restoring(kafka, sproc, tmp_path):
    kafka.create("in", partitions=2)
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"key-{i}\n" for i in range(600_000)))
    feed = write_script(tmp_path, "feed.lua", f"""
local sproc = require "sproc"
sproc.source{{ file = "{keys}" }}:key_by(function(r) return r.value end):to{{ topic = "{kafka.topic('in')}" }}
""")
    f = sproc([feed, "--brokers", kafka.bootstrap, "--app", kafka.topic("feed"), "--until-end"])
    assert f.wait(120) == 0, f.stderr()
    script = write_script(tmp_path, "s.lua", f"""
local sproc = require "sproc"
local seen = sproc.store{{ name = "seen" }}
sproc.source{{ topic = "{kafka.topic('in')}" }}:each(function(r) seen:put(r.key, true) end)
""")
    group = kafka.topic("app")
    args = [script, "--brokers", kafka.bootstrap, "--app", group, "--set", "sproc.state.dir="] + FAST
    first = sproc(args + ["--until-end"], name="first")
    assert first.wait(180) == 0, first.stderr()
    port = free_port()
    p = sproc(args + ["--metrics", f"127.0.0.1:{port}"], name="second")
    seen = []
    deadline = time.time() + 60
    while time.time() < deadline:
        status, _ = get(port, "/health/ready")
        if status is not None:
            seen.append((status, "restored store seen" in p.stderr()))
            if status == 200:
                break
        time.sleep(0.01)
    log = p.stderr()
    assert seen and seen[-1][0] == 200, log
    assert any(s == 503 and "restoring store seen" in log for s, _ in seen), seen[:5]
    # 200 only once every partition was restored
    assert log.count("restored store seen") == 2, log
    m = metrics(port)
    assert m['sproc_store_keys{store="seen"}'] == 600_000
    assert m["sproc_restoring_partitions"] == 0


def test_join_hits_and_misses(kafka, sproc, tmp_path):
    kafka.create("vendors", partitions=2)
    kafka.create("trips", partitions=2)
    kafka.create("out", partitions=2)
    kafka.produce("vendors", [(f"v{i}".encode(), {"name": f"vendor {i}"}, None, 1000) for i in range(4)])
    kafka.produce("trips", [(f"v{i % 6}".encode(), {"id": i}, None, 2000 + i) for i in range(60)])
    port = free_port()
    script = write_script(tmp_path, "j.lua", f"""
local sproc = require "sproc"
local vendors = sproc.table{{ topic = "{kafka.topic('vendors')}", value = "json" }}
sproc.source{{ topic = "{kafka.topic('trips')}", value = "json" }}
  :left_join(vendors, function(t, v) return {{ id = t.id, vendor = v and v.name or false }} end,
             {{ name = "vendor" }})
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    group = kafka.topic("app")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--metrics", f"127.0.0.1:{port}"] + FAST)
    wait_committed_to_end(kafka, group, "trips", proc=p)
    m = metrics(port)
    assert m['sproc_operator_records_total{operator="join:vendor:hit",direction="in"}'] == 40
    assert m['sproc_operator_records_total{operator="join:vendor:miss",direction="in"}'] == 20


def test_describe_dot_renders(tmp_path):
    import os
    from conftest import ROOT, SPROC
    for ex in ("wordcount.lua", "trip_stats.lua", "tripdata.lua", "trip_vendors.lua", "trip_payments.lua"):
        dot = subprocess.run([SPROC, "describe", os.path.join(ROOT, "examples", ex), "--dot"],
                             capture_output=True, text=True)
        assert dot.returncode == 0, dot.stderr
        png = tmp_path / (ex + ".png")
        r = subprocess.run(["dot", "-Tpng", "-o", str(png)], input=dot.stdout, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        assert png.stat().st_size > 1000
    text = subprocess.run([SPROC, "describe", os.path.join(ROOT, "examples", "trip_stats.lua")],
                          capture_output=True, text=True).stdout
    assert "store per-vendor" in text and "trip-stats-per-vendor-repartition" in text
    text = subprocess.run([SPROC, "describe", os.path.join(ROOT, "examples", "trip_vendors.lua")],
                          capture_output=True, text=True).stdout
    assert "table vendors (store vendors, its changelog the topic)" in text, text
    assert "left join with table vendors" in text, text
