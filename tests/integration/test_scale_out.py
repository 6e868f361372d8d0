"""Two sproc processes in one group share an 8-partition topic; one is
killed (SIGKILL) mid-stream and the other takes over its partitions. Every
input has its output at least once, compared by payload."""
import json
import time

from conftest import FAST, assert_same_payloads, wait_committed_to_end, wait_until, write_script

N = 400_000


def test_two_processes_share_and_survive_a_kill(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=8)
    dst = kafka.create("out", partitions=8)
    kafka.produce("in", [(f"key{i % 5003}".encode(), {"i": i}) for i in range(N)])
    script = write_script(tmp_path, "so.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r)
    local t = os.clock() + 20e-6   -- some work, so the run can be observed
    while os.clock() < t do end
    return {{ i = r.value.i, p = r.partition }}
  end)
  :to{{ topic = "{dst}" }}
""")
    args = [script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app")] + FAST
    a = sproc(args, name="a")
    b = sproc(args, name="b")
    # both own partitions before the fault
    wait_until(lambda: "assigned" in a.stderr() and "assigned" in b.stderr(), timeout=60,
               what="both processes assigned")

    def parts_seen():
        return {json.loads(r["value"])["p"] for r in kafka.read("out")}
    wait_until(lambda: kafka.count("out") >= 0.2 * N, timeout=180, what="20% of the output")
    assert kafka.count("out") <= 0.8 * N, "too fast to catch mid-run"
    b.kill()
    # the survivor finishes everything
    wait_committed_to_end(kafka, kafka.topic("app"), "in", proc=a)
    seen = [json.loads(r["value"])["i"] for r in kafka.read("out")]
    assert_same_payloads(seen, range(N), a.stderr())
    assert a.alive()
    assert "revoked" in a.stderr() or a.stderr().count("assigned") >= 2, "a took over b's partitions"
    assert parts_seen() == set(range(8))


def test_an_idle_pipeline_stays_in_its_group(kafka, sproc, tmp_path):
    """With nothing to read, sproc still polls its consumer: librdkafka
    counts max.poll.interval.ms from the last poll, and an idle pipeline
    left its group (MAXPOLL, a rebalance) every interval, 5 minutes by
    default. Here the interval is 7 s and the input stays empty for
    three of them: the time the defect takes to show, not a wait for
    progress."""
    src = kafka.create("in")
    script = write_script(tmp_path, "idle.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{src}" }}:each(function(r) end)
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"),
               "--set", "max.poll.interval.ms=7000"] + FAST)
    wait_until(lambda: "assigned" in p.stderr(), timeout=60, what="assignment", proc=p)
    time.sleep(21)
    log = p.stderr()
    assert "MAXPOLL" not in log and "lost" not in log and log.count("assigned") == 1, log
