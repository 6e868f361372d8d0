"""sproc side by side with Kafka Streams, Quix Streams and librdkafka's ceiling, on
one broker, in one run. Scenarios S0-S3 (the same preloaded ~100-byte JSON
records, 4 partitions) and S4-S5 (joins, below):
  S0  pass-through
  S1  parse, keep "ok" records, project id and amount, serialize
  S2  10-second tumbling count per key over 1M keys (event time = the
      records' Kafka timestamps, grace 0, one result per window at close)
  S3  1-hour/5-minute hopping sum of amount per country (re-keyed through a
      repartition topic), one result per window at close
Records are keyed by their "user" (1M distinct), 2 ms of event time apart;
64 sentinel records five hours later (every country among them) close
every window. S3 re-keys records of 4 input partitions into one
repartition topic, where their event times interleave as each system
happened to read them: its grace (3 h) covers the whole input, so that no
record is late anywhere and the results are the same in every system, and
each S3 run reads a copy of the input without sentinels, which the harness
appends once the repartition topic holds every record (appended earlier,
a sentinel re-keyed before another partition's records would make those
late). Its windows close at the end, so its throughput counts from the
first record in the repartition topic to the last result.
The joins run on inputs of their own (--join-records trips, 2M by default:
~110-byte JSON 20 ms of event time apart; every topic 4 partitions, loaded
through sproc, so both sides of a join have the same partitioner), sproc
and Kafka Streams only:
  S4  trips keyed by vendor left-joined with a 100,000-vendor table read
      from a compacted topic (sproc.table, Kafka Streams' KTable reading
      its topic as its changelog), writing the trip's id and amount with the
      vendor's name and tier (none for the one trip in eleven whose vendor
      the table lacks); the table's records are a day older than every
      trip, so both systems read it before the first trip and the timed
      part, first output to last, is the stream's
  S5  trips keyed by trip id joined (inner) with their payments within 5
      minutes, grace 1 minute: payments in event-time order, nine in ten
      0-290 s after their trip, the tenth 330-630 s after it (no result);
      throughput counts trips and payments
Systems: sproc, Kafka Streams (tests/bench/kstreams),
Quix Streams (tests/bench/quix_app.py, in a virtualenv of its own made on
first use), and for S0 the client's own ceiling: tests/bench/rdk_pipe.c,
librdkafka consuming and producing with sproc's client settings and
nothing in between, forwarding timestamps and headers as S0 does (and once
more with --bare: keys and values only). Quix Streams runs S0-S3
over the input's first --quix-records (1M; at 10-90k records/s all 5M would
take 1-8 minutes a run), its S1 output checked against sproc's for that
part, its S2 and S3 against the results computed from that part of the data.
Each system runs
each scenario RUNS times, alternating; a run's throughput counts from its
first output to its last (start-up excluded; S3: see above), its CPU time and peak RSS
are read from /proc. Outputs are checked equal across systems (S1: the
(id, amount) multiset; S2: the (key, window, count) multiset; S3: the
windows, sums within a cent; S4 and S5: the (key, JSON fields) multiset),
and S2-S5 against the data, before any figure counts. With --cpu N every
processor runs pinned to core N (scripts/bench pins the broker to another).

  python compare.py BROKERS [--records N] [--runs 3] [--out results.md] [--cpu N]
                    [--scenarios s0,s1,s2,s3,s4,s5]
  python compare.py BROKERS --smoke     (CI: 100,000 records and 20,000 trips, one run,
                                         outputs must agree)
  (scripts/bench runs it with a broker of its own.)"""
import argparse
import atexit
import collections
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SPROC = os.environ.get("SPROC_BIN", os.path.join(ROOT, "build", "sproc"))
# store checkpoints ($XDG_CACHE_HOME/sproc/state) go to a temporary directory
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="sproc-bench-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
PARTS = 4
SCENARIOS = ("s0", "s1", "s2", "s3", "s4", "s5")
JOINS = ("s4", "s5")    # inputs of their own, sproc and Kafka Streams only
CEILING = "librdkafka pipe (ceiling)"
BARE = "librdkafka pipe, keys and values only"


def slug(name):
    """A system's name as part of a topic name."""
    return "-".join("".join(ch for ch in w if ch.isalnum()) for w in name.lower().split())


BASE_MS = 1_700_000_000_000
SENTINELS = 64


def record(i):
    c = ("NL", "DE", "FR", "US")[i % 4]
    return ('{"id":%d,"user":"u%06d","amount":%d.%02d,"country":"%s","ok":%s,"ts":%d}'
            % (i, i % 1000000, i % 997, i % 100, c, "false" if i % 3 == 0 else "true",
               BASE_MS + 2 * i))


def sentinel(k, n):
    return ('{"id":-1,"user":"zz-sentinel-%02d","amount":0,"country":"%s","ok":false,"ts":%d}'
            % (k, ("NL", "DE", "FR", "US")[k % 4], BASE_MS + 2 * n + 5 * 3_600_000))


