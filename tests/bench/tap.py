"""What sproc tap costs: a bounded run of a filter-and-project pipeline
(compare.py's S1 on its records) over a preloaded topic, three ways side
by side in alternating order, several runs each:

  plain      no HTTP endpoint
  endpoint   --metrics, nobody tapping (the cost every process pays)
  tapped     --metrics and `sproc tap` on the filter for the whole run

Throughput is records over the run's wall time (start to exit, so the
same start-up is in every figure); medians and their ratios to plain.
    tap.py BROKERS [--records N] [--runs R] [--rate N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("SPROC_BUILD", os.path.join(ROOT, "build"))
SPROC = os.environ.get("SPROC_BIN", os.path.join(BUILD, "sproc"))

SCRIPT = """
local sproc = require "sproc"
sproc.source{ topic = "%s", value = "json" }
  :filter(function(r) return r.value.ok end)
  :map(function(r) return { id = r.value.id, amount = r.value.amount } end)
  :to{ topic = "%s" }
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(brokers, script, way, rate, work):
    args = [SPROC, script, "--brokers", brokers, "--app", "tapbench-" + uuid.uuid4().hex[:8],
            "--until-end", "--quiet"]
    port = free_port()
    if way != "plain":
        args += ["--metrics", f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    tap, lines = None, 0
    if way == "tapped":
        out = open(os.path.join(work, "tap.out"), "w")
        # attach as soon as the endpoint answers (it starts before consuming)
        while p.poll() is None:
            tap = subprocess.Popen([SPROC, "tap", "--at", f"127.0.0.1:{port}", "filter#2",
                                    "--rate", str(rate)], stdout=out, stderr=subprocess.DEVNULL)
            time.sleep(0.05)
            if tap.poll() is None:
                break
    _, err = p.communicate()
    took = time.monotonic() - t0
    if tap:
        tap.wait(timeout=10)
        out.close()
        lines = sum(1 for _ in open(os.path.join(work, "tap.out")))
    if p.returncode != 0:
        sys.exit(f"sproc failed ({way}):\n{err[-2000:]}")
    return took, lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("brokers")
    ap.add_argument("--records", type=int, default=3_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rate", type=int, default=100)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sproc-tapbench-")
    topic, out = "tapbench-in-" + uuid.uuid4().hex[:6], "tapbench-out-" + uuid.uuid4().hex[:6]
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": a.brokers})
    for f in admin.create_topics([NewTopic(topic, 4, 1), NewTopic(out, 4, 1)]).values():
        f.result(30)
    subprocess.run([os.path.join(BUILD, "rate_feed"), a.brokers, topic, str(a.records), "1", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    script = os.path.join(work, "s1.lua")
    with open(script, "w") as f:
        f.write(SCRIPT % (topic, out))
    ways = ["plain", "endpoint", "tapped"]
    times = {w: [] for w in ways}
    tapped_lines = []
    for i in range(a.runs):
        order = ways[i % 3:] + ways[:i % 3]
        for w in order:
            took, lines = run(a.brokers, script, w, a.rate, work)
            times[w].append(took)
            if w == "tapped":
                tapped_lines.append(lines)
            print(f"run {i + 1} {w:9s} {took:6.2f} s  {a.records / took:>10,.0f} records/s"
                  + (f"  ({lines} records tapped)" if w == "tapped" else ""), flush=True)
    base = statistics.median(times["plain"])
    print(f"\n{a.records:,} records, {a.runs} runs each, medians:")
    for w in ways:
        m = statistics.median(times[w])
        print(f"  {w:9s} {a.records / m:>10,.0f} records/s  {base / m:6.3f} x plain"
              f"  (runs: {', '.join(f'{t:.2f}' for t in times[w])} s)")
    print(f"  tapped lines per run: {tapped_lines} at --rate {a.rate}")


if __name__ == "__main__":
    main()
