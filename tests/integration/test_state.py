"""State stores against the real broker: counts restored from the changelog
after SIGKILLs and restarts, and after a scale-out in which one process is
killed. At-least-once: outputs may repeat, but the state counts every
input once (a restore keeps only the changelog records of committed
input); exactly-once: each output once."""
import json
import os
import random
import time

import pytest
from confluent_kafka.admin import ConfigResource

from conftest import (FAST, LiveFeed, Probe, admin_client, assert_committed_to_end,
                      kill_in_open_transaction, wait_committed_to_end, wait_until,
                      write_script)

KEYS = 1000
KILLS = 7


def count_script(tmp_path, src, dst, work_us=0, guarantee="at_least_once", backend="memory"):
    return write_script(tmp_path, "count.lua", f"""
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "{guarantee}" }}
local counts = sproc.store{{ name = "counts", backend = "{backend}" }}
sproc.source{{ topic = "{src}" }}
  :map(function(r)
    local t = os.clock() + {work_us}e-6
    while os.clock() < t do end
    return {{ k = r.key, n = counts:incr(r.key), p = r.partition }}
  end)
  :to{{ topic = "{dst}" }}
""")


def produce_keys(kafka, n, seed):
    rnd = random.Random(seed)
    truth = {}
    recs = []
    for _ in range(n):
        k = f"key{rnd.randrange(KEYS)}"
        truth[k] = truth.get(k, 0) + 1
        recs.append((k.encode(), b"x"))
    kafka.produce("in", recs)
    return truth


def highest_counts(kafka):
    best = {}
    for r in kafka.read("out"):
        v = json.loads(r["value"])
        best[v["k"]] = max(best.get(v["k"], 0), v["n"])
    return best


def assert_state_counts_exact(best, truth, log=""):
    """At-least-once: outputs may repeat, but each key's highest count (its
    state's last value) is the truth: no input counted twice."""
    missing = sorted(set(truth) - set(best))
    assert not missing, f"keys without a count: {missing[:10]}\n{log[-3000:]}"
    wrong = {k: (best[k], truth[k]) for k in truth if best[k] != truth[k]}
    high = sum(1 for got, true in wrong.values() if got > true)
    assert not wrong, f"{len(wrong)} counts not the truth ({high} above it; got, true): " \
                      f"{dict(list(wrong.items())[:10])}\n{log[-3000:]}"


def assert_exact_counts(kafka, truth, log):
    """read_committed: each key's counts are 1..truth, each exactly once."""
    seen = {}
    for r in kafka.read("out", isolation="read_committed"):
        v = json.loads(r["value"])
        seen.setdefault(v["k"], []).append(v["n"])
    wrong = {k: (len(seen.get(k, [])), truth[k]) for k in truth
             if sorted(seen.get(k, [])) != list(range(1, truth[k] + 1))}
    assert not wrong, f"{len(wrong)} keys whose counts are not exactly 1..truth " \
                      f"(outputs, true count): {dict(list(wrong.items())[:10])}\n{log[-3000:]}"


@pytest.mark.parametrize("guarantee,backend", [("at_least_once", "memory"),
                                               ("at_least_once", "lmdb"),
                                               ("exactly_once", "memory")])
