"""Interactive queries over the --metrics HTTP server: /state lists a
process's stores and the group's members, /state/STORE/KEY answers a key
of a table or an aggregation's open windows from the process that holds
the key's partition (a 307 to it from any other), 503 while that
partition's state is restored, and /state/STORE answers the local
partitions' entries in key order. Two processes of one application over 8
partitions answer every key as it is computed here from the input, through
either of them; a process being restored answers 503 or the right value,
never a wrong one; the survivor of a kill answers every key once it holds
every partition; `sproc query` prints the same answers."""
import http.client
import json
import random
import re
import subprocess
import threading
import time
import urllib.parse
from collections import Counter

from conftest import FAST, SPROC, free_port, wait_committed_to_end, write_script
from test_partitioner import java_partition

PARTS = 8
HOUR = 3_600_000
WINDOW_KEYS = 300
RECORDS = 20_000
VENDORS = 200


# --- HTTP -----------------------------------------------------------------

def http_get(address, path, timeout=10):
    """One GET to HOST:PORT, no redirect followed: (status, headers with
    lower-case names, body text); status None when nothing answers."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    except OSError:
        return None, {}, ""
    finally:
        conn.close()


def as_json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def query(address, path, timeout=10):
    """A GET that follows 307s as a client would: (status, JSON answer or
    None, [(address, location) of each redirect], text of the answer)."""
    hops = []
    for _ in range(5):
        status, headers, body = http_get(address, path, timeout)
        if status not in (307, 308):
            return status, as_json(body), hops, body
        loc = headers.get("location")
        assert loc, f"GET http://{address}{path}: {status} without a Location header"
        u = urllib.parse.urlsplit(loc)
        assert u.scheme == "http" and u.netloc, f"GET http://{address}{path}: Location {loc!r}"
        hops.append((address, loc))
        address, path = u.netloc, u.path + (f"?{u.query}" if u.query else "")
    raise AssertionError(f"redirect loop: {hops}")


def key_path(store, key, **params):
    q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"/state/{urllib.parse.quote(store, safe='')}/{urllib.parse.quote(key, safe='')}" + \
        (f"?{q}" if q else "")


def ready(address):
    return http_get(address, "/health/ready", timeout=5)[0] == 200


def state(address):
    status, _, body = http_get(address, "/state", timeout=5)
    return as_json(body) if status == 200 else None


def store_view(view, name):
    for s in (view or {}).get("stores", []):
        if s.get("name") == name:
            return s
    return None


def poll(check, timeout, what, procs=()):
    """Polls check() -> (done, detail) until done; a timeout's error shows
    the last detail and the tail of each process's log."""
    deadline = time.time() + timeout
    detail = None
    while time.time() < deadline:
        for p in procs:
            assert p.alive(), f"a process died while waiting for {what}\n{p.stderr()[-4000:]}"
        done, detail = check()
        if done:
            return detail
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.log_path.name}\n{p.stderr()[-2500:]}" for p in procs)
    shown = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: "
                         f"{shown[:3000]}\n{tails}")


# --- the application ------------------------------------------------------

