"""sproc side by side with Kafka Streams and librdkafka's ceiling (kcat), on
one broker, in one run. Scenarios (the same preloaded ~100-byte JSON
records, 4 partitions):
  S0  pass-through
  S1  parse, keep "ok" records, project id and amount, serialize
  S2  10-second tumbling count per key over 1M keys (event time = the
      records' Kafka timestamps, grace 0, one result per window at close)
Records are keyed by their "user" (1M distinct), 2 ms of event time apart;
64 sentinel records an hour later close every window. Each system runs
each scenario RUNS times, alternating; a run's throughput counts from its
first output to its last (start-up excluded), its CPU time and peak RSS
are read from /proc. Outputs are checked equal across systems (S1: the
(id, amount) multiset; S2: the (key, window, count) multiset) before any
figure counts. With --cpu N every processor runs pinned to core N
(scripts/bench pins the broker to another).

  python compare.py BROKERS [--records N] [--runs 3] [--out results.md] [--cpu N]
  python compare.py BROKERS --smoke     (CI: 100,000 records, one run, outputs must agree)
  (scripts/bench runs it with a broker of its own.)"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SPROC = os.environ.get("SPROC_BIN", os.path.join(ROOT, "build", "sproc"))
PARTS = 4


BASE_MS = 1_700_000_000_000
SENTINELS = 64


def record(i):
    c = ("NL", "DE", "FR", "US")[i % 4]
    return ('{"id":%d,"user":"u%06d","amount":%d.%02d,"country":"%s","ok":%s,"ts":%d}'
            % (i, i % 1000000, i % 997, i % 100, c, "false" if i % 3 == 0 else "true",
               BASE_MS + 2 * i))


def sentinel(k, n):
    return ('{"id":-1,"user":"zz-sentinel-%02d","amount":0,"country":"NL","ok":false,"ts":%d}'
            % (k, BASE_MS + 2 * n + 3_600_000))


class Broker:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(self, topic):
        self.admin.create_topics([NewTopic(topic, PARTS, 1)])[topic].result(30)
        deadline = time.time() + 30
        while time.time() < deadline:
            t = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if t and not t.error and all(p.leader >= 0 for p in t.partitions.values()):
                return
            time.sleep(0.1)

    def ends(self, topic):
        if not hasattr(self, "probe"):
            self.probe = Consumer({"bootstrap.servers": self.bootstrap,
                                   "group.id": "probe-" + uuid.uuid4().hex})
        try:
            return sum(self.probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                       for p in range(PARTS))
        except KafkaException:
            return 0   # a topic made a moment ago: no leader yet

    def read(self, topic, n, keys=False):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "read-" + uuid.uuid4().hex,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTS)])
        out = []
        deadline = time.time() + 300
        while len(out) < n and time.time() < deadline:
            for m in c.consume(10000, timeout=1):
                if not m.error():
                    out.append((m.key(), m.value()) if keys else m.value())
        c.close()
        return out


def proc_stats(pid):
    """CPU seconds and peak RSS (KiB) of a running process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        hwm = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return cpu, hwm
    except OSError:
        return None, None


