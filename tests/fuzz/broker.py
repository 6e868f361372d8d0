"""Generated cases through a real broker: the inputs produced to their
partitions with their timestamps, sproc run as users run it, the outputs
read back read_committed.

Runs (variant):
  bounded     --until-end, one process
  continuous  a process stopped by SIGTERM once its group committed the
              inputs' ends (open windows stay open: they are not compared)
  kills       exactly-once: kill -9 at random points of progress and a
              restart, a second process joining, then a bounded run
Each is run at-least-once or exactly-once, with the case's store backends.
At-least-once runs without a fault give each output once, so every
comparison here is exact.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("SPROC_FUZZ_ROOT") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "integration"))

import gen  # noqa: E402
import model  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402

FAST = ["--set", "session.timeout.ms=6000", "--set", "heartbeat.interval.ms=500",
        "--set", "sproc.commit.interval.ms=200"]


def sproc_bin():
    return os.environ.get("SPROC_BIN") or os.path.join(ROOT, "build", "sproc")


def topics_of(case):
    ins = sorted({s["topic"] for s in case["sources"]})
    outs = set()

    def walk(ops):
        for o in ops:
            if o["op"] == "to":
                outs.add(o["topic"])
            if o["op"] == "branch":
                for b in o["branches"]:
                    walk(b)
    for s in case["sources"]:
        walk(s["ops"])
    if case["policy"] == "dlq":
        outs.add("dead")
    outs.update(t["topic"] for t in case.get("timers", []))
    return ins, sorted(outs)


def committed_total(bootstrap, group, topic, parts):
    """Offsets the group committed on a topic, summed (0 while the broker
    is too busy to answer: callers poll this)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=10)
    except KafkaException:
        return 0
    finally:
        c.close()
    return sum(max(0, tp.offset) for tp in res)


