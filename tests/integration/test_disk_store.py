"""A disk-backed (LMDB) store holding far more than the memory budget:
1M keys of 1 KiB against a 64 MiB budget, RSS sampled while it fills, and
every value read back by a second run that keeps the store on disk.
SPROC_DISK_KEYS changes the key count (scripts/disk-soak runs 10M)."""
import os
import re
import time

from conftest import FAST, write_script

KEYS = int(os.environ.get("SPROC_DISK_KEYS", "1000000"))
BUDGET = 64 * 1024 * 1024


def memory_kib(pid):
    """VmRSS, RssAnon and RssFile of a process, in KiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in ("VmRSS", "RssAnon", "RssFile"):
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out


def run_sampling(p, timeout):
    peak = {}
    deadline = time.time() + timeout
    while p.proc.poll() is None and time.time() < deadline:
        for k, v in memory_kib(p.proc.pid).items():
            peak[k] = max(peak.get(k, 0), v)
        time.sleep(0.2)
    print("peak memory (KiB):", peak)
    return p.wait(timeout=60), peak.get("VmRSS", 0)


def test_disk_store_beyond_the_memory_budget(kafka, sproc, tmp_path):
    kafka.create("in", partitions=4)
    kafka.create("check", partitions=4)
    kafka.create("bad", partitions=1)
    keys = tmp_path / "keys.txt"
    with open(keys, "w") as f:
        for i in range(KEYS):
            f.write(f"k{i}\n")
    feed = write_script(tmp_path, "feed.lua", f"""
local sproc = require "sproc"
sproc.source{{ file = "{keys}" }}
  :key_by(function(r) return r.value end)
  :to{{ topic = os.getenv("FEED_TOPIC") }}
""")
    script = write_script(tmp_path, "disk.lua", f"""
local sproc = require "sproc"
local big = sproc.store{{ name = "big", backend = "lmdb" }}
local function value_of(key)   -- 1 KiB, different for every key
  local unit = key .. ":"
  return (unit:rep(math.ceil(1024 / #unit))):sub(1, 1024)
end
sproc.source{{ topic = "{kafka.topic('in')}" }}
  :each(function(r) assert(big:put(r.key, value_of(r.key))) end)
sproc.source{{ topic = "{kafka.topic('check')}" }}
  :filter(function(r) return big:get(r.key) ~= value_of(r.key) end)
  :to{{ topic = "{kafka.topic('bad')}" }}
""")
    state = tmp_path / "state"
    args = [script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end",
            "--set", f"sproc.state.dir={state}", "--set", f"sproc.state.max.bytes={BUDGET}",
            # the changelog's producer queue is memory too
            "--set", "producer.queue.buffering.max.kbytes=65536"] + FAST
    f = sproc([feed, "--brokers", kafka.bootstrap, "--app", kafka.topic("feed"), "--until-end"],
              env={"FEED_TOPIC": kafka.topic("in")}, name="feed")
    assert f.wait(300) == 0, f.stderr()

    fill = sproc(args, name="fill")
    rc, peak = run_sampling(fill, 900)
    assert rc == 0, fill.stderr()
    data = state / "big.lmdb" / "data.mdb"
    on_disk = os.stat(data).st_blocks * 512
    print(f"{KEYS} keys of 1 KiB: {on_disk / 2**20:.0f} MiB on disk, "
          f"peak RSS {peak / 1024:.0f} MiB, memory budget {BUDGET / 2**20:.0f} MiB")
    if KEYS >= 1_000_000:
        assert on_disk >= 10 * BUDGET, "the state is at least 10 times the memory budget"
    # bounded: far below the state it holds, and the same for any size
    assert peak * 1024 < on_disk / 3, f"peak RSS {peak} KiB for {on_disk} bytes of state"
    assert peak < 320 * 1024, f"peak RSS {peak} KiB"

    f = sproc([feed, "--brokers", kafka.bootstrap, "--app", kafka.topic("feed2"), "--until-end"],
              env={"FEED_TOPIC": kafka.topic("check")}, name="feed2")
    assert f.wait(300) == 0, f.stderr()
    check = sproc(args, name="check")
    rc, _ = run_sampling(check, 900)
    log = check.stderr()
    assert rc == 0, log
    # the store was kept on disk: only the changelog's tail was read
    assert "on disk, kept" in log or "nothing in the changelog" in log or "restor" not in log, log
    done = re.search(r"done: (\d+) records in, (\d+) out, (\d+) filtered", log)
    assert done, log
    assert (int(done.group(1)), int(done.group(2)), int(done.group(3))) == (KEYS, 0, KEYS), \
        f"every value read back equal: {done.group(0)}"