def measure(broker, cmd, out_topic, expect, env=None, timeout=600):
    """Runs cmd until out_topic holds expect records; returns records/s (from
    first to last output), CPU seconds, peak RSS MiB."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, **(env or {})))
    first = cpu0 = None
    cpu = rss = None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            n = broker.ends(out_topic)
            c, r = proc_stats(p.pid)
            if c is not None:
                cpu, rss = c, r
            if n > 0 and first is None:
                first, cpu0 = time.time(), cpu
            if n >= expect:
                last = time.time()
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{cmd[0]}: {out_topic} did not reach {expect}")
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    secs = max(last - first, 1e-3)
    return expect / secs, (cpu - (cpu0 or 0)), rss / 1024 if rss else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("brokers")
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--cpu", type=int, default=None, help="pin the processors to this core")
    ap.add_argument("--smoke", action="store_true", help="100,000 records, one run, no table")
    a = ap.parse_args()
    if a.smoke:
        a.records, a.runs = 100_000, 1
    n = a.records
    pin = ["taskset", "-c", str(a.cpu)] if a.cpu is not None else []
    b = Broker(a.brokers)
    tag = "bench" + uuid.uuid4().hex[:6]
    work = f"/tmp/{tag}"
    os.makedirs(work)
    src = f"{tag}-in"
    b.create(src)
    with open(f"{work}/in.jsonl", "w") as f:
        for i in range(n):
            f.write(record(i) + "\n")
        for k in range(SENTINELS):
            f.write(sentinel(k, n) + "\n")
    with open(f"{work}/feed.lua", "w") as f:
        f.write(f'local sproc = require "sproc"\n'
                f'sproc.source{{ file = "{work}/in.jsonl", format = "json", '
                f'time = function(r) return r.value.ts end }}\n'
                f'  :key_by(function(r) return r.value.user end):to{{ topic = "{src}" }}\n')
    subprocess.run([SPROC, f"{work}/feed.lua", "--brokers", a.brokers, "--until-end", "--quiet"], check=True)
    # S2: every regular record is alone in its (key, 10 s window): a key
    # comes back 2,000 s later
    expect = {"s0": n + SENTINELS, "s1": sum(1 for i in range(n) if i % 3 != 0), "s2": n}

    # Kafka Streams, built once
    ks_dir = os.path.join(HERE, "kstreams")
    subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "-f", os.path.join(ks_dir, "pom.xml"),
                    "package", "-DskipTests"],
                   check=True, stdout=subprocess.DEVNULL)
    cpfile = os.path.join(ks_dir, "target", "classpath.txt")
    subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "-f", os.path.join(ks_dir, "pom.xml"),
                    "dependency:build-classpath", f"-Dmdep.outputFile={cpfile}"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(cpfile) as f:
        cp = os.path.join(ks_dir, "target", "kstreams-bench-1.jar") + ":" + f.read().strip()
    heap = "-Xmx1g"

    scripts = {
        "s0": f'local sproc = require "sproc"\nsproc.source{{ topic = "{src}", value = "bytes" }}:to{{ topic = OUT }}\n',
        "s1": (f'local sproc = require "sproc"\nsproc.source{{ topic = "{src}", value = "json" }}\n'
               '  :filter(function(r) return r.value.ok end)\n  :select{ "id", "amount" }\n  :to{ topic = OUT }\n'),
        "s2": (f'local sproc = require "sproc"\nsproc.source{{ topic = "{src}", value = "json" }}\n'
               '  :window(sproc.window.tumbling{ size = "10s", grace = 0 })\n'
               '  :aggregate{ n = sproc.agg.count(), name = "s2" }\n  :to{ topic = OUT }\n'),
    }

    def systems(s):
        out = {}

        def sproc_cmd(topic, app):
            path = f"{work}/{s}-{app}.lua"
            with open(path, "w") as f:
                f.write(scripts[s].replace("OUT", json.dumps(topic)))
            return pin + [SPROC, path, "--brokers", a.brokers, "--app", app, "--quiet"]
        out["sproc"] = sproc_cmd
        out["Kafka Streams"] = lambda topic, app: pin + ["java", heap, "-cp", cp, "sproc.bench.Bench",
                                                         a.brokers, app, s, src, topic]
        if s == "s0" and shutil.which("kcat"):
            out["kcat (ceiling)"] = lambda topic, app: pin + [
                "sh", "-c", f"kcat -b {a.brokers} -C -t {src} -e -q -o beginning -D '\\n' -K '' "
                            f"| kcat -b {a.brokers} -P -t {topic} -D '\\n' -X linger.ms=5"]
        return out

    def payloads(s, topic):
        if s == "s1":
            return sorted((d["id"], d["amount"]) for d in
                          (json.loads(v) for v in b.read(topic, expect[s])))
        if s == "s2":
            return sorted((k, d["window_start"], d["window_end"], d["n"]) for k, d in
                          ((k.decode(), json.loads(v)) for k, v in b.read(topic, expect[s], keys=True)))
        return None

    scenarios = ("s0", "s1", "s2")
    results = {}
    outputs = {}
    for run in range(a.runs):
        for s in scenarios:
            for name, mk in systems(s).items():
                topic = f"{tag}-{s}-{name.split()[0].lower()}-{run}"
                b.create(topic)
                rate, cpu, rss = measure(b, mk(topic, f"{tag}-{s}-{run}-{uuid.uuid4().hex[:4]}"),
                                         topic, expect[s])
                results.setdefault((s, name), []).append((rate, cpu / (expect[s] / 1e6), rss))
                if run == 0 and s != "s0":
                    outputs[(s, name)] = payloads(s, topic)
                print(f"run {run + 1} {s} {name}: {rate:,.0f} records/s, {cpu:.1f} CPU s, "
                      f"{rss:.0f} MiB", flush=True)
    for s in scenarios:
        got = {name: v for (sc, name), v in outputs.items() if sc == s}
        ref = got.get("sproc")
        if ref is not None and any(v != ref for v in got.values()):
            raise SystemExit(f"{s.upper()} outputs differ between systems: no figure counts")
    print("outputs agree: " + ", ".join(f"{s.upper()} ({len(v):,} records)"
                                        for (s, name), v in outputs.items() if name == "sproc"))
    if a.smoke:
        shutil.rmtree(work, ignore_errors=True)
        return

    lines = [f"# Benchmark results ({datetime.date.today()}, {platform.node()}, "
             f"{os.cpu_count()} cores)", "",
             f"{n:,} records of ~100-byte JSON keyed by 1M users, {PARTS} partitions, one Kafka "
             f"3.9.2 broker on the same machine{' pinned to another core than the processors' if pin else ''}; "
             f"medians of {a.runs} runs (spread: min–max); throughput from "
             "first to last output; CPU seconds per million records; peak RSS. S1 and S2 outputs "
             "checked equal across systems.", "",
             "Settings: at-least-once everywhere, commit interval 1 s (sproc: after each batch's "
             "outputs are acknowledged), one stream thread, "
             f"Kafka Streams heap {heap}, record cache 10 MiB, RocksDB window store, "
             "suppress until the window closes; sproc in-memory window store, emit final. Grace 0.", "",
             "| scenario | system | records/s | spread | CPU s / M | RSS MiB | sproc's ratio |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for s in scenarios:
        base = statistics.median(r[0] for r in results[(s, "sproc")])
        for (sc, name), rs in results.items():
            if sc != s:
                continue
            rates = [r[0] for r in rs]
            med = statistics.median(rates)
            lines.append(f"| {s.upper()} | {name} | {med:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | "
                         f"{statistics.median(r[1] for r in rs):.2f} | "
                         f"{statistics.median(r[2] for r in rs):.0f} | "
                         f"{'—' if name == 'sproc' else f'{base / med:.2f}x'} |")
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
