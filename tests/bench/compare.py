"""sproc side by side with Kafka Streams and librdkafka's ceiling (kcat), on
one broker, in one run. Scenarios (the same preloaded ~100-byte JSON
records, 4 partitions):
  S0  pass-through
  S1  parse, keep "ok" records, project id and amount, serialize
Each system runs each scenario RUNS times, alternating; a run's throughput
counts from its first output to its last (start-up excluded), its CPU time
and peak RSS are read from /proc. Outputs are checked equal across systems
(S1 by payload: the (id, amount) multiset) before any figure counts.

  python compare.py BROKERS [--records N] [--runs 3] [--out results.md]
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


def record(i):
    c = ("NL", "DE", "FR", "US")[i % 4]
    return ('{"id":%d,"user":"u%06d","amount":%d.%02d,"country":"%s","ok":%s,"pad":"xxxxxxxxxx"}'
            % (i, i % 1000000, i % 997, i % 100, c, "false" if i % 3 == 0 else "true"))


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

    def read(self, topic, n):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "read-" + uuid.uuid4().hex,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTS)])
        out = []
        deadline = time.time() + 300
        while len(out) < n and time.time() < deadline:
            for m in c.consume(10000, timeout=1):
                if not m.error():
                    out.append(m.value())
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


def measure(broker, cmd, out_topic, expect, env=None, timeout=300):
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
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    a = ap.parse_args()
    n = a.records
    b = Broker(a.brokers)
    tag = "bench" + uuid.uuid4().hex[:6]
    work = f"/tmp/{tag}"
    os.makedirs(work)
    src = f"{tag}-in"
    b.create(src)
    with open(f"{work}/in.jsonl", "w") as f:
        for i in range(n):
            f.write(record(i) + "\n")
    with open(f"{work}/feed.lua", "w") as f:
        f.write(f'local sproc = require "sproc"\nsproc.source{{ file = "{work}/in.jsonl" }}:to{{ topic = "{src}" }}\n')
    subprocess.run([SPROC, f"{work}/feed.lua", "--brokers", a.brokers, "--until-end", "--quiet"], check=True)
    expect = {"s0": n, "s1": sum(1 for i in range(n) if i % 3 != 0)}

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
    }

    def systems(s):
        out = {}

        def sproc_cmd(topic, app):
            path = f"{work}/{s}-{app}.lua"
            with open(path, "w") as f:
                f.write(scripts[s].replace("OUT", json.dumps(topic)))
            return [SPROC, path, "--brokers", a.brokers, "--app", app, "--quiet"]
        out["sproc"] = sproc_cmd
        out["Kafka Streams"] = lambda topic, app: ["java", heap, "-cp", cp, "sproc.bench.Bench",
                                                   a.brokers, app, s, src, topic]
        if s == "s0" and shutil.which("kcat"):
            out["kcat (ceiling)"] = lambda topic, app: [
                "sh", "-c", f"kcat -b {a.brokers} -C -t {src} -e -q -o beginning -D '\\n' -K '' "
                            f"| kcat -b {a.brokers} -P -t {topic} -D '\\n' -X linger.ms=5"]
        return out

    results = {}
    outputs = {}
    for run in range(a.runs):
        for s in ("s0", "s1"):
            for name, mk in systems(s).items():
                topic = f"{tag}-{s}-{name.split()[0].lower()}-{run}"
                b.create(topic)
                rate, cpu, rss = measure(b, mk(topic, f"{tag}-{s}-{run}-{uuid.uuid4().hex[:4]}"),
                                         topic, expect[s])
                results.setdefault((s, name), []).append((rate, cpu / (expect[s] / 1e6), rss))
                if run == 0 and s == "s1":
                    outputs[name] = sorted((d["id"], d["amount"]) for d in
                                           (json.loads(v) for v in b.read(topic, expect[s])))
                print(f"run {run + 1} {s} {name}: {rate:,.0f} records/s, {cpu:.1f} CPU s, "
                      f"{rss:.0f} MiB", flush=True)
    ref = outputs.get("sproc")
    agree = all(v == ref for v in outputs.values())
    if not agree:
        raise SystemExit("S1 outputs differ between systems: no figure counts")

    lines = [f"# Benchmark results ({datetime.date.today()}, {platform.node()}, "
             f"{os.cpu_count()} cores)", "",
             f"{n:,} records of ~100-byte JSON, {PARTS} partitions, one Kafka 3.9.2 broker on "
             f"the same machine; medians of {a.runs} runs (spread: min–max); throughput from "
             "first to last output; CPU seconds per million records; peak RSS. S1 outputs "
             "checked equal across systems.", "",
             "Settings: at-least-once everywhere, commit interval 1 s, one stream thread, "
             f"Kafka Streams heap {heap}, cache 10 MiB; sproc defaults.", "",
             "| scenario | system | records/s | spread | CPU s / M | RSS MiB | sproc's ratio |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for s in ("s0", "s1"):
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