class App:
    """Two topics of 8 partitions with known contents, and the script of
    an application that keeps a table of one and an hour's tumbling count
    and sum per key of the other."""

    def __init__(self, kafka, tmp_path, seed=17):
        self.kafka = kafka
        self.app = kafka.topic("app")
        self.in_topic = kafka.create("in", partitions=PARTS)
        self.table_topic = kafka.create("vendors", partitions=PARTS,
                                        config={"cleanup.policy": "compact"})
        rnd = random.Random(seed)
        # every record in one window, the previous whole hour: it stays open
        # (stream time never passes its end, let alone plus grace)
        self.base = (int(time.time() * 1000) // HOUR - 1) * HOUR
        self.windows = {}  # key -> [count, sum]
        recs = []
        for i in range(RECORDS):
            k = f"k-{rnd.randrange(WINDOW_KEYS)}"
            amount = rnd.randrange(1, 100)
            w = self.windows.setdefault(k, [0, 0])
            w[0] += 1
            w[1] += amount
            recs.append((k.encode(), {"amount": amount, "i": i}, None, self.base + i * 100))
        kafka.produce("in", recs)
        # vendors: all written once, 60 updated, 20 of those twice, 15
        # deleted with a tombstone (some after updates)
        self.table = {}  # key -> (value, ts)
        self.deleted = set()
        trecs = []
        ts = self.base

        def put(k, v):
            nonlocal ts
            ts += 1
            trecs.append((k.encode(), v, None, ts))
            if v is None:
                self.table.pop(k, None)
                self.deleted.add(k)
            else:
                self.table[k] = (v, ts)
                self.deleted.discard(k)

        keys = [f"v-{i}" for i in range(VENDORS)]
        for k in keys:
            put(k, {"name": f"vendor {k}", "rev": 1})
        updated = rnd.sample(keys, 60)
        for k in updated:
            put(k, {"name": f"vendor {k}", "rev": 2, "city": rnd.choice(["NYC", "Paris", "Lyon"])})
        for k in updated[:20]:
            put(k, {"name": f"renamed {k}", "rev": 3, "tags": [1, 2, 3]})
        for k in rnd.sample(updated[:30], 8) + rnd.sample(keys, 7):
            put(k, None)
        kafka.produce("vendors", trecs)
        assert len(self.deleted) >= 10, self.deleted
        self.script = write_script(tmp_path, "query.lua", f"""
local sproc = require "sproc"
sproc.app{{ id = "{self.app}" }}
sproc.table{{ topic = "{self.table_topic}", value = "json", name = "vendors" }}
sproc.source{{ topic = "{self.in_topic}", value = "json" }}
  :window(sproc.window.tumbling{{ size = "1h", grace = "1h" }})
  :aggregate{{ n = sproc.agg.count(),
              total = sproc.agg.sum(function(r) return r.value.amount end),
              name = "per-key" }}
  :each(function(r) end)
""")

    def start(self, sproc, names=("a", "b")):
        """The processes, each with its HTTP server: {address: process}."""
        procs = {}
        for name in names:
            addr = f"127.0.0.1:{free_port()}"
            procs[addr] = sproc([self.script, "--brokers", self.kafka.bootstrap, "--app", self.app,
                                 "--metrics", addr] + FAST, name=name)
        return procs

    def wait_consumed(self, procs):
        any_proc = next(iter(procs.values()))
        for t in ("in", "vendors"):
            wait_committed_to_end(self.kafka, self.app, t, timeout=90, proc=any_proc)

    def wait_settled(self, procs, timeout=60):
        """Every process ready with nothing restoring, each knowing both
        members' addresses and partitions, and each store's local
        partitions on each process exactly that process's partitions of
        the store's topic (vendors: the table's topic; per-key: the
        input's). The partitions of the two topics need not be split
        alike: the group assigns each topic's on its own."""
        addrs = sorted(procs)
        topic_of = {"vendors": self.table_topic, "per-key": self.in_topic}

        def check():
            views = {a: state(a) for a in addrs}
            for a in addrs:
                if views[a] is None:
                    return False, f"{a}: /state does not answer 200"
                if not ready(a):
                    return False, f"{a}: not ready"
            for a in addrs:
                members = views[a].get("members", [])
                if sorted(str(m.get("address")) for m in members) != addrs:
                    return False, f"{a} knows members {[m.get('address') for m in members]}"
                for topic in topic_of.values():
                    held = [p for m in members for p in m.get("partitions", {}).get(topic, [])]
                    if sorted(held) != list(range(PARTS)):
                        return False, f"{a}: the members hold partitions {sorted(held)} of {topic}"
            for store, topic in topic_of.items():
                for a in addrs:
                    sv = store_view(views[a], store)
                    if sv is None:
                        return False, f"{a}: no store {store} in /state: {views[a]}"
                    if sv.get("restoring"):
                        return False, f"{a}: store {store} restoring {sv['restoring']}"
                    mine = [sorted(m.get("partitions", {}).get(topic, []))
                            for m in views[a]["members"] if m.get("address") == a][0]
                    if sorted(sv.get("partitions", [])) != mine:
                        return False, f"{a}: store {store} lists local partitions " \
                                      f"{sorted(sv.get('partitions', []))}, but {a} holds " \
                                      f"partitions {mine} of its topic {topic} " \
                                      f"(/state: {json.dumps(views[a], sort_keys=True)})"
            return True, views

        return poll(check, timeout, "both processes ready, each store's partitions those of its "
                    "topic that the process holds, and the members known to each",
                    list(procs.values()))

    # what a key's answer must be

    def check_window(self, key, status, ans, body, where):
        n, total = self.windows[key]
        part = java_partition(key.encode(), PARTS)
        assert status == 200 and isinstance(ans, dict), f"{where}: per-key {key}: {status} {body[:500]}"
        assert ans.get("key") == key and ans.get("partition") == part, \
            f"{where}: per-key {key} (partition {part}): {ans}"
        wins = ans.get("windows")
        assert isinstance(wins, list) and len(wins) == 1, \
            f"{where}: per-key {key}: one open window expected, got {ans}"
        w = wins[0]
        assert (w.get("window_start"), w.get("window_end")) == (self.base, self.base + HOUR), \
            f"{where}: per-key {key}: window {w}, expected [{self.base}, {self.base + HOUR})"
        assert (w.get("n"), w.get("total")) == (n, total), \
            f"{where}: per-key {key}: count, sum = {w.get('n')}, {w.get('total')}; " \
            f"computed from the input {n}, {total}"

    def check_vendor(self, key, status, ans, body, where):
        part = java_partition(key.encode(), PARTS)
        if key not in self.table:
            assert status == 404, f"{where}: vendors {key} (deleted or never written): " \
                                  f"{status} {body[:500]}, expected 404"
            assert isinstance(ans, dict) and ans.get("error") and ans.get("partition") == part, \
                f"{where}: vendors {key}: 404 should give an error and partition {part}: {body[:500]}"
            return
        value, ts = self.table[key]
        assert status == 200 and isinstance(ans, dict), f"{where}: vendors {key}: {status} {body[:500]}"
        assert ans.get("key") == key and ans.get("partition") == part, \
            f"{where}: vendors {key} (partition {part}): {ans}"
        assert ans.get("value") == value, \
            f"{where}: vendors {key}: value {ans.get('value')}, latest written {value}"
        assert ans.get("ts") == ts, f"{where}: vendors {key}: ts {ans.get('ts')}, latest record's {ts}"

    def check_every_key(self, addrs, expect_redirects):
        """Every window key and every vendor key (deleted ones and one
        never written too) through each address: (answers, redirected
        answers per address)."""
        redirected = {a: 0 for a in addrs}
        answers = 0
        vendor_keys = [f"v-{i}" for i in range(VENDORS)] + ["v-never-written"]
        for a in addrs:
            for key in sorted(self.windows):
                path = key_path("per-key", key, **{"from": self.base, "to": self.base})
                status, ans, hops, body = query(a, path)
                self.check_window(key, status, ans, body, f"via {a}{' redirected' if hops else ''}")
                check_hops(f"per-key {key}", hops, addrs)
                redirected[a] += bool(hops)
                answers += 1
            for key in vendor_keys:
                status, ans, hops, body = query(a, key_path("vendors", key))
                self.check_vendor(key, status, ans, body, f"via {a}{' redirected' if hops else ''}")
                check_hops(f"vendors {key}", hops, addrs)
                redirected[a] += bool(hops)
                answers += 1
        if not expect_redirects:
            assert not any(redirected.values()), f"redirects where none were expected: {redirected}"
        return answers, redirected


def check_hops(what, hops, addrs):
    """At most one redirect, from a process to the other one."""
    assert len(hops) <= 1, f"{what}: redirected more than once: {hops}"
    for origin, loc in hops:
        owner = urllib.parse.urlsplit(loc).netloc
        assert owner in addrs and owner != origin, \
            f"{what}: {origin} redirected to {loc}, not to the other process {addrs}"


def range_query(address, store, **params):
    q = urllib.parse.urlencode(params)
    status, _, body = http_get(address, f"/state/{store}?{q}")
    ans = as_json(body)
    assert status == 200 and isinstance(ans, dict), f"GET /state/{store}?{q} on {address}: " \
                                                    f"{status} {body[:500]}"
    return ans


# --- the tests ------------------------------------------------------------

def test_queries_across_two_processes(kafka, sproc, tmp_path):
    app = App(kafka, tmp_path)
    procs = app.start(sproc)
    addrs = sorted(procs)
    app.wait_consumed(procs)
    views = app.wait_settled(procs)
    for a in addrs:
        v = views[a]
        assert v.get("self") == a, f"/state on {a}: self is {v.get('self')}"
        kinds = {s["name"]: s.get("kind") for s in v["stores"]}
        assert kinds.get("vendors") == "table" and kinds.get("per-key") == "window", \
            f"/state on {a}: stores {kinds}"
    owned = {a: {s: set(store_view(views[a], s)["partitions"]) for s in ("vendors", "per-key")}
             for a in addrs}
    split = {a: {s: sorted(p) for s, p in o.items()} for a, o in owned.items()}
    print(f"partitions per process: {split}")

    answers, redirected = app.check_every_key(addrs, expect_redirects=True)
    print(f"checked {len(app.windows)} window keys and {VENDORS + 1} vendor keys "
          f"({len(app.deleted)} deleted) through both processes: {answers} answers, "
          f"redirected per entry process {redirected}")
    assert sum(redirected.values()) > 0, "no query was redirected: every key was local everywhere?"
    for a in addrs:
        assert redirected[a] > 0, f"no query through {a} was redirected, though the other " \
                                  f"process holds partitions {owned}"

    # a window's start outside [from, to]: no window (across a redirect too)
    for key in sorted(app.windows)[:20]:
        for a in addrs:
            status, ans, hops, body = query(a, key_path("per-key", key, **{"from": app.base + 1}))
            assert status == 200 and (ans or {}).get("windows") == [], \
                f"per-key {key} from {app.base + 1} via {a}: {status} {body[:300]}"
            status, ans, hops, body = query(a, key_path("per-key", key, to=app.base - 1))
            assert status == 200 and (ans or {}).get("windows") == [], \
                f"per-key {key} to {app.base - 1} via {a}: {status} {body[:300]}"

    # ?partition=N answers from that partition: a key asked of a partition
    # it is not in is absent there
    for a in addrs:
        local = sorted(owned[a]["vendors"])
        if not local:
            continue
        key = next(k for k in sorted(app.table) if java_partition(k.encode(), PARTS) != local[0])
        status, _, body = http_get(a, key_path("vendors", key, partition=local[0]))
        ans = as_json(body) or {}
        assert status == 404 and ans.get("partition") == local[0], \
            f"vendors {key}?partition={local[0]} on {a} (its own partition; the key is in " \
            f"{java_partition(key.encode(), PARTS)}): {status} {body[:300]}"

    # the range of the table, from each process: its own partitions, the
    # others named as elsewhere; together, the table
    entries, answered = {}, {}
    for a in addrs:
        other = [b for b in addrs if b != a]
        ans = range_query(a, "vendors", limit=10000)
        local = ans.get("partitions")
        assert sorted(local) == sorted(owned[a]["vendors"]), \
            f"range on {a}: answered partitions {local}, its own are {sorted(owned[a]['vendors'])}"
        assert ans.get("restoring") == [], f"range on {a}: restoring {ans.get('restoring')}"
        assert ans.get("more") is False, f"range on {a}: more = {ans.get('more')} under the limit"
        elsewhere = {addr: set(ps) for addr, ps in (ans.get("elsewhere") or {}).items() if ps}
        assert set(elsewhere) <= set(other), f"range on {a}: elsewhere {elsewhere}"
        covered = set(local).union(*elsewhere.values())
        assert covered == set(range(PARTS)) and not set(local) & set().union(*elsewhere.values()), \
            f"range on {a}: answered {sorted(local)} and elsewhere {elsewhere} should cover " \
            f"0..{PARTS - 1} once"
        keys = [e["key"] for e in ans["entries"]]
        assert keys == sorted(keys, key=lambda k: k.encode()), f"range on {a}: not in key order: {keys[:20]}"
        for e in ans["entries"]:
            part = java_partition(e["key"].encode(), PARTS)
            assert e.get("partition") == part and part in local, \
                f"range on {a}: entry {e} (its key is in partition {part}; answered {local})"
            assert e["key"] not in entries, f"range: {e['key']} answered by {answered[e['key']]} and {a}"
            entries[e["key"]] = e["value"]
            answered[e["key"]] = a
    assert set(owned[addrs[0]]["vendors"]).isdisjoint(owned[addrs[1]]["vendors"])
    want = {k: v for k, (v, _) in app.table.items()}
    missing, extra = sorted(set(want) - set(entries)), sorted(set(entries) - set(want))
    wrong = {k: (entries[k], want[k]) for k in want if k in entries and entries[k] != want[k]}
    assert not missing and not extra and not wrong, \
        f"the ranges' union is not the table: missing {missing[:10]}, unexpected {extra[:10]} " \
        f"(deleted keys: {sorted(app.deleted)[:10]}), wrong (got, want) {dict(list(wrong.items())[:5])}"
    # a limit cuts the answer and says there is more
    a = max(addrs, key=lambda x: len(owned[x]["vendors"]))
    if len(owned[a]["vendors"]) > 0:
        ans = range_query(a, "vendors", limit=3)
        assert len(ans["entries"]) == 3 and ans.get("more") is True, \
            f"range on {a} with limit 3: {json.dumps(ans)[:500]}"
    for a in addrs:
        assert procs[a].alive(), procs[a].stderr()[-3000:]


def test_query_answers_503_during_restore(kafka, sproc, tmp_path):
    """A table of 500,000 rows (~170 MB) restored by a fresh process (no
    local checkpoint; about a second of restore work on a 2-core machine):
    from its start until /health/ready says 200, key queries asked back to
    back answer 503 naming the key's partition while it restores, or the
    right value; never a wrong one. /state lists the partitions as
    restoring meanwhile."""
    n = 500_000
    pad = "x" * 300
    big = kafka.create("big", partitions=PARTS, config={"cleanup.policy": "compact"})
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"b-{i}\n" for i in range(n)))
    feed = write_script(tmp_path, "feed.lua", f"""
local sproc = require "sproc"
local PAD = string.rep("x", {len(pad)})
sproc.source{{ file = "{keys}" }}
  :key_by(function(r) return r.value end)
  :map(function(r) return {{ k = r.value, pad = PAD }} end)
  :to{{ topic = "{big}" }}
""")
    f = sproc([feed, "--brokers", kafka.bootstrap, "--app", kafka.topic("feed"), "--until-end"],
              name="feed")
    assert f.wait(120) == 0, f.stderr()[-3000:]
    app = kafka.topic("app")
    script = write_script(tmp_path, "big.lua", f"""
local sproc = require "sproc"
sproc.table{{ topic = "{big}", value = "json", name = "big" }}
""")
    # no local checkpoint: the second process restores everything from the topic
    args = [script, "--brokers", kafka.bootstrap, "--app", app, "--set", "sproc.state.dir="] + FAST
    first = sproc(args + ["--until-end"], name="first")
    assert first.wait(120) == 0, first.stderr()[-3000:]
    wait_committed_to_end(kafka, app, "big", timeout=60)

    probes = {}  # a key of each partition
    for i in range(n):
        k = f"b-{i}"
        probes.setdefault(java_partition(k.encode(), PARTS), k)
        if len(probes) == PARTS:
            break
    probe_keys = [probes[p] for p in range(PARTS)]

    def want(key):
        return {"k": key, "pad": pad}

    addr = f"127.0.0.1:{free_port()}"
    p = sproc(args + ["--metrics", addr], name="restoring")
    # Four threads ask keys of every partition back to back (the server
    # answers the connections waiting on it between two slices of restore
    # work); this thread watches /health/ready and /state meanwhile.
    stop = threading.Event()
    answers = []  # (key, status, body), in the order answered

    def ask(keys):
        j = 0
        while not stop.is_set():
            key = keys[j % len(keys)]
            j += 1
            status, _, body = http_get(addr, key_path("big", key), timeout=10)
            if status is None:
                time.sleep(0.005)  # not listening yet
            else:
                answers.append((key, status, body))

    threads = [threading.Thread(target=ask, args=(probe_keys[t::4],), daemon=True) for t in range(4)]
    for t in threads:
        t.start()
    seen_restoring = set()
    is_ready = False
    deadline = time.time() + 90
    try:
        while time.time() < deadline and not is_ready and p.alive():
            sv = store_view(state(addr), "big")
            if sv:
                seen_restoring |= set(sv.get("restoring", []))
            is_ready = ready(addr)
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    log = p.stderr()
    assert p.alive(), f"the restoring process died\n{log[-3000:]}"
    assert is_ready, f"not ready within 90 s\n{log[-3000:]}"
    restoring_503, other_503, wrong, ok = [], Counter(), [], 0
    for key, status, body in answers:
        part = java_partition(key.encode(), PARTS)
        ans = as_json(body)
        if status == 503:
            if not isinstance(ans, dict) or "error" not in ans:
                wrong.append((key, status, body[:200]))
            elif "partition" in ans and ans["partition"] != part:
                wrong.append((key, status, body[:200]))
            elif ans.get("partition") == part and "restor" in str(ans["error"]):
                restoring_503.append((key, ans))
            else:
                # "no owner known yet", or a restoring answer without the
                # partition: counted by message, the number made N
                other_503[re.sub(r"\b\d+\b", "N", str(ans["error"]))] += 1
        elif status == 200:
            if isinstance(ans, dict) and ans.get("value") == want(key) and ans.get("key") == key \
                    and ans.get("partition") == part:
                ok += 1
            else:
                wrong.append((key, status, body[:200]))
        else:
            wrong.append((key, status, body[:200]))  # a 404 here would be a wrong answer
    print(f"{len(answers)} key answers while the process started and restored: "
          f"{len(restoring_503)} 503 naming the partition restoring, other 503 {dict(other_503)}, "
          f"{ok} right values, {len(wrong)} wrong; /state showed partitions "
          f"{sorted(seen_restoring)} restoring")
    assert "restoring store big" in log, f"the process did not restore the table\n{log[-3000:]}"
    assert not wrong, f"answers during the restore that were neither 503 nor the value: {wrong[:10]}"
    assert restoring_503, \
        f"no 503 naming the key's partition as restoring in {len(answers)} answers before ready " \
        f"(other 503 by message: {dict(other_503)}; /state restoring seen: " \
        f"{sorted(seen_restoring)})\n{log[-2000:]}"
    ex = restoring_503[0][1]
    assert isinstance(ex["partition"], int) and str(ex["partition"]) in ex["error"], ex
    assert seen_restoring, "/state never listed a partition of big as restoring"

    # ready: every partition local and answered, the values right
    sv = store_view(state(addr), "big")
    assert sv and sorted(sv["partitions"]) == list(range(PARTS)) and sv.get("restoring") == [], sv
    assert sv.get("kind") == "table", sv
    sample = probe_keys + [f"b-{i}" for i in random.Random(3).sample(range(n), 300)]
    for key in sample:
        status, ans, hops, body = query(addr, key_path("big", key))
        assert status == 200 and not hops and (ans or {}).get("value") == want(key), \
            f"after ready, big {key}: {status} {body[:300]}"
    status, ans, hops, body = query(addr, key_path("big", f"b-{n + 5}"))
    assert status == 404 and (ans or {}).get("partition") == java_partition(f"b-{n + 5}".encode(), PARTS), \
        f"after ready, a key never written: {status} {body[:300]}"


