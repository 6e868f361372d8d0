"""sproc tap: a live sample of an operator's records from a running
pipeline (every process of it), rate-limited, with key, value, time,
partition and offset; records entering an operator or leaving it."""
import json
import subprocess
import threading
import time
import urllib.request

from confluent_kafka import Producer

from conftest import SPROC, free_port, wait_until, write_script

SCRIPT = """
local sproc = require "sproc"
sproc.app{ id = "%(app)s" }
sproc.source{ topic = "%(input)s", value = "json" }
  :filter(function(r) return r.value.n %% 2 == 0 end)
  :map(function(r) return { n = r.value.n, double = r.value.n * 2 } end)
  :to{ topic = "%(out)s" }
"""


class Feed(threading.Thread):
    """{"n": i} under keys k0..k49 at about rate records a second, until stop()."""

    def __init__(self, kafka, rate):
        super().__init__(daemon=True)
        self.kafka, self.rate, self.stopping = kafka, rate, threading.Event()

    def run(self):
        prod = Producer({"bootstrap.servers": self.kafka.bootstrap, "linger.ms": 5})
        t0, i = time.time(), 0
        while not self.stopping.is_set():
            for _ in range(50):
                prod.produce(self.kafka.topic("in"), key=f"k{i % 50}", value=json.dumps({"n": i}))
                i += 1
            prod.poll(0)
            ahead = t0 + i / self.rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        prod.flush(30)

    def stop(self):
        self.stopping.set()
        self.join()


def ready(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5).status == 200
    except OSError:
        return False


def tap(args, timeout=60):
    r = subprocess.run([SPROC, "tap"] + args, capture_output=True, text=True, timeout=timeout)
    return r.returncode, [json.loads(l) for l in r.stdout.splitlines() if l.strip()], r.stderr


def start(kafka, sproc, tmp_path, procs=1):
    input_topic = kafka.create("in", partitions=4)
    out = kafka.create("out", partitions=4)
    app = kafka.topic("app")
    write_script(tmp_path, "tap.lua", SCRIPT % {"app": app, "input": input_topic, "out": out})
    ports, ps = [], []
    for _ in range(procs):
        port = free_port()
        ports.append(port)
        ps.append(sproc(["tap.lua", "--brokers", kafka.bootstrap, "--metrics", f"127.0.0.1:{port}"]))
    for port, p in zip(ports, ps):
        wait_until(lambda: ready(port), what="ready", proc=p)
    return app, ports, ps


