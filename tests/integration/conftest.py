"""Shared fixtures of the integration suite: a real Kafka broker (started by
scripts/test, address in SPROC_TEST_BROKERS), topics with a per-test prefix,
and helpers to run sproc processes and read what they wrote."""
import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPROC = os.environ.get("SPROC_BIN", os.path.join(ROOT, "build", "sproc"))

# sproc keeps store checkpoints in $XDG_CACHE_HOME/sproc/state/<app>: every
# process this session starts keeps them in a temporary directory instead
# (tests write nowhere else, and no run sees an earlier run's checkpoints)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="sproc-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
# Short session timeouts keep rebalances after a kill within seconds.
FAST = ["--set", "session.timeout.ms=6000", "--set", "heartbeat.interval.ms=500",
        "--set", "sproc.commit.interval.ms=200"]


def brokers():
    b = os.environ.get("SPROC_TEST_BROKERS")
    if not b:
        pytest.skip("SPROC_TEST_BROKERS is not set (scripts/test starts a broker)")
    return b


_ADMINS = {}


def admin_client(bootstrap):
    """One admin client per broker for the whole session. An admin client
    dropped by a test can be garbage-collected on one of librdkafka's own
    threads (by a future's callback), where destroying it crashes the
    interpreter (confluent-kafka-python PR 2129)."""
    if bootstrap not in _ADMINS:
        _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
    return _ADMINS[bootstrap]


_CONSUMERS = {}


def probe_consumer(bootstrap, group, isolation="read_committed"):
    """One consumer per broker, group and isolation for the whole session,
    for offsets only (it joins no group). Closing a fresh one per look,
    while a test has a broker down, aborted the interpreter in librdkafka
    2.6.1 (test_cluster3)."""
    k = (bootstrap, group, isolation)
    if k not in _CONSUMERS:
        _CONSUMERS[k] = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "isolation.level": isolation, "enable.auto.commit": False})
    return _CONSUMERS[k]