def test_survivor_answers_after_kill(kafka, sproc, tmp_path):
    app = App(kafka, tmp_path, seed=23)
    procs = app.start(sproc)
    app.wait_consumed(procs)
    app.wait_settled(procs)
    survivor, victim = sorted(procs)
    procs[victim].kill()
    killed_at = time.time()

    def holds_everything():
        view = state(survivor)
        if view is None or not ready(survivor):
            return False, view
        for store in ("vendors", "per-key"):
            sv = store_view(view, store)
            if sv is None or sorted(sv.get("partitions", [])) != list(range(PARTS)) or sv.get("restoring"):
                return False, view
        return True, view

    view = poll(holds_everything, 60, f"{survivor} to hold all {PARTS} partitions and be ready",
                [procs[survivor]])
    print(f"the survivor held every partition {time.time() - killed_at:.1f} s after the kill; "
          f"members it knows: {[m.get('address') for m in view.get('members', [])]}")
    answers, _ = app.check_every_key([survivor], expect_redirects=False)
    print(f"checked {answers} keys through the survivor")
    ans = range_query(survivor, "vendors", limit=10000)
    assert sorted(ans["partitions"]) == list(range(PARTS)) and \
        not any(ans.get("elsewhere", {}).values()), f"range on the survivor: {json.dumps(ans)[:500]}"
    got = {e["key"]: e["value"] for e in ans["entries"]}
    assert got == {k: v for k, (v, _) in app.table.items()}, \
        f"range on the survivor: {len(got)} entries, the table has {len(app.table)}"
    assert procs[survivor].alive()