HOUR, STEP = 3_600_000, 300_000


def s3_windows(n):
    """(country, window start) pairs of S3: country c has the records
    i = c mod 4, at BASE + 2i."""
    out = set()
    for c, name in enumerate(("NL", "DE", "FR", "US")):
        if c >= n:
            continue
        first, last = BASE_MS + 2 * c, BASE_MS + 2 * (c + 4 * ((n - 1 - c) // 4))
        s = (first - HOUR) // STEP * STEP
        while s <= last:
            t0 = first if s <= first else first + -(-(s - first) // 8) * 8
            if s + HOUR > t0 and t0 <= last:
                out.add((name, s))
            s += STEP
    return out


def expected(n):
    """Outputs per scenario for the first n records: S0 copies them and
    the sentinels, S1 keeps two thirds, S2 has a window per record (each is
    alone in its key's 10 s window: a key comes back 2,000 s later), S3 a
    result per (country, window); of n trips, S4 joins every one (a left
    join) and S5 the nine in ten paid within 5 minutes."""
    return {"s0": n + SENTINELS, "s1": sum(1 for i in range(n) if i % 3 != 0), "s2": n,
            "s3": len(s3_windows(n)), "s4": n, "s5": sum(1 for i in range(n) if paid_in_time(i))}


# S4 and S5: trips 20 ms apart (2M of them span 11 hours of event time, so
# the join stores of S5 reach their steady size and expire records), a
# table of VENDORS vendors a day older than every trip, and a payment per
# trip
VENDORS = 100_000
SMOKE_TRIPS = 20_000
TRIP_MS = 20
TABLE_MS = BASE_MS - 86_400_000


def vendor_of(i):
    """Trip i's vendor: the trips go round 110,000 vendors, so one in
    eleven has none in the table (the left join's null side)."""
    return i * 7919 % 110_000


def trip(i):
    return ('{"id":%d,"trip":"t%07d","vendor":"v%06d","amount":%d.%02d,"distance":%d.%d,"ts":%d}'
            % (i, i, vendor_of(i), 3 + i % 97, i % 100, i % 30, i % 10, BASE_MS + TRIP_MS * i))


def vendor(v):
    return ('{"vendor":"v%06d","name":"Vendor %d","tier":"%s","since":%d,"ts":%d}'
            % (v, v, ("gold", "silver", "bronze")[v % 3], 2000 + v % 25, TABLE_MS + v))


def paid_in_time(i):
    return i % 10 != 9


def payment_time(i):
    """Trip i's payment comes 0-290 s after it for nine trips in ten, 330-630
    s after it (outside S5's 5-minute window) for the tenth."""
    delay = i * 7919 % 290_000 if paid_in_time(i) else 330_000 + i * 7919 % 300_000
    return BASE_MS + TRIP_MS * i + delay


def payment(i):
    return ('{"trip":"t%07d","paid":%d.%02d,"method":"%s","ts":%d}'
            % (i, 3 + i % 97, (i * 3) % 100, ("card", "cash")[i % 2], payment_time(i)))


def canon(k, v):
    """An output record as compared across systems: its key and its JSON
    value's fields in name order (systems order fields differently)."""
    d = json.loads(v) if v is not None else None
    return (k.decode() if k is not None else None,
            tuple(sorted(d.items())) if isinstance(d, dict) else d)


def differences(got, want):
    """What a failed comparison says: the sizes and a few records on one
    side only."""
    g, w = collections.Counter(map(repr, got)), collections.Counter(map(repr, want))
    return (f"{len(got):,} records against {len(want):,}; only in the first: "
            f"{list((g - w).elements())[:3]}; only in the second: {list((w - g).elements())[:3]}")


def s4_truth(n):
    """S4's joined records straight from the data."""
    out = []
    for i in range(n):
        t = json.loads(trip(i))
        d = {"id": i, "amount": t["amount"]}
        if vendor_of(i) < VENDORS:
            v = json.loads(vendor(vendor_of(i)))
            d.update(name=v["name"], tier=v["tier"])
        out.append((t["vendor"], tuple(sorted(d.items()))))
    out.sort()
    return out


def s5_truth(n):
    """S5's joined records straight from the data: a trip with the payment
    that came within 5 minutes of it."""
    out = []
    for i in range(n):
        if paid_in_time(i):
            t, p = json.loads(trip(i)), json.loads(payment(i))
            d = {"id": i, "vendor": t["vendor"], "amount": t["amount"], "paid": p["paid"],
                 "method": p["method"]}
            out.append((t["trip"], tuple(sorted(d.items()))))
    out.sort()
    return out


def tool(name):
    """A benchmark helper built beside sproc (rdk_pipe, rate_feed, lat_read)."""
    return os.path.join(os.path.dirname(SPROC), name)


def s2_truth(n):
    """S2's results straight from the data: every record of the first n is
    alone in its key's 10-second window (a key comes back every 1M
    records, 2,000 s later)."""
    out = []
    for i in range(n):
        ws = (BASE_MS + 2 * i) // 10_000 * 10_000
        out.append(("u%06d" % (i % 1000000), ws, ws + 10_000, 1))
    out.sort()
    return out


def s3_truth(n):
    """S3's sums straight from the data: per country, prefix sums over
    its records in time order (they come every 8 ms)."""
    import bisect
    out = {}
    for c, name in enumerate(("NL", "DE", "FR", "US")):
        ts, pre = [], [0.0]
        for i in range(c, n, 4):
            ts.append(BASE_MS + 2 * i)
            pre.append(pre[-1] + float("%d.%02d" % (i % 997, i % 100)))
        for (cn, start) in s3_windows(n):
            if cn == name:
                lo, hi = bisect.bisect_left(ts, start), bisect.bisect_left(ts, start + HOUR)
                out[(name, start)] = pre[hi] - pre[lo]
    return out


def latency(b, mk, base, rate, seconds, feed_pin=None):
    """Feeds S1 records at rate for seconds into a LogAppendTime topic
    while the system runs, and measures each output's LogAppendTime minus
    its input's. A warm-up record first, so start-up is not counted."""
    from confluent_kafka import Producer
    inp, out = f"{base}-in", f"{base}-out"
    for t in (inp, out):
        b.create(t, {"message.timestamp.type": "LogAppendTime"})
    p = subprocess.Popen(mk(out, f"{base}-app", inp), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    prod = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1,
                     "queue.buffering.max.messages": 2_000_000})
    try:
        prod.produce(inp, value=record(1), key="warm")   # ok=true: has an output
        prod.flush(30)
        deadline = time.time() + 120
        while b.ends(out) < 1:
            if time.time() > deadline:
                raise RuntimeError(f"{base}: no output from the warm-up record")
            time.sleep(0.05)
        total = int(rate * seconds)
        # the load comes from a C producer (tests/bench/rate_feed.c) on the
        # broker's core: a Python one tops out below sproc's half load
        feed = subprocess.run(list(feed_pin or []) + [tool("rate_feed"),
                                          b.bootstrap, inp, str(rate), str(seconds), "10"],
                              capture_output=True, text=True, check=True)
        achieved = float(feed.stdout.split()[-1])
        want = 1 + sum(1 for j in range(10, total + 10) if j % 3 != 0)
        deadline = time.time() + 120
        while b.ends(out) < want and time.time() < deadline:
            time.sleep(0.1)
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    # read back in C (tests/bench/lat_read.c): Python took longer than the run
    got = subprocess.run([tool("lat_read"), b.bootstrap, inp, out,
                          "10", str(total)], capture_output=True, text=True, check=True)
    n_out, p50, p99, p999 = (int(x) for x in got.stdout.split())
    return {"offered": rate, "achieved": achieved, "p50": p50, "p99": p99, "p999": p999,
            "n": n_out}


def kstreams_classpath():
    """Builds the Kafka Streams peer (tests/bench/kstreams) with Maven into a
    cache directory outside the source tree; returns its classpath."""
    ks_dir = os.path.join(HERE, "kstreams")
    build = os.path.join(os.environ.get("SPROC_CACHE", os.path.expanduser("~/.cache/sproc")),
                         "kstreams-build")
    mvn = ["mvn", "-q", "-B", "-Dstyle.color=never", f"-Dbuild.dir={build}", "-f",
           os.path.join(ks_dir, "pom.xml")]
    subprocess.run(mvn + ["package", "-DskipTests"], check=True, stdout=subprocess.DEVNULL)
    cpfile = os.path.join(build, "classpath.txt")
    subprocess.run(mvn + ["dependency:build-classpath", f"-Dmdep.outputFile={cpfile}"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(cpfile) as f:
        return os.path.join(build, "kstreams-bench-1.jar") + ":" + f.read().strip()


def quix_python():
    """The Python of Quix Streams' own virtualenv (its confluent-kafka is
    newer than the test suite's), made on first use."""
    venv = os.path.join(os.environ.get("SPROC_CACHE", os.path.expanduser("~/.cache/sproc")), "quix-venv")
    py = os.path.join(venv, "bin", "python")
    if subprocess.run([py, "-c", "import quixstreams"], capture_output=True).returncode if os.path.exists(py) else True:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "quixstreams==3.28.1"], check=True)
    return py


class Broker:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(self, topic, config=None):
        # records carry event times from 2023: no retention, or a broker's
        # default 7 days deletes segments as they roll
        cfg = {"retention.ms": "-1", **(config or {})}
        self.admin.create_topics([NewTopic(topic, PARTS, 1, config=cfg)])[topic].result(30)
        deadline = time.time() + 30
        while time.time() < deadline:
            t = self.admin.list_topics(topic, timeout=10).topics.get(topic)
            if t and not t.error and all(p.leader >= 0 for p in t.partitions.values()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no leader 30 s after it was created")

    def ends(self, topic):
        if not hasattr(self, "probe"):
            self.probe = Consumer({"bootstrap.servers": self.bootstrap,
                                   "group.id": "probe-" + uuid.uuid4().hex})
        try:
            return sum(self.probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                       for p in range(PARTS))
        except KafkaException:
            return 0   # a topic made a moment ago: no leader yet

    def repartitioned(self, app):
        """Records in the repartition topics of application app."""
        topics = [t for t in self.admin.list_topics(timeout=10).topics
                  if app in t and "repartition" in t]
        return sum(self.ends(t) for t in topics)

    def produce(self, topic, records):
        """records: (key, value, timestamp ms)."""
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap, "partitioner": "murmur2_random"})
        for k, v, ts in records:
            p.produce(topic, value=v, key=k, timestamp=ts)
        assert p.flush(30) == 0

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
    """CPU seconds and peak RSS (KiB) of a running process and its
    children (the kcat pipe is a shell with two)."""
    def one(p):
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # own time, and that of children already reaped
        cpu = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        hwm = 0
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return cpu, hwm, int(fields[1])
    try:
        cpu, hwm, _ = one(pid)
    except OSError:
        return None, None
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != pid:
            try:
                c, h, ppid = one(d)
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                cpu, hwm = cpu + c, hwm + h
    return cpu, hwm


def measure(broker, cmd, out_topic, expect, counted, env=None, timeout=900, started=None,
            poll=None, log=None, stall=120):
    """Runs cmd until out_topic holds expect records; returns records/s (the
    counted input records from first to last output, or from when started()
    turns true), CPU seconds, peak RSS MiB."""
    logf = open(log, "wb") if log else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logf,
                         env=dict(os.environ, **(env or {})))
    moved, last_n = time.time(), -1
    first = cpu0 = None
    cpu = rss = None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            n = broker.ends(out_topic)
            c, r = proc_stats(p.pid)
            if c is not None:
                cpu, rss = c, r
            if first is None and (started() if started else n > 0):
                first, cpu0 = time.time(), cpu
            if poll:
                poll()
            if n >= expect:
                last = time.time()
                break
            if p.poll() is not None:
                tail = open(log, errors="replace").read()[-2000:] if log else ""
                raise RuntimeError(f"{cmd[0]} exited ({p.returncode}) before {out_topic} "
                                   f"reached {expect}\n{tail}")
            if n != last_n:
                moved, last_n = time.time(), n
            elif n > 0 and time.time() - moved > stall:
                tail = open(log, errors="replace").read()[-2000:] if log else ""
                raise RuntimeError(f"{cmd[0]}: {out_topic} stalled at {n} of {expect}\n{tail}")
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
    return counted / secs, (cpu - (cpu0 or 0)), rss / 1024 if rss else 0