def read_all(bootstrap, topic, timeout=60):
    """Every record of a topic, read_committed, to its high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fz-" + uuid.uuid4().hex,
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    unc = Consumer({"bootstrap.servers": bootstrap, "group.id": "fz-" + uuid.uuid4().hex,
                    "isolation.level": "read_uncommitted"})
    md = c.list_topics(topic, timeout=10).topics[topic]
    ends = {p: unc.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
    unc.close()
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    pending = {p for p, e in ends.items() if e > 0}
    out = []
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        for m in c.consume(500, timeout=0.5):
            if m.error():
                if m.error().code() == -191 and m.offset() >= ends[m.partition()]:
                    pending.discard(m.partition())
                continue
            out.append(m)
            if m.offset() + 1 >= ends[m.partition()]:
                pending.discard(m.partition())
    c.close()
    if pending:
        raise AssertionError(f"could not read {topic} to its end")
    return out


_ADMINS = {}


def admin_client(bootstrap):
    """One admin client per broker for the whole run: one dropped after a
    case can be garbage-collected on a librdkafka thread (by a future's
    callback), where destroying it crashes the interpreter."""
    from confluent_kafka.admin import AdminClient
    if bootstrap not in _ADMINS:
        _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
    return _ADMINS[bootstrap]


class BrokerRun:
    def __init__(self, case, bootstrap, tmp, guarantee, variant, seed):
        self.case, self.bootstrap, self.tmp = case, bootstrap, tmp
        self.guarantee, self.variant = guarantee, variant
        self.rnd = random.Random(seed)
        self.prefix = "fz" + uuid.uuid4().hex[:8] + "-"
        self.app = self.prefix + "fz"
        self.logs = []

    def setup(self):
        from confluent_kafka.admin import NewTopic
        a = admin_client(self.bootstrap)
        ins, outs = topics_of(self.case)
        parts = self.case["partitions"]
        fs = a.create_topics([NewTopic(self.prefix + t, parts, 1) for t in ins + outs])
        for f in fs.values():
            f.result(30)
        for t in ins + outs:  # leaders everywhere before anyone asks
            deadline = time.time() + 30
            while time.time() < deadline:
                tm = a.list_topics(self.prefix + t, timeout=10).topics.get(self.prefix + t)
                if tm and not tm.error and len(tm.partitions) == parts and \
                        all(p.leader >= 0 for p in tm.partitions.values()):
                    break
                time.sleep(0.1)
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for r in self.case["inputs"]:
            v = bytes.fromhex(r["value_hex"]) if r.get("value_hex") else \
                (None if r["value"] is None else r["value"].encode())
            p.produce(self.prefix + r["topic"], value=v, key=None if r["key"] is None else r["key"].encode(),
                      partition=r["partition"], timestamp=r["ts"])
        assert p.flush(30) == 0
        self.ins, self.outs = ins, outs
        self.script = os.path.join(self.tmp, self.prefix + "case.lua")
        with open(self.script, "w") as f:
            f.write(gen.render_lua(self.case, self.prefix))

    def args(self, bounded):
        a = [sproc_bin(), self.script, "--brokers", self.bootstrap, "--app", self.app,
             "--set", f"sproc.state.dir={self.tmp}/state-{self.prefix}",
             "--set", f"sproc.processing.guarantee={self.guarantee}", "--quiet"] + FAST
        return a + (["--until-end"] if bounded else [])

    def start(self, bounded, name):
        log = open(os.path.join(self.tmp, f"{self.prefix}{name}.log"), "wb")
        p = subprocess.Popen(self.args(bounded), stdout=subprocess.DEVNULL, stderr=log)
        p.log_path = log.name
        return p

    def committed(self):
        return sum(committed_total(self.bootstrap, self.app, self.prefix + t, self.case["partitions"])
                   for t in self.ins)

    def wait_all_committed(self, timeout=120):
        total = sum(1 for _ in self.case["inputs"])
        # several sources of one topic commit it once; inputs per topic
        want = len(self.case["inputs"])
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.committed() >= want:
                return True
            time.sleep(0.2)
        return total == 0

    def wait(self, p, timeout):
        """The process's exit code; a process still running after timeout
        is killed (its log says where it hung) and reads as exit -9."""
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return -9

    def run(self):
        self.setup()
        v = self.variant
        if v == "bounded":
            p = self.start(True, "bounded")
            rc = self.wait(p, 180)
            self.logs.append(open(p.log_path).read())
            if rc != 0:
                return None, f"exit {rc}: {self.logs[-1][-1500:]}"
        elif v == "continuous":
            p = self.start(False, "continuous")
            ok = self.wait_all_committed()
            p.send_signal(signal.SIGTERM)
            rc = self.wait(p, 60)
            self.logs.append(open(p.log_path).read())
            if not ok or rc != 0:
                return None, f"not committed to the end (exit {rc}): {self.logs[-1][-1500:]}"
        else:  # kills, then a second process joining, then a bounded run
            want = len(self.case["inputs"])
            for i in range(self.rnd.randrange(1, 3)):
                p = self.start(False, f"run{i}")
                goal = self.rnd.randrange(0, max(1, want))
                deadline = time.time() + 60
                while time.time() < deadline and self.committed() < goal:
                    time.sleep(0.05)
                time.sleep(self.rnd.uniform(0, 0.5))
                p.send_signal(signal.SIGKILL)
                p.wait()
                self.logs.append(open(p.log_path).read())
            a = self.start(False, "a")
            b = self.start(False, "b")
            self.wait_all_committed()
            for q in (a, b):
                q.send_signal(signal.SIGTERM)
                self.wait(q, 60)
                self.logs.append(open(q.log_path).read())
            p = self.start(True, "last")
            rc = self.wait(p, 180)
            self.logs.append(open(p.log_path).read())
            if rc != 0:
                return None, f"exit {rc}: {self.logs[-1][-1500:]}"
        outs = []
        for t in self.outs:
            for m in read_all(self.bootstrap, self.prefix + t):
                hdrs = {k: (v.decode("utf-8", "surrogateescape") if v is not None else None)
                        for k, v in (m.headers() or [])}
                outs.append({"topic": t,
                             "key": None if m.key() is None else m.key().decode("utf-8", "surrogateescape"),
                             "value": None if m.value() is None else m.value().decode("utf-8", "surrogateescape"),
                             "headers": hdrs})
        return outs, None