def run_query(*args):
    r = subprocess.run([SPROC, "query", *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_sproc_query_cli(kafka, sproc, tmp_path):
    app = App(kafka, tmp_path, seed=29)
    procs = app.start(sproc)
    addrs = sorted(procs)
    app.wait_consumed(procs)
    app.wait_settled(procs)
    group = ["--app", app.app, "--brokers", kafka.bootstrap]

    # a key: the answer's JSON on one line, whichever process holds it
    keys = sorted(app.windows)
    for key in keys[:10]:
        rc, out, err = run_query(*group, "per-key", key)
        assert rc == 0, f"sproc query per-key {key}: exit {rc}\n{err}"
        lines = out.strip().splitlines()
        assert len(lines) == 1, f"sproc query per-key {key}: {len(lines)} lines\n{out[:1000]}"
        ans = json.loads(lines[0])
        app.check_window(key, 200, ans, out, "sproc query")
    key = next(k for k in sorted(app.table))
    rc, out, err = run_query(*group, "vendors", key)
    assert rc == 0, f"sproc query vendors {key}: exit {rc}\n{err}"
    app.check_vendor(key, 200, json.loads(out), out, "sproc query")
    # the script names the application; --at asks one process (which
    # redirects when the key is the other's)
    key = keys[-1]
    rc, out, err = run_query(app.script, "per-key", key, "--brokers", kafka.bootstrap)
    assert rc == 0, f"sproc query SCRIPT per-key {key}: exit {rc}\n{err}"
    app.check_window(key, 200, json.loads(out), out, "sproc query SCRIPT")
    for a in addrs:
        rc, out, err = run_query(*group, "per-key", key, "--at", a)
        assert rc == 0, f"sproc query --at {a} per-key {key}: exit {rc}\n{err}"
        app.check_window(key, 200, json.loads(out), out, f"sproc query --at {a}")

    # absent keys: exit 1 with a message, nothing on stdout
    for key in ["v-never-written", sorted(app.deleted)[0]]:
        rc, out, err = run_query(*group, "vendors", key)
        assert rc == 1 and err.strip() and not out.strip(), \
            f"sproc query vendors {key} (absent): exit {rc}, stdout {out[:300]!r}, stderr {err[:300]!r}"

    # a range: every member asked, one entry a line, in key order
    rc, out, err = run_query(*group, "vendors")
    assert rc == 0, f"sproc query vendors (range): exit {rc}\n{err}"
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    want = {k: v for k, (v, _) in app.table.items()}
    got_keys = [e["key"] for e in lines]
    assert len(lines) == len(want), f"sproc query vendors: {len(lines)} lines, the table has {len(want)}"
    assert got_keys == sorted(want, key=lambda k: k.encode()), \
        f"sproc query vendors: not the table's keys in key order: {got_keys[:20]}"
    for e in lines:
        assert e.get("value") == want[e["key"]], f"sproc query vendors: {e}, want {want[e['key']]}"
        assert e.get("partition") == java_partition(e["key"].encode(), PARTS), e
    # narrowed by prefix
    rc, out, err = run_query(*group, "vendors", "--prefix", "v-1")
    assert rc == 0, f"sproc query vendors --prefix v-1: exit {rc}\n{err}"
    got = [json.loads(line)["key"] for line in out.splitlines() if line.strip()]
    assert got == sorted((k for k in want if k.startswith("v-1")), key=lambda k: k.encode()), \
        f"sproc query vendors --prefix v-1: {got[:20]}"
    for a in addrs:
        assert procs[a].alive(), procs[a].stderr()[-3000:]
