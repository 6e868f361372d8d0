"""A runaway script (issue 19 #5): a map that never returns on the 1,000th
record is interrupted by the watchdog (sproc.script.timeout.ms) with the
script's file:line, and the error policy applies to that record; a script
whose Lua heap outgrows sproc.script.heap.max.bytes stops with a clear
error instead of meeting the kernel's OOM killer."""
import json
import re
import threading
import time
import urllib.request
from datetime import datetime, timezone

import pytest

from conftest import FAST, free_port, wait_until, write_script

LIMIT_MS = 2000
N = 3000

SCRIPT = """
local sproc = require "sproc"
local ffi = require "ffi"
ffi.cdef "typedef struct {{ long s, ns; }} wd_ts; int clock_gettime(int, wd_ts *);"
local ts = ffi.new("wd_ts")
sproc.app{{ errors = "{policy}" }}
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r)
    if r.value.n == 1000 then
      ffi.C.clock_gettime(0, ts)
      io.stderr:write(string.format("loop starts at %.3f\\n", tonumber(ts.s) + tonumber(ts.ns) / 1e9))
      local x = 0
      while true do x = x + 1 end
    end
    return {{ n = r.value.n }}
  end)
  :to{{ topic = "{dst}" }}
"""
LOOP_LINE = 13  # the while loop's line in SCRIPT


def log_time(line):
    stamp = line.split(" ", 1)[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_watchdog_interrupts_a_record_that_never_ends(kafka, sproc, tmp_path, policy):
    src = kafka.create("in")
    dst = kafka.create("out")
    kafka.produce("in", [(f"k{n}".encode(), {"n": n}) for n in range(1, N + 1)])
    script = write_script(tmp_path, "runaway.lua", SCRIPT.format(policy=policy, src=src, dst=dst))
    port = free_port()
    group = kafka.topic("app")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--until-end",
               "--metrics", f"127.0.0.1:{port}",
               "--set", f"sproc.script.timeout.ms={LIMIT_MS}"] + FAST)
    wait_until(lambda: "loop starts" in p.stderr() or not p.alive(), timeout=60,
               what="the runaway record", proc=p)
    # a scrape while the loop holds the process: answered once the
    # watchdog lets the loop go on (sproc serves metrics from its loop)
    answer = {}

    def scrape():
        t = time.time()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=LIMIT_MS / 1000 + 10) as r:
                answer["body"] = r.read().decode()
        except OSError as e:  # the fail policy ends the process first
            answer["error"] = e
        answer["waited"] = time.time() - t

    scraper = threading.Thread(target=scrape)
    scraper.start()
    rc = p.wait(120)
    scraper.join()
    err = p.stderr()
    started = float(re.search(r"loop starts at ([\d.]+)", err).group(1))
    line = next(x for x in err.splitlines() if "interrupted" in x)
    assert f"runaway.lua:{LOOP_LINE}: interrupted" in line, err
    late = log_time(line) - started
    print(f"{policy}: interrupted {late:.3f} s after the loop started (limit {LIMIT_MS} ms); "
          f"a scrape sent meanwhile waited {answer.get('waited', -1):.3f} s")
    assert LIMIT_MS / 1000 <= late + 0.01 and late <= LIMIT_MS / 1000 + 1, err
    assert "record: topic" in err and "offset 999" in err, err
    outs = sorted(json.loads(r["value"])["n"] for r in kafka.read("out"))
    committed = kafka.committed(group, "in")[0]
    if policy == "skip":
        assert "sproc_records_in_total" in answer.get("body", ""), answer
        assert rc == 0, err
        assert outs == [n for n in range(1, N + 1) if n != 1000]
        assert committed == N
    else:
        assert rc == 1, err
        # nothing from the record on is committed: a rerun starts at it
        assert committed <= 999, committed
        assert 1000 not in outs


HEAP_SCRIPT = """
local sproc = require "sproc"
local kept = {{}}
sproc.app{{ errors = "skip" }}
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r)
    -- a cache that is never emptied
    kept[#kept + 1] = string.rep(tostring(r.value.n), 10000)
    return {{ n = r.value.n }}
  end)
  :to{{ topic = "{dst}" }}
"""


def test_heap_cap_stops_a_script_that_keeps_growing(kafka, sproc, tmp_path):
    src = kafka.create("in")
    dst = kafka.create("out")
    kafka.produce("in", [(f"k{n}".encode(), {"n": n}) for n in range(1, 20_001)])
    script = write_script(tmp_path, "grows.lua", HEAP_SCRIPT.format(src=src, dst=dst))
    group = kafka.topic("app")
    cap = 64 << 20
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", group, "--until-end",
               "--set", f"sproc.script.heap.max.bytes={cap}"] + FAST)
    rc = p.wait(120)
    err = p.stderr()
    # whatever the policy: skipping records cannot give the memory back
    assert rc == 1, err
    assert f"Lua heap reached its cap of {cap} bytes (sproc.script.heap.max.bytes)" in err, err
    committed = kafka.committed(group, "in")[0]
    outs = kafka.count("out")
    # ~5,000 strings of 40-50 KB fit in 64 MiB
    assert 1000 < outs < 20_000 and committed <= outs, (outs, committed)


def test_waiting_for_kafka_is_not_script_time(kafka, sproc, tmp_path):
    """A record whose output waits for room in the producer's queue (a
    broker failing over, here a long linger on a 5-record queue) is not a
    record that keeps the script busy: before, a failover of more than
    sproc.script.timeout.ms stopped the process as if the script looped."""
    src = kafka.create("in")
    dst = kafka.create("out")
    n = 40
    kafka.produce("in", [(f"k{i}".encode(), {"n": i}) for i in range(n)])
    script = write_script(tmp_path, "waits.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r) return {{ n = r.value.n }} end)
  :to{{ topic = "{dst}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end",
               "--set", "sproc.script.timeout.ms=500", "--set", "linger.ms=1200",
               "--set", "queue.buffering.max.messages=5"] + FAST)
    rc = p.wait(120)
    err = p.stderr()
    assert rc == 0 and "interrupted" not in err, err
    assert sorted(json.loads(r["value"])["n"] for r in kafka.read("out")) == list(range(n))
