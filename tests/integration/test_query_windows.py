"""Interactive queries of aggregations' open windows, for every kind of
window: what /state answers for a window that is still open must be what
the aggregation emits for it when it closes (final results), or its last
update (update mode). No model of windows is needed: the pipeline is its
own oracle, the query and the emission being two reads of one state."""
import json
import random
import urllib.request

from conftest import free_port, wait_committed_to_end, wait_until, write_script

SCRIPT = """
local sproc = require "sproc"
sproc.app{ id = "%(app)s" }
local s = sproc.source{ topic = "%(input)s", value = "json",
                        time = function(r) return r.value.t end }
local function aggs(name)
  return { n = sproc.agg.count(), total = sproc.agg.sum(function(r) return r.value.v end),
           lo = sproc.agg.min(function(r) return r.value.v end),
           hi = sproc.agg.max(function(r) return r.value.v end),
           mean = sproc.agg.avg(function(r) return r.value.v end),
           mine = sproc.agg.custom{ init = function() return { s = 0, n = 0 } end,
                                    add = function(a, r) a.s = a.s + r.value.v; a.n = a.n + 1; return a end,
                                    merge = function(a, b) a.s = a.s + b.s; a.n = a.n + b.n; return a end },
           name = name }
end
s:window(sproc.window.tumbling{ size = "1m", grace = "1h" }):aggregate(aggs("tumbling"))
  :emit "final" :to{ topic = "%(out)s-tumbling" }
s:window(sproc.window.hopping{ size = "2m", advance = "30s", grace = "1h" }):aggregate(aggs("hopping"))
  :emit "final" :to{ topic = "%(out)s-hopping" }
s:window(sproc.window.hopping{ size = "2m", advance = "30s", grace = "1h" }):aggregate(aggs("hopping-upd"))
  :emit "update" :to{ topic = "%(out)s-hopping-upd" }
s:window(sproc.window.session{ gap = "20s", grace = "1h" }):aggregate(aggs("session"))
  :emit "final" :to{ topic = "%(out)s-session" }
s:window(sproc.window.sliding{ size = "30s", grace = "1h" }):aggregate(aggs("sliding"))
  :emit "final" :to{ topic = "%(out)s-sliding" }
"""

KINDS = ["tumbling", "hopping", "hopping-upd", "session", "sliding"]


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


def windows_of(records):
    """{(key, window_start, window_end): value} of result records (the last
    one of a window wins: update mode's latest)."""
    out = {}
    for r in records:
        if r["value"] is None:
            continue
        v = json.loads(r["value"])
        out[(r["key"].decode(), v["window_start"], v["window_end"])] = v
    return out


def test_open_windows_equal_what_they_emit(kafka, sproc, tmp_path):
    parts = 3
    input_topic = kafka.create("in", partitions=parts)
    out = kafka.topic("out")
    for k in KINDS:
        kafka.create("out-" + k, partitions=parts)
    app = kafka.topic("app")
    script = write_script(tmp_path, "windows.lua",
                          SCRIPT % {"app": app, "input": input_topic, "out": out})
    rng = random.Random(7)
    base = 1_700_000_000_000
    records, t = [], base
    for i in range(3000):
        t += rng.choice([0, 50, 300, 1500, 12000, 25000])  # gaps that split sessions sometimes
        records.append((f"k{rng.randrange(40)}", {"t": t, "v": rng.randrange(-500, 500)}))
    kafka.produce("in", records)
    port = free_port()
    p = sproc(["windows.lua", "--brokers", kafka.bootstrap, "--metrics", f"127.0.0.1:{port}"])
    wait_committed_to_end(kafka, app, "in", timeout=120, proc=p)
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready").status == 200,
               what="ready", proc=p)

    # the open windows as queried: by range, and key by key
    queried = {}
    for k in KINDS:
        ans = get(port, f"/state/{k}?limit=100000")
        assert ans["more"] is False and sorted(ans["partitions"]) == list(range(parts)), ans
        got = {(e["key"], e["value"]["window_start"], e["value"]["window_end"]): e["value"]
               for e in ans["entries"]}
        assert got, f"{k}: no open window"
        for key in {key for key, _, _ in got}:
            one = get(port, f"/state/{k}/{key}")
            assert {(key, w["window_start"], w["window_end"]): w for w in one["windows"]} == \
                {w: v for w, v in got.items() if w[0] == key}, f"{k} {key}"
        queried[k] = got
    # a key's windows within a range of starts
    some = next(iter(queried["hopping"]))
    lo = some[1]
    one = get(port, f"/state/hopping/{some[0]}?from={lo}&to={lo}")
    assert [w["window_start"] for w in one["windows"]] == [lo]

    # what was emitted so far, then a record far ahead in each partition:
    # every window open at the query closes now
    before = {k: kafka.end_offsets("out-" + k, isolation="read_uncommitted") for k in KINDS}
    upd_before = windows_of(kafka.read("out-hopping-upd"))
    for q in range(parts):
        kafka.produce("in", [(f"zz-close-{q}", {"t": t + 10 * 3600_000, "v": 0})], partition=q)
    wait_committed_to_end(kafka, app, "in", timeout=120, proc=p)
    checked = 0
    for k in KINDS:
        if k == "hopping-upd":
            # update mode: the last update of each window is its value
            emitted = {w: v for w, v in upd_before.items() if w in queried[k]}
        else:
            recs = [r for r in kafka.read("out-" + k)
                    if r["offset"] >= before[k][r["partition"]] and
                    not r["key"].decode().startswith("zz-close")]
            emitted = windows_of(recs)
        assert emitted == queried[k], \
            f"{k}: {len(set(emitted) ^ set(queried[k]))} windows differ, e.g. " \
            f"{sorted(set(emitted) ^ set(queried[k]))[:5]}; values differ for " \
            f"{[w for w in emitted if w in queried[k] and emitted[w] != queried[k][w]][:5]}"
        checked += len(emitted)
    print(f"{checked} open windows queried and equal to their results")
    assert get(port, "/state/tumbling/nosuchkey")["windows"] == []