def test_tap_shows_records_entering_and_leaving_an_operator(kafka, sproc, tmp_path):
    app, ports, ps = start(kafka, sproc, tmp_path, procs=2)
    wait_until(lambda: all(json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{p}/state").read())["members"] for p in ports), what="members")
    feed = Feed(kafka, rate=2000)
    feed.start()
    try:
        # the names sproc describe prints
        described = subprocess.run([SPROC, "describe", str(tmp_path / "tap.lua")], capture_output=True,
                                   text=True).stdout
        assert "[filter#2]" in described and "[map#3]" in described, described
        rc, names, err = tap(["--app", app, "--brokers", kafka.bootstrap])
        assert rc == 0, err
        assert names[0]["operators"] == ["source:" + kafka.topic("in"), "filter#2", "map#3",
                                         "to:" + kafka.topic("out") + "#4"]

        # entering the filter: every record, odd and even
        rc, got, err = tap(["--app", app, "--brokers", kafka.bootstrap, "filter#2", "--rate", "200",
                            "--max", "60"])
        assert rc == 0, err
        assert len(got) == 60
        assert {g["operator"] for g in got} == {"filter#2"}
        assert {g["value"]["n"] % 2 for g in got} == {0, 1}, "the filter's input has odd numbers too"
        for g in got:
            assert g["key"] == f"k{g['value']['n'] % 50}", g
            assert g["ts"] > 0 and 0 <= g["partition"] < 4 and g["offset"] >= 0, g
        # both processes sample the partitions they hold
        assert len({g["partition"] for g in got}) > 1

        # leaving the filter (entering map): even numbers only
        rc, got, err = tap(["--app", app, "--brokers", kafka.bootstrap, "filter#2", "--out", "--rate",
                            "200", "--max", "40"])
        assert rc == 0, err
        assert len(got) == 40 and {g["value"]["n"] % 2 for g in got} == {0}
        # leaving the map: its new value
        rc, got, err = tap(["--app", app, "--brokers", kafka.bootstrap, "map#3", "--out", "--max", "20",
                            "--rate", "200"])
        assert rc == 0, err
        assert all(g["value"]["double"] == 2 * g["value"]["n"] for g in got), got[:3]

        # rate-limited: 5 a second from each of two processes, for about 3 s
        t0 = time.time()
        try:
            subprocess.run([SPROC, "tap", "--app", app, "--brokers", kafka.bootstrap, "filter#2",
                            "--rate", "5"], capture_output=True, text=True, timeout=3)
            assert False, "a tap without --max runs until stopped"
        except subprocess.TimeoutExpired as e:
            lines = [l for l in (e.stdout or b"").decode().splitlines() if l.strip()]
        took = time.time() - t0
        assert 0 < len(lines) <= 2 * 5 * (took + 1), f"{len(lines)} lines in {took:.1f} s"

        # mistakes: an operator that does not exist
        rc, _, err = tap(["--app", app, "--brokers", kafka.bootstrap, "nosuch#9"])
        assert rc == 1 and "no operator named nosuch#9" in err, err
    finally:
        feed.stop()
    # the pipeline itself was not disturbed: every even record written once
    for p in ps:
        assert p.alive(), p.stderr()[-2000:]


def test_a_reader_that_goes_away_closes_its_tap(kafka, sproc, tmp_path):
    app, ports, ps = start(kafka, sproc, tmp_path)
    feed = Feed(kafka, rate=1000)
    feed.start()
    try:
        # a reader that stops reading: its connection closes, the tap goes
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/tap/filter%232?rate=50") as r:
            first = r.readline()
            assert json.loads(first)["operator"] == "filter#2"
        wait_until(lambda: "tap on filter#2 closed" in ps[0].stderr(), timeout=30,
                   what="the tap noticed closed", proc=ps[0])
        # the operators' allowances are back to none: nothing is sampled
        m = urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/tap").read()
        assert json.loads(m)["operators"]
    finally:
        feed.stop()
    assert ps[0].alive()


def test_a_tap_keeps_up_with_its_rate_and_stopping_with_one_open_exits_cleanly(kafka, sproc, tmp_path):
    import signal
    import threading
    app, ports, ps = start(kafka, sproc, tmp_path)
    feed = Feed(kafka, rate=4000)
    feed.start()
    try:
        # 1,000 a second asked for, from a pipeline taking 4,000 a second:
        # the stream must carry them (MHD was run once a second for a
        # resumed stream: one 32 KB chunk, about 250 lines, a second)
        t0 = time.time()
        rc, got, err = tap(["--at", f"127.0.0.1:{ports[0]}", "filter#2", "--rate", "1000", "--max", "3000"])
        took = time.time() - t0
        assert rc == 0 and len(got) == 3000, err
        assert took < 6, f"3,000 lines at 1,000 a second took {took:.1f} s"
    finally:
        feed.stop()
    # a tap asked for while sproc stops: it must not abort the stop
    # (a stream suspended at once made MHD_stop_daemon abort)
    ps[0].signal(signal.SIGSTOP)
    answers = []
    def ask():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/tap/filter%232", timeout=30) as r:
                answers.append(r.read())
        except OSError as e:
            answers.append(e)
    t = threading.Thread(target=ask)
    t.start()
    time.sleep(0.5)
    ps[0].signal(signal.SIGTERM)
    ps[0].signal(signal.SIGCONT)
    assert ps[0].wait(timeout=60) == 0, ps[0].stderr()[-2000:]
    t.join(30)