def load(b, brokers, work, topic, lines, key, config=None):
    """JSON lines into topic through sproc, keyed by their field key, at
    their "ts": every input topic gets the same partitioner, so the two
    sides of a join are co-partitioned."""
    b.create(topic, config)
    path = f"{work}/{topic}.jsonl"
    with open(path, "w") as f:
        for line in lines:
            f.write(line + "\n")
    with open(f"{work}/load.lua", "w") as f:
        f.write(f'local sproc = require "sproc"\n'
                f'sproc.source{{ file = "{path}", format = "json", '
                f'time = function(r) return r.value.ts end }}\n'
                f'  :key_by(function(r) return r.value.{key} end):to{{ topic = "{topic}" }}\n')
    subprocess.run([SPROC, f"{work}/load.lua", "--brokers", brokers, "--until-end", "--quiet"],
                   check=True)
    os.remove(path)


def join_inputs(b, brokers, work, tag, n, scenarios):
    """S4's and S5's inputs of n trips, loaded once before any run: per
    scenario, (stream topic, the other side's topic, input records counted,
    outputs expected)."""
    out, want = {}, expected(n)
    if "s4" in scenarios:
        trips, vendors = f"{tag}-s4-trips", f"{tag}-s4-vendors"
        load(b, brokers, work, vendors, (vendor(v) for v in range(VENDORS)), "vendor",
             {"cleanup.policy": "compact"})
        load(b, brokers, work, trips, (trip(i) for i in range(n)), "vendor")
        out["s4"] = (trips, vendors, n, want["s4"])     # the table is read before the first output
    if "s5" in scenarios:
        trips, payments = f"{tag}-s5-trips", f"{tag}-s5-payments"
        load(b, brokers, work, trips, (trip(i) for i in range(n)), "trip")
        # in event-time order, as a payment topic would have them
        load(b, brokers, work, payments, (payment(i) for i in sorted(range(n), key=payment_time)),
             "trip")
        out["s5"] = (trips, payments, 2 * n, want["s5"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("brokers")
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--cpu", type=int, default=None, help="pin the processors to this core")
    ap.add_argument("--peer-runs", type=int, default=3,
                    help="runs of Kafka Streams and Quix Streams")
    ap.add_argument("--quix-windowed-runs", type=int, default=1,
                    help="runs of Quix Streams' S2 and S3 (at ~10k records/s, 1.5 minutes each)")
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument("--quix-records", type=int, default=1_000_000,
                    help="Quix Streams runs every scenario over this many records of the input "
                         "(0: all; at 10-90k records/s, 5M take 1-8 minutes a run)")
    ap.add_argument("--join-records", type=int, default=2_000_000,
                    help="trips of S4 and S5 (S5 has as many payments)")
    ap.add_argument("--smoke", action="store_true",
                    help="100,000 records and 20,000 trips, one run, no table")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="which to run, comma-separated (default all: %(default)s); the latency "
                         "runs come with s1")
    a = ap.parse_args()
    scenarios = tuple(s for s in SCENARIOS if s in a.scenarios.lower().split(","))
    if not scenarios or set(a.scenarios.lower().split(",")) - set(SCENARIOS):
        ap.error(f"--scenarios: a comma-separated choice of {', '.join(SCENARIOS)}")
    if a.smoke:
        a.records, a.runs, a.peer_runs, a.quix_windowed_runs = 100_000, 1, 1, 1
        a.join_records = SMOKE_TRIPS
    n, nj = a.records, a.join_records
    pin = ["taskset", "-c", str(a.cpu)] if a.cpu is not None else []
    b = Broker(a.brokers)
    tag = "bench" + uuid.uuid4().hex[:6]
    work = f"/tmp/{tag}"
    os.makedirs(work)
    src = f"{tag}-in" if set(scenarios) - set(JOINS) else None
    if src:
        with open(f"{work}/in.jsonl", "w") as f:
            for i in range(n):
                f.write(record(i) + "\n")
            for k in range(SENTINELS):
                f.write(sentinel(k, n) + "\n")

    def feed(topic, sentinels=True, count=n):
        """The input (its first count records) into topic, with or
        without the sentinels."""
        b.create(topic)
        keep = f"r.value.id < {count}" if sentinels else f"r.value.id >= 0 and r.value.id < {count}"
        with open(f"{work}/feed.lua", "w") as f:
            f.write(f'local sproc = require "sproc"\n'
                    f'sproc.source{{ file = "{work}/in.jsonl", format = "json", '
                    f'time = function(r) return r.value.ts end }}\n'
                    f'  :filter(function(r) return {keep} end)\n'
                    f'  :key_by(function(r) return r.value.user end):to{{ topic = "{topic}" }}\n')
        subprocess.run([SPROC, f"{work}/feed.lua", "--brokers", a.brokers, "--until-end", "--quiet"],
                       check=True)
    if src:
        feed(src)
    joined = join_inputs(b, a.brokers, work, tag, nj, scenarios)
    sentinel_recs = [(json.loads(v)["user"], v, json.loads(v)["ts"])
                     for v in (sentinel(k, n) for k in range(SENTINELS))]
    expect = expected(n)
    # Quix Streams reads the input's first q records
    q = min(n, a.quix_records or n)
    expect_q = expected(q)
    quix_src = None
    quix = quix_python() if src else None
    rdk = tool("rdk_pipe")

    # Kafka Streams, built once
    cp = kstreams_classpath()
    heap = "-Xmx1g"

    scripts = {
        "s0": f'local sproc = require "sproc"\nsproc.source{{ topic = IN, value = "bytes" }}:to{{ topic = OUT }}\n',
        "s1": (f'local sproc = require "sproc"\nsproc.source{{ topic = IN, value = "json" }}\n'
               '  :filter(function(r) return r.value.ok end)\n  :select{ "id", "amount" }\n  :to{ topic = OUT }\n'),
        "s2": (f'local sproc = require "sproc"\nsproc.source{{ topic = IN, value = "json" }}\n'
               '  :window(sproc.window.tumbling{ size = "10s", grace = 0 })\n'
               '  :aggregate{ n = sproc.agg.count(), name = "s2" }\n  :to{ topic = OUT }\n'),
        "s3": (f'local sproc = require "sproc"\nsproc.source{{ topic = IN, value = "json" }}\n'
               '  :key_by(function(r) return r.value.country end)\n'
               '  :window(sproc.window.hopping{ size = "1h", advance = "5m", grace = "3h" })\n'
               '  :aggregate{ total = sproc.agg.sum(function(r) return r.value.amount end), name = "s3" }\n'
               '  :to{ topic = OUT }\n'),
        # SIDE: the other side of the join
        "s4": ('local sproc = require "sproc"\n'
               'local vendors = sproc.table{ topic = SIDE, value = "json" }\n'
               'sproc.source{ topic = IN, value = "json" }\n'
               '  :left_join(vendors, function(trip, vendor)\n'
               '    return { id = trip.id, amount = trip.amount,\n'
               '             name = vendor and vendor.name, tier = vendor and vendor.tier }\n'
               '  end)\n  :to{ topic = OUT }\n'),
        "s5": ('local sproc = require "sproc"\n'
               'local payments = sproc.source{ topic = SIDE, value = "json" }\n'
               'sproc.source{ topic = IN, value = "json" }\n'
               '  :join(payments, function(trip, pay)\n'
               '    return { id = trip.id, vendor = trip.vendor, amount = trip.amount,\n'
               '             paid = pay.paid, method = pay.method }\n'
               '  end, { within = "5m", grace = "1m" })\n  :to{ topic = OUT }\n'),
    }

    def systems(s):
        out = {}
        side = joined[s][1] if s in joined else ""

        def sproc_cmd(topic, app, inp):
            path = f"{work}/{s}-{app}.lua"
            with open(path, "w") as f:
                f.write(scripts[s].replace("OUT", json.dumps(topic)).replace("IN", json.dumps(inp))
                        .replace("SIDE", json.dumps(side)))
            return pin + [SPROC, path, "--brokers", a.brokers, "--app", app, "--quiet"]
        out["sproc"] = sproc_cmd
        # its state (RocksDB, 100+ MB a join run) under the work directory,
        # which goes at the end, instead of /tmp/kafka-streams
        out["Kafka Streams"] = lambda topic, app, inp: pin + ["java", heap, f"-Djava.io.tmpdir={work}",
                                                              "-cp", cp, "sproc.bench.Bench",
                                                              a.brokers, app, s, inp, topic, side]
        if s in JOINS:
            return out      # Quix Streams' joins are not in the comparison
        out["Quix Streams"] = lambda topic, app, inp: pin + [quix, os.path.join(HERE, "quix_app.py"),
                                                             a.brokers, app, s, inp, topic]
        if s == "s0" and os.path.exists(rdk):
            out[CEILING] = lambda topic, app, inp: pin + [rdk, a.brokers, app, inp, topic]
            out[BARE] = lambda topic, app, inp: pin + [rdk, a.brokers, app, inp, topic, "--bare"]
        return out

    def payloads(s, topic, count):
        if s == "s1":
            return sorted((d["id"], d["amount"]) for d in
                          (json.loads(v) for v in b.read(topic, count)))
        if s == "s2":
            return sorted((k, d["window_start"], d["window_end"], d["n"]) for k, d in
                          ((k.decode(), json.loads(v)) for k, v in b.read(topic, count, keys=True)))
        if s == "s3":
            return sorted((k, d["window_start"], d["window_end"], d["total"]) for k, d in
                          ((k.decode(), json.loads(v)) for k, v in b.read(topic, count, keys=True)))
        if s in JOINS:
            return sorted(canon(k, v) for k, v in b.read(topic, count, keys=True))
        return None

    def same(s, x, y):
        if s != "s3":
            return x == y
        # sums of doubles in another order: equal to the cent
        return len(x) == len(y) and all(a[:3] == b[:3] and abs(a[3] - b[3]) < 0.005
                                        for a, b in zip(x, y))

    results = {}
    outputs = {}
    prefixed = q < n   # Quix Streams ran on a prefix of the input
    # passes over the input that do not count: the broker is warm for
    # whichever system runs first (its first two passes at full speed came
    # out 30-40% slow)
    warm_in, warm_n = (src, expect["s0"]) if src else (next(iter(joined.values()))[0], nj)
    for k in range(2 if os.path.exists(rdk) and not a.smoke else 0):
        warm = f"{tag}-warm{k}"
        b.create(warm)
        measure(b, pin + [rdk, a.brokers, f"{tag}-warm{k}-app", warm_in, warm], warm, warm_n, n,
                log=f"{work}/warm{k}.log")
    for run in range(max(a.runs, a.peer_runs)):
        for s in scenarios:
            for name, mk in systems(s).items():
                if run >= (a.peer_runs if name in ("Kafka Streams", "Quix Streams") else a.runs):
                    continue
                if name == "Quix Streams" and s in ("s2", "s3") and run >= a.quix_windowed_runs:
                    continue
                topic = f"{tag}-{s}-{slug(name)}-{run}"
                b.create(topic)
                app = f"{tag}-{s}-{run}-{uuid.uuid4().hex[:4]}"
                inp, started, poll = src, None, None
                count, want = n, expect[s]
                if name == "Quix Streams" and prefixed:
                    count, want = q, expect_q[s]
                    if s != "s3":
                        if not quix_src:
                            quix_src = f"{tag}-in-{q}"
                            feed(quix_src, count=q)
                        inp = quix_src
                if s in joined:     # loaded once; S5 counts trips and payments
                    inp, _, count, want = joined[s]
                if s == "s3":   # a copy without sentinels; they come after the rest
                    inp = f"{topic}-in"
                    feed(inp, sentinels=False, count=count)
                    started = lambda: b.repartitioned(app) > 0  # noqa: E731
                    sent = []

                    def poll():
                        if not sent and b.repartitioned(app) >= count:
                            b.produce(inp, sentinel_recs)
                            sent.append(True)
                # (S5 reads 4M records at the default size)
                rate, cpu, rss = measure(b, mk(topic, app, inp), topic, want, count,
                                         timeout=240 if a.smoke else 1800 if s in JOINS else 900,
                                         started=started, poll=poll,
                                         log=f"{work}/{app}.log")
                results.setdefault((s, name), []).append((rate, cpu / (count / 1e6), rss))
                if run == 0 and s != "s0":
                    outputs[(s, name)] = payloads(s, topic, want)
                print(f"run {run + 1} {s} {name}: {rate:,.0f} records/s, {cpu:.1f} CPU s, "
                      f"{rss:.0f} MiB", flush=True)
    for s in scenarios:
        got = {name: v for (sc, name), v in outputs.items() if sc == s}
        ref = got.get("sproc")
        if ref is None:
            continue
        for name, v in got.items():
            want = ref
            if name == "Quix Streams" and prefixed:
                if s != "s1":
                    continue    # S2 and S3: against the data, below
                want = [x for x in ref if x[0] < q]
            if not same(s, v, want):
                raise SystemExit(f"{s.upper()} outputs differ between {name} and sproc: "
                                 f"{differences(v, want)}; no figure counts")
    # windowed results against what the data says, for the whole input and
    # for the prefix Quix Streams read
    for who, count in (("sproc", n), ("Quix Streams", q)):
        if ("s2", who) in outputs and outputs[("s2", who)] != s2_truth(count):
            raise SystemExit(f"{who}: S2 results differ from the counts computed from the data")
        if ("s3", who) in outputs:
            truth = s3_truth(count)
            got = {(k, ws): t for k, ws, _, t in outputs[("s3", who)]}
            if set(got) != set(truth) or any(abs(got[w] - truth[w]) > 0.01 for w in truth):
                raise SystemExit(f"{who}: S3 results differ from the sums computed from the data")
    # joined records against the data (Kafka Streams' equal sproc's above)
    for s, truth in (("s4", s4_truth), ("s5", s5_truth)):
        if (s, "sproc") in outputs and outputs[(s, "sproc")] != truth(nj):
            raise SystemExit(f"sproc: {s.upper()} records differ from the joins computed from the "
                             f"data: {differences(outputs[(s, 'sproc')], truth(nj))}")
    print("outputs agree: " + ", ".join(f"{s.upper()} ({len(v):,} records)"
                                        for (s, name), v in outputs.items() if name == "sproc")
          + f"; systems: {', '.join(sorted({name for _, name in outputs}))}")
    if a.smoke:
        shutil.rmtree(work, ignore_errors=True)
        return

    # Latency of S1 at half of each system's throughput, and of all at the
    # same rate (half of the slowest's): when S1 ran
    lat, same_lat = {}, {}
    # the load generator shares the broker's core, away from the processors
    feed_pin = ["taskset", "-c", str(1 - a.cpu)] if a.cpu in (0, 1) else []
    if "s1" in scenarios:
        halves = {name: statistics.median(r[0] for r in results[("s1", name)]) / 2
                  for name in systems("s1")}
        common = min(halves.values())
        for name, mk in systems("s1").items():
            key = slug(name)
            lat[name] = latency(b, mk, f"{tag}-lat-{key}", halves[name], a.latency_seconds, feed_pin)
            same_lat[name] = latency(b, mk, f"{tag}-same-{key}", common, a.latency_seconds, feed_pin)
            print(f"latency {name}: {lat[name]}; at {common:,.0f}/s: {same_lat[name]}", flush=True)

    lines = [f"# Benchmark results ({datetime.date.today()}, {platform.node()}, "
             f"{os.cpu_count()} cores)", ""]
    if src:
        lines += [
             f"{n:,} records of ~100-byte JSON keyed by 1M users, {PARTS} partitions, one Kafka "
             f"3.9.2 broker on the same machine{' pinned to another core than the processors' if pin else ''}; "
             f"every figure the median of {a.runs} runs for sproc and the librdkafka pipe, of "
             f"{a.peer_runs} for Kafka Streams and Quix Streams (Quix Streams' S2 and S3: "
             f"{a.quix_windowed_runs}), the spread their min–max; throughput from "
             "first to last output (S3: first repartitioned record to last output); CPU seconds per "
             "million records; peak RSS. S1, S2 and S3 outputs checked equal across systems, and S2's "
             "counts and S3's sums against the data, before the table is written."
             + (f" Quix Streams (marked *) reads the input's first {q:,} records in every scenario "
                "(its S1 output checked against sproc's for them, its S2 and S3 results against the "
                "data): at its rate the whole input takes 1-8 minutes a run." if prefixed else ""), "",
             "Settings: at-least-once everywhere, commit interval 1 s (sproc commits the offsets "
             "whose outputs and state changes Kafka has acknowledged), input headers forwarded, "
             f"one stream thread, changelogged state; Kafka Streams heap {heap}, record cache "
             "10 MiB, RocksDB window store, suppress until the window closes; Quix Streams "
             "RocksDB state, final() closing by partition; sproc in-memory window store (its "
             "changelog gets each changed key once per commit), emit final. Grace 0 (S3: 3 h). Client "
             "settings: each system's defaults (sproc: a prefetch of 10,000 records or 2 MB, 128 KB "
             "per partition and fetch, up to 20,000 outputs queued, linger 5 ms); the librdkafka "
             "pipe takes sproc's, and forwards timestamps and headers as S0 does in sproc and Kafka "
             "Streams (a second pipe row: keys and values only).", ""]
    if joined:
        lines += [
             f"Joins, sproc and Kafka Streams only, {PARTS} partitions on every topic, the broker "
             f"{'pinned to another core than the processors' if pin else 'on the same machine'}; "
             f"every figure the median of {a.runs} runs for sproc, of {a.peer_runs} for Kafka Streams, "
             "the spread their min–max; throughput from first to last output. "
             + (f"S4: {nj:,} trips (~110-byte JSON keyed by vendor) left-joined with a {VENDORS:,}-vendor "
                "table from a compacted topic (its records a day older than every trip, so both systems "
                "read it before the first trip: the timed part starts at the first output); records/s "
                "counts trips. " if "s4" in joined else "")
             + (f"S5: {nj:,} trips keyed by trip id, 20 ms of event time apart, joined with their "
                f"{nj:,} payments (in event-time order, nine in ten within 5 minutes of the trip) "
                "within 5 minutes, grace 1 minute; records/s counts trips and payments. "
                if "s5" in joined else "")
             + "Every joined record checked equal across systems (as (key, JSON fields) multisets) "
             "and against the data before the table is written. Settings: at-least-once, "
             f"commit interval 1 s, one stream thread, Kafka Streams heap {heap}, record cache "
             "10 MiB, its KTable a RocksDB store that takes the table's topic as its changelog "
             "(reuse.ktable.source.topics, as sproc's table does), its join windows RocksDB stores "
             "with changelogs; sproc's table and join stores in memory.", ""]
    lines += ["| scenario | system | records/s | spread | CPU s / M | RSS MiB | sproc's ratio |",
              "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for s in scenarios:
        base = statistics.median(r[0] for r in results[(s, "sproc")])
        for (sc, name), rs in results.items():
            if sc != s:
                continue
            rates = [r[0] for r in rs]
            med = statistics.median(rates)
            star = "*" if name == "Quix Streams" and prefixed else ""
            lines.append(f"| {s.upper()} | {name}{star} | {med:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | "
                         f"{statistics.median(r[1] for r in rs):.2f} | "
                         f"{statistics.median(r[2] for r in rs):.0f} | "
                         f"{'—' if name == 'sproc' else f'{base / med:.2f}x'} |")
    for pipe, what in ((CEILING, "the client's ceiling (the librdkafka pipe's S0 rate, the same work "
                                 "as S0)"),
                       (BARE, "the bare pipe (keys and values only)")):
        if ("s0", pipe) in results:
            c = statistics.median(r[0] for r in results[("s0", pipe)])
            lines += ["", f"sproc against {what}: " +
                      ", ".join(f"{sc.upper()} {statistics.median(r[0] for r in results[(sc, 'sproc')]) / c:.0%}"
                                for sc in ("s0", "s1") if (sc, "sproc") in results)]
    lat_head = ["", f"End-to-end latency of S1 at half of each system's S1 throughput (the "
                "issue's measure) and at one rate for all (half of the slowest's), "
                f"{a.latency_seconds:.0f} s of input from a C producer at a steady rate on the broker's "
                "core ('achieved' is what it managed), from the input record's LogAppendTime to its output's "
                "LogAppendTime (ms):", "",
                "| system | offered records/s | achieved | p50 | p99 | p999 | its p99 / sproc's |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += lat_head if lat else []   # (no S1, no latency runs)
    for title, table in (("half of its own S1 throughput", lat), ("the same rate for all", same_lat)):
        for name, l in table.items():
            ratio = "—" if name == "sproc" else f"{l['p99'] / max(table['sproc']['p99'], 0.5):.1f}x"
            lines.append(f"| {name}, {title} | {l['offered']:,.0f} | {l['achieved']:,.0f} | "
                         f"{l['p50']:.0f} | {l['p99']:.0f} | {l['p999']:.0f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