class Kafka:
    def __init__(self, bootstrap, prefix):
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.admin = admin_client(bootstrap)

    def topic(self, name):
        return f"{self.prefix}-{name}"

    def create(self, name, partitions=1, config=None, replication=1):
        t = self.topic(name)
        fs = self.admin.create_topics([NewTopic(t, partitions, replication, config=config or {})])
        fs[t].result(30)
        # wait until metadata shows every partition with a leader
        deadline = time.time() + 30
        while time.time() < deadline:
            md = self.admin.list_topics(t, timeout=10)
            tm = md.topics.get(t)
            if tm and not tm.error and len(tm.partitions) == partitions and \
                    all(p.leader >= 0 for p in tm.partitions.values()):
                return t
            time.sleep(0.1)
        raise AssertionError(f"topic {t} not ready")

    def delete(self, name):
        t = self.topic(name)
        self.admin.delete_topics([t])[t].result(30)

    def produce(self, name, records, partition=None):
        """records: iterable of (key, value[, headers[, timestamp ms]]); values may
        be dicts."""
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20,
                      "partitioner": "murmur2_random", "enable.idempotence": True})
        t = self.topic(name)
        n = 0
        for rec in records:
            key, value = rec[0], rec[1]
            headers = rec[2] if len(rec) > 2 else None
            if isinstance(value, (dict, list)):
                value = json.dumps(value, separators=(",", ":"))
            kw = {"headers": headers} if headers else {}
            if len(rec) > 3 and rec[3] is not None:
                kw["timestamp"] = rec[3]
            if partition is not None:
                kw["partition"] = partition
            while True:
                try:
                    p.produce(t, value=value, key=key, **kw)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
            if n % 10000 == 0:
                p.poll(0)
        assert p.flush(60) == 0, "producer could not deliver the test input"
        return n

    def end_offsets(self, name, isolation="read_committed"):
        """High watermarks per partition; for read_committed (librdkafka's
        default) those of a transactional topic stop at the last stable
        offset."""
        t = self.topic(name)
        c = probe_consumer(self.bootstrap, "probe", isolation)
        md = c.list_topics(t, timeout=10).topics[t]
        out = {}
        for p in md.partitions:
            # a partition whose leader just died answers after the election
            deadline = time.time() + 60
            while True:
                try:
                    lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=5)
                    break
                except KafkaException:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.5)
            out[p] = hi
        return out

    def count(self, name):
        return sum(self.end_offsets(name).values())

    def open_transaction_records(self, name):
        """Records of a topic past its last stable offset: written by
        transactions that are still open."""
        ends = self.end_offsets(name, isolation="read_uncommitted")
        stable = self.end_offsets(name, isolation="read_committed")
        return sum(max(0, ends[p] - stable[p]) for p in ends)

    def read(self, name, isolation="read_committed", timeout=60):
        """Every record of a topic: list of dicts with key, value, partition,
        offset, headers, timestamp. Reads to the end of what was written:
        a transaction's commit markers are written after its commit
        returns, and until then the last stable offset (a read_committed
        reader's end) stops before it."""
        t = self.topic(name)
        ends = self.end_offsets(name, isolation="read_uncommitted")
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "reader-" + uuid.uuid4().hex,
                      "enable.auto.commit": False, "isolation.level": isolation,
                      "enable.partition.eof": True})
        c.assign([TopicPartition(t, p, 0) for p in ends])
        pending = {p for p, hi in ends.items() if hi > 0}
        out = []
        deadline = time.time() + timeout
        while pending and time.time() < deadline:
            for m in c.consume(1000, timeout=1):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        if m.offset() >= ends[m.partition()]:
                            pending.discard(m.partition())
                    continue
                out.append({"key": m.key(), "value": m.value(), "partition": m.partition(),
                            "offset": m.offset(), "headers": dict(m.headers() or []),
                            "timestamp": m.timestamp()[1]})
                if m.offset() + 1 >= ends[m.partition()]:
                    pending.discard(m.partition())
        c.close()
        assert not pending, f"could not read {t} to its end"
        return out

    def committed(self, group, name):
        t = self.topic(name)
        parts = self.end_offsets(name)
        res = probe_consumer(self.bootstrap, group).committed(
            [TopicPartition(t, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in res}


class Probe:
    """Cheap repeated looks at a running job: one set of clients kept open,
    so a fault can be triggered within milliseconds of the progress it waits
    for (a fresh client per look took long enough for a fast job to run
    out of input in between)."""

    def __init__(self, kafka, group, src, dst):
        self.src, self.dst = kafka.topic(src), kafka.topic(dst)
        conf = {"bootstrap.servers": kafka.bootstrap}
        self.group = Consumer(dict(conf, **{"group.id": group}))
        self.unc = Consumer(dict(conf, **{"group.id": "probe-" + uuid.uuid4().hex,
                                          "isolation.level": "read_uncommitted"}))
        self.com = Consumer(dict(conf, **{"group.id": "probe-" + uuid.uuid4().hex,
                                          "isolation.level": "read_committed"}))
        self.src_parts = [TopicPartition(self.src, p) for p in
                          self.group.list_topics(self.src, timeout=10).topics[self.src].partitions]
        self.dst_parts = list(self.unc.list_topics(self.dst, timeout=10).topics[self.dst].partitions)

    def committed(self):
        """Input offsets the group has committed, summed over partitions
        (asked again while the broker is too busy to answer in time, as
        right after a kill on a loaded machine)."""
        deadline = time.time() + 60
        while True:
            try:
                res = self.group.committed(self.src_parts, timeout=10)
                return sum(max(0, tp.offset) for tp in res)
            except KafkaException:
                if time.time() > deadline:
                    raise

    def open_transaction_records(self):
        """Output records past the last stable offset (of open transactions)."""
        n = 0
        for p in self.dst_parts:
            tp = TopicPartition(self.dst, p)
            n += max(0, self.unc.get_watermark_offsets(tp, timeout=5)[1] -
                     self.com.get_watermark_offsets(tp, timeout=5)[1])
        return n

    def close(self):
        for c in (self.group, self.unc, self.com):
            c.close()


def kill_in_open_transaction(proc, ready, probes, timeout=180, what="progress"):
    """SIGKILLs proc once ready() holds and every probe shows outputs of an
    open transaction. The process is frozen (SIGSTOP) before the last look,
    so a commit cannot slip in between the look and the kill; if one did
    (its markers land while the process is frozen) it is let go on and
    the wait starts over. Returns the open records each probe saw."""
    deadline = time.time() + timeout
    while True:
        wait_until(lambda: not proc.alive() or
                   (ready() and all(pr.open_transaction_records() > 0 for pr in probes)),
                   timeout=max(1, deadline - time.time()), interval=0.01, what=what)
        assert proc.alive(), f"died before the kill\n{proc.stderr()[-3000:]}"
        proc.signal(signal.SIGSTOP)
        time.sleep(0.3)  # markers of a commit already sent reach the log
        pending = [pr.open_transaction_records() for pr in probes]
        if all(n > 0 for n in pending):
            proc.kill()
            return pending
        proc.signal(signal.SIGCONT)


def assert_committed_to_end(kafka, group, name):
    """Every partition with records has its end offset committed (an empty
    partition needs no commit)."""
    ends = kafka.end_offsets(name)
    committed = kafka.committed(group, name)
    for p, end in ends.items():
        if end > 0:
            assert committed[p] == end, f"partition {p}: committed {committed[p]}, end {end}"


def wait_committed_to_end(kafka, group, name, timeout=300, proc=None):
    """Waits until the group has committed the end of every partition of an
    input topic. sproc commits an offset only after the outputs of the
    records before it are acknowledged, so after this the output is
    complete; counting output records is not enough once a fault caused
    duplicates."""
    def done():
        ends = kafka.end_offsets(name)
        committed = kafka.committed(group, name)
        return all(committed.get(p, -1) >= end for p, end in ends.items() if end > 0)
    try:
        wait_until(done, timeout=timeout, interval=0.5, what=f"{group} committed to the end of {name}")
    except AssertionError as e:
        tail = proc.stderr()[-4000:] if proc is not None else ""
        raise AssertionError(f"{e}; committed {kafka.committed(group, name)}, "
                             f"ends {kafka.end_offsets(name)}\n{tail}") from None


def assert_same_payloads(got, want, log=""):
    """Compares two collections by payload, listing a few differences."""
    got, want = set(got), set(want)
    missing, extra = sorted(want - got), sorted(got - want)
    assert not missing and not extra, \
        f"{len(missing)} missing (e.g. {missing[:10]}), {len(extra)} unexpected " \
        f"(e.g. {extra[:10]})\n{log[-4000:]}"


@pytest.fixture
def kafka(request):
    prefix = "t" + uuid.uuid4().hex[:8] + "-" + request.node.name[:40].replace("[", "-").replace("]", "")
    return Kafka(brokers(), prefix)


class Sproc:
    """A running sproc process; stderr goes to a log file the test can read."""

    def __init__(self, args, tmp_path, env=None, name="sproc"):
        self.log_path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([SPROC] + args, stdout=subprocess.PIPE,
                                     stderr=self.log, env=e, cwd=str(tmp_path))

    def wait(self, timeout=120):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        finally:
            self.log.flush()
        self.stdout = out.decode() if out else ""
        return self.proc.returncode

    def stderr(self):
        self.log.flush()
        return self.log_path.read_text()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def alive(self):
        return self.proc.poll() is None


@pytest.fixture
def sproc(tmp_path):
    procs = []

    def start(args, env=None, name="sproc"):
        p = Sproc(args, tmp_path, env, name)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.log.close()


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (for an address that must
    refuse, or for sproc's metrics endpoint)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lua_work(seconds):
    """Lua text defining work(), which spins for `seconds` of CPU: a
    pipeline that calls it per record runs long enough for a test's kills
    or pauses to land mid-run, however fast the machine."""
    return ("local function work()\n"
            f"  local t = os.clock() + {seconds}\n"
            "  while os.clock() < t do end\n"
            "end")


def write_script(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def wait_until(pred, timeout=120, interval=0.1, what="condition", proc=None):
    """Polls pred until it holds; a timeout's error ends with the tail of
    proc's log as it is then."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    tail = f"\n{proc.stderr()[-3000:]}" if proc is not None else ""
    raise AssertionError(f"timed out waiting for {what}{tail}")


class LiveFeed(threading.Thread):
    """Produces keyed records at a steady rate while the test kills and
    restarts sproc, until stop() (however slow the machine, the input is
    live at every kill); truth counts what was sent."""

    def __init__(self, kafka, rate, seed, keys):
        super().__init__(daemon=True)
        self.kafka, self.rate, self.keys = kafka, rate, keys
        self.rnd = random.Random(seed)
        self.truth = {}
        self.sent = 0
        self.error = None
        self.stopping = threading.Event()

    def stop(self):
        self.stopping.set()
        self.join()

    def run(self):
        try:
            prod = Producer({"bootstrap.servers": self.kafka.bootstrap, "linger.ms": 5,
                             "partitioner": "murmur2_random", "enable.idempotence": True})
            topic = self.kafka.topic("in")
            t0 = time.time()
            while not self.stopping.is_set():
                for _ in range(100):
                    k = f"key{self.rnd.randrange(self.keys)}"
                    self.truth[k] = self.truth.get(k, 0) + 1
                    prod.produce(topic, key=k.encode(), value=b"x")
                    self.sent += 1
                prod.poll(0)
                ahead = t0 + self.sent / self.rate - time.time()
                if ahead > 0:
                    time.sleep(ahead)
            assert prod.flush(60) == 0, "the feed could not deliver its records"
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e