def test_counts_survive_repeated_kills(kafka, sproc, tmp_path, guarantee, backend):
    n = 1_000_000
    seed = int(os.environ.get("SPROC_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    kafka.create("in", partitions=4)
    kafka.create("out", partitions=4)
    truth = produce_keys(kafka, n, seed)
    group = kafka.topic("app")
    script = count_script(tmp_path, kafka.topic("in"), kafka.topic("out"), work_us=8,
                          guarantee=guarantee, backend=backend)
    # static membership: a restarted process takes its partitions back
    # without waiting for the session of the killed one to time out
    args = [script, "--brokers", kafka.bootstrap, "--app", group] + FAST + \
           ["--set", "group.instance.id=" + group + "-1"]
    rnd = random.Random(seed)
    marks = sorted(rnd.uniform(0.1, 0.75) for _ in range(KILLS))

    probe = Probe(kafka, group, "in", "out")
    eos = guarantee == "exactly_once"
    logs = []
    seen = 0
    open_txns = 0
    for i, mark in enumerate(marks):
        p = sproc(args, name=f"run{i}")
        # each run makes progress of its own (committed input: outputs also
        # count aborted ones) before it is killed, and under exactly-once the
        # kill lands while a transaction has outputs in Kafka
        goal = min(max(mark * n, seen + 0.03 * n), 0.85 * n)
        what = f"{goal:.0f} inputs committed{' and an open transaction' if eos else ''} " \
               f"before kill {i + 1}"
        if eos:
            pending = kill_in_open_transaction(p, lambda: probe.committed() >= goal, [probe],
                                               what=what)[0]
        else:
            wait_until(lambda: probe.committed() >= goal, timeout=180, interval=0.01, what=what)
            p.kill()
        seen = probe.committed()
        if eos:
            # what the killed process left in an open transaction
            print(f"kill {i + 1} at {seen} inputs committed (mark {mark:.2f}): {pending} "
                  f"outputs of an open transaction")
            open_txns += pending > 0
        else:
            print(f"kill {i + 1} at {seen} inputs committed (mark {mark:.2f})")
        logs.append(p.stderr())
    probe.close()
    last = sproc(args + ["--until-end"], name="last")
    assert last.wait(timeout=300) == 0, last.stderr()
    logs.append(last.stderr())
    log = "\n".join(logs)
    assert_committed_to_end(kafka, group, "in")
    if eos:
        assert_exact_counts(kafka, truth, log)
        assert "exactly-once" in log
        assert open_txns == KILLS, f"only {open_txns} of {KILLS} kills hit an open transaction"
    else:
        assert_state_counts_exact(highest_counts(kafka), truth, log)
        print(f"{kafka.count('out') - n} outputs repeated, 0 inputs counted twice in state")
    assert "restored store counts" in log, "a restart restored from the changelog"


# issue 14 #4: a killed process's abandoned transaction (dynamic membership:
# no successor fences it) holds the changelog's last stable offset back
# until the broker aborts it, while its successor's transactions commit
# after it. A third process restored only to that offset: with an LMDB
# store, whose changelog writes are in every transaction, counts went
# backwards. Transactions are kept open for 30 s here so that each restart
# restores while its predecessors' are still open.
@pytest.mark.parametrize("backend", ["memory", "lmdb"])
def test_exactly_once_kills_with_live_input_and_dynamic_membership(kafka, sproc, tmp_path,
                                                                    backend):
    rate, kills = 5_000, 5
    seed = int(os.environ.get("SPROC_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    kafka.create("in", partitions=8)
    kafka.create("out", partitions=8)
    group = kafka.topic("app")
    script = count_script(tmp_path, kafka.topic("in"), kafka.topic("out"),
                          guarantee="exactly_once", backend=backend)
    args = [script, "--brokers", kafka.bootstrap, "--app", group,
            "--set", f"sproc.state.dir={tmp_path / 'state'}",
            "--set", "transaction.timeout.ms=30000"] + FAST
    feed = LiveFeed(kafka, rate, seed, 1000)
    feed.start()
    probe = Probe(kafka, group, "in", "out")
    changelog = None
    rnd = random.Random(seed)
    logs = []
    for i in range(kills):
        p = sproc(args, name=f"run{i}")
        start = probe.committed()
        if backend == "lmdb" and changelog is None:
            wait_until(lambda: "created changelog topic" in p.stderr(), timeout=60,
                       what="the changelog topic")
            changelog = Probe(kafka, group, "in", "app-counts-changelog")
        # progress of its own committed, then a kill at a random point while
        # a transaction holds outputs (and changelog writes)
        goal = start + rnd.randrange(1000, 20000)
        kill_in_open_transaction(p, lambda: probe.committed() >= goal,
                                 [probe] + ([changelog] if changelog else []),
                                 timeout=120, what=f"progress before kill {i + 1}")
        print(f"kill {i + 1} at {probe.committed()} inputs committed, {feed.sent} sent")
        logs.append(p.stderr())
    assert feed.is_alive(), feed.error
    feed.stop()
    assert feed.error is None, feed.error
    probe.close()
    if changelog:
        changelog.close()
    last = sproc(args + ["--until-end"], name="last")
    assert last.wait(timeout=300) == 0, last.stderr()
    logs.append(last.stderr())
    log = "\n".join(logs)
    assert_committed_to_end(kafka, group, "in")
    wait_until(lambda: kafka.open_transaction_records("out") == 0, timeout=90,
               interval=0.5, what="the killed processes' transactions aborted")
    assert_exact_counts(kafka, feed.truth, log)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_survivor_restores_the_state_of_a_killed_peer(kafka, sproc, tmp_path, guarantee):
    n = 200_000
    kafka.create("in", partitions=8)
    kafka.create("out", partitions=8)
    truth = produce_keys(kafka, n, 7)
    group = kafka.topic("app")
    script = count_script(tmp_path, kafka.topic("in"), kafka.topic("out"), work_us=20,
                          guarantee=guarantee)
    args = [script, "--brokers", kafka.bootstrap, "--app", group] + FAST
    a = sproc(args, name="a")
    b = sproc(args, name="b")
    wait_until(lambda: "assigned" in a.stderr() and "assigned" in b.stderr(), timeout=60,
               what="both processes assigned")
    wait_until(lambda: kafka.count("out") >= 0.3 * n, timeout=180, what="30% of the output")
    assert kafka.count("out") <= 0.8 * n, "too fast to catch mid-run"
    b.kill()
    wait_committed_to_end(kafka, group, "in", proc=a)
    assert "restored store counts" in a.stderr(), a.stderr()
    if guarantee == "exactly_once":
        # b's abandoned transaction holds read_committed readers back until
        # the broker aborts it (transaction.timeout.ms, 10 s)
        wait_until(lambda: kafka.open_transaction_records("out") == 0, timeout=60,
                   interval=0.5, what="the killed process's transaction aborted")
        # what a single process would have output: each count once
        assert_exact_counts(kafka, truth, a.stderr())
    else:
        assert_state_counts_exact(highest_counts(kafka), truth, a.stderr())
    assert a.alive()


def test_checkpoint_restores_the_tail_and_a_corrupt_one_is_ignored(kafka, sproc, tmp_path):
    kafka.create("in", partitions=2)
    kafka.create("out", partitions=2)
    group = kafka.topic("app")
    state = tmp_path / "state"
    script = count_script(tmp_path, kafka.topic("in"), kafka.topic("out"))
    args = [script, "--brokers", kafka.bootstrap, "--app", group, "--until-end",
            "--set", f"sproc.state.dir={state}"] + FAST
    truth = {}

    def run_more(seed, name):
        for k, v in produce_keys(kafka, 20_000, seed).items():
            truth[k] = truth.get(k, 0) + v
        p = sproc(args, name=name)
        assert p.wait(120) == 0, p.stderr()
        return p.stderr()

    run_more(1, "first")
    assert sorted(os.listdir(state)) == ["counts.0.ckpt", "counts.1.ckpt"]
    log = run_more(2, "second")
    assert "from its checkpoint" in log, log
    # a truncated checkpoint is ignored with a warning; the changelog has all
    ck = state / "counts.0.ckpt"
    ck.write_bytes(ck.read_bytes()[:-20])
    log = run_more(3, "third")
    assert "ignoring checkpoint" in log, log
    best = highest_counts(kafka)
    assert best == truth


def test_changelog_gets_each_key_once_between_commits(kafka, sproc, tmp_path):
    """Between two commits a store's changelog gets one record per changed
    key, and none for a key put and deleted again (a window that opened
    and closed): what Kafka Streams' record cache does. The state restored
    from it is still the whole truth."""
    kafka.create("in", partitions=2)
    kafka.create("out", partitions=2)
    n = 20_000
    # 50 keys, in timestamp order 10 ms apart: 1-second tumbling windows
    # open and close all through the run
    kafka.produce("in", ((f"k{i % 50}".encode(), json.dumps({"t": 1_000_000 + 10 * i}))
                         for i in range(n)))
    group = kafka.topic("app")
    script = write_script(tmp_path, "dedupe.lua", f"""
local sproc = require "sproc"
local counts = sproc.store{{ name = "counts" }}
local s = sproc.source{{ topic = "{kafka.topic('in')}", value = "json",
                        time = function(r) return r.value.t end }}
s:each(function(r) counts:incr(r.key) end)
s:window(sproc.window.tumbling{{ size = "1s", grace = 0 }})
 :aggregate{{ n = sproc.agg.count(), name = "w" }}
 :to{{ topic = "{kafka.topic('out')}" }}
""")
    # one commit, at the end of the bounded run
    args = [script, "--brokers", kafka.bootstrap, "--app", group, "--until-end",
            "--set", "sproc.state.dir="] + FAST + ["--set", "sproc.commit.interval.ms=600000"]
    p = sproc(args, name="first")
    assert p.wait(120) == 0, p.stderr()
    assert_committed_to_end(kafka, group, "in")
    changelog = kafka.read("app-counts-changelog")
    assert len(changelog) == 50, f"{len(changelog)} changelog records for 50 keys"
    # compacted, but a key's superseded records stay an hour: an
    # at-least-once restore may go back to one
    res = ConfigResource(ConfigResource.Type.TOPIC, kafka.topic("app-counts-changelog"))
    cfg = admin_client(kafka.bootstrap).describe_configs([res])[res].result()
    assert (cfg["cleanup.policy"].value, cfg["min.compaction.lag.ms"].value) == \
        ("compact", "3600000")
    # 200 s of event time: 10,000 windows of two records each, every one
    # opened and closed between the commits; what is left is each
    # partition's stream time
    out = [json.loads(r["value"]) for r in kafka.read("out")]
    assert len(out) == n // 2 and all(v["n"] == 2 for v in out)
    windows = kafka.read("app-w-changelog")
    assert len(windows) <= 4, f"{len(windows)} window changelog records"
    # a restart restores the counts from the changelog and goes on
    kafka.produce("in", ((f"k{i}".encode(), json.dumps({"t": 2_000_000})) for i in range(50)))
    script2 = write_script(tmp_path, "check.lua", f"""
local sproc = require "sproc"
local counts = sproc.store{{ name = "counts" }}
sproc.source{{ topic = "{kafka.topic('in')}" }}
  :map(function(r) return tostring(counts:incr(r.key)) end)
  :to{{ topic = "{kafka.topic('out')}-2" }}
""")
    kafka.create("out-2", partitions=1)
    p = sproc([script2, "--brokers", kafka.bootstrap, "--app", group, "--until-end",
               "--set", "sproc.state.dir="] + FAST, name="second")
    assert p.wait(120) == 0, p.stderr()
    got = sorted(int(r["value"]) for r in kafka.read("out-2"))
    assert got == [n // 50 + 1] * 50, got[:10]


@pytest.mark.parametrize("guarantee,backend", [("at_least_once", "memory"),
                                               ("at_least_once", "lmdb"),
                                               ("exactly_once", "memory"),
                                               ("exactly_once", "lmdb")])
def test_offsets_rewound_behind_the_state(kafka, sproc, tmp_path, guarantee, backend):
    """The group's offsets set back (an offset reset) while the local
    checkpoint (or the kept LMDB) and the changelog hold the state of
    later input: the state
    is restored to the offsets, not counted on from. Exactly-once commits
    offsets in the transaction that writes the changelog, so offsets older
    than the committed changelog may also be a stale read (a group
    coordinator not caught up after a failover: going on would count
    committed input twice): sproc reads them again for 15 s, then takes
    them as a rewind, and each key counts 1..n again."""
    from confluent_kafka import Consumer, TopicPartition
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2)
    truth = produce_keys(kafka, 2000, 5)
    app = kafka.topic("app")
    args = [count_script(tmp_path, src, dst, guarantee=guarantee, backend=backend), "--brokers",
            kafka.bootstrap, "--app", app] + FAST
    p = sproc(args, name="first")
    wait_committed_to_end(kafka, app, "in", proc=p)
    p.signal(15)
    assert p.wait(60) == 0, p.stderr()
    # the group's offsets go back to the start; the changelog stays
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": app})
    c.commit(offsets=[TopicPartition(src, part, 0) for part in (0, 1)], asynchronous=False)
    c.close()
    p = sproc(args, name="second")
    if guarantee == "at_least_once":
        wait_committed_to_end(kafka, app, "in", proc=p)
        log = p.stderr()
        assert_state_counts_exact(highest_counts(kafka), truth, log)
        assert "is ahead of the group's committed offsets" in log, log
        return
    wait_until(lambda: "taken as a rewind" in p.stderr(), timeout=60, proc=p,
               what="the offsets taken as a rewind")
    wait_committed_to_end(kafka, app, "in", proc=p)
    log = p.stderr()
    assert "older than its committed changelog" in log and p.alive(), log
    # every key's counts twice 1..n: the second time from the rewound state
    seen = {}
    for r in kafka.read("out", isolation="read_committed"):
        v = json.loads(r["value"])
        seen.setdefault(v["k"], []).append(v["n"])
    wrong = {k: n for k, n in truth.items() if sorted(seen.get(k, [])) != sorted(list(range(1, n + 1)) * 2)}
    assert not wrong, f"{len(wrong)} keys not counted 1..n twice\n{log[-3000:]}"


def test_exactly_once_recovers_in_process_from_committed_offsets(kafka, sproc, tmp_path):
    """An output Kafka refuses (too large for its topic) makes the open
    transaction abortable: sproc aborts it and goes on from the last
    committed transaction in the same process. The group had committed
    offsets before the start, so the partitions were assigned at explicit
    offsets: the recovery must start from the offsets committed since,
    not from those (it once did, counting most input twice)."""
    from confluent_kafka import Consumer, TopicPartition
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2, config={"max.message.bytes": "1000000"})
    truth = produce_keys(kafka, 1500, 9)
    boom_at = kafka.end_offsets("in")[0]  # in the second half, after commits
    app = kafka.topic("app")
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": app})
    c.commit(offsets=[TopicPartition(src, part, 0) for part in (0, 1)], asynchronous=False)
    c.close()
    script = write_script(tmp_path, "boom.lua", f"""
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "exactly_once" }}
local counts = sproc.store{{ name = "counts" }}
local boom = true
sproc.source{{ topic = "{src}" }}
  :map(function(r)
    local n = counts:incr(r.key)
    if boom and r.partition == 0 and r.offset >= {boom_at} then
      boom = false  -- once: the records are processed again after the abort
      return {{ k = r.key, n = n, pad = string.rep("x", 1100000) }}
    end
    return {{ k = r.key, n = n }}
  end)
  :to{{ topic = "{dst}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app,
               "--set", "message.max.bytes=3000000"] + FAST, name="boom")
    wait_committed_to_end(kafka, app, "in", proc=p)
    for k, n in produce_keys(kafka, 1500, 10).items():
        truth[k] = truth.get(k, 0) + n
    wait_committed_to_end(kafka, app, "in", proc=p)
    log = p.stderr()
    assert "transaction aborted" in log and p.alive(), log
    assert_exact_counts(kafka, truth, log)
