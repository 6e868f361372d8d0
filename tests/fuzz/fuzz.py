"""Random pipelines checked against an independent model.

  fuzz.py run SEED...            run cases on the test driver (and --broker)
  fuzz.py soak SECONDS           new seeds for that long; prints each failure
  fuzz.py show SEED              the generated script and input

A case runs on the driver with batches of 1, of random sizes and of every
record, with a reload to the same script halfway and with a revoke and
assign of every partition halfway; each run's outputs must equal what
model.py computes from the README's semantics.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# the sproc under test: this tree, or another one's build (SPROC_FUZZ_ROOT:
# a mutation check runs the tool against a tree with a fix reverted)
ROOT = os.environ.get("SPROC_FUZZ_ROOT") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import gen  # noqa: E402
import model  # noqa: E402

DRIVER_MODES = [("batch", "1"), ("random", "7"), ("batch", "1000"), ("reload", "0"),
                ("rebalance", "0")]


def luajit_env():
    env = dict(os.environ)
    env["SPROC_LIB"] = os.environ.get("SPROC_LIB") or os.path.join(ROOT, "build", "libsproc.so")
    env["LUA_PATH"] = f"{ROOT}/lua/?.lua;{ROOT}/lua/?/init.lua;;"
    return env


def write_case(case, d):
    path = os.path.join(d, f"case{case['seed']}.json")
    with open(path, "w") as f:
        json.dump(case, f)
    with open(path[:-5] + ".lua", "w") as f:
        f.write(gen.render_lua(case))
    return path


def run_driver(path, mode, arg):
    p = subprocess.run(["luajit", os.path.join(HERE, "driver_run.lua"), path, mode, arg],
                       capture_output=True, env=luajit_env(), timeout=120)
    p.stdout = p.stdout.decode("utf-8", "surrogateescape")
    p.stderr = p.stderr.decode("utf-8", "replace")
    outs, error = [], None
    for line in p.stdout.splitlines():
        o = json.loads(line)
        if "error" in o:
            error = o["error"]
        else:
            outs.append(o)
    if p.returncode != 0:
        error = (error or "") + p.stderr[-2000:]
    return outs, error


# --- comparing -----------------------------------------------------------------

def norm(v):
    """A value as compared: JSON text decoded, numbers as floats rounded
    to 12 significant digits (sums may add in another order)."""
    if isinstance(v, str) and v[:1] in "{[":
        try:
            v = json.loads(v)
        except ValueError:
            return v
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(f"{float(v):.12g}")
    if isinstance(v, dict):
        return tuple(sorted((k, norm(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(norm(x) for x in v)
    return v


def decoded(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def window_modes(case):
    modes = {}

    def walk(ops):
        for i, o in enumerate(ops):
            if o["op"] == "window":
                modes[ops[i + 1]["topic"]] = o["emit"]
            if o["op"] == "branch":
                for b in o["branches"]:
                    walk(b)
    for s in case["sources"]:
        walk(s["ops"])
    return modes


def compare(case, expected, outs, deleted_is_absent=False):
    """A list of differences (empty when the run is right). deleted_is_absent:
    in update mode a window deleted (its last result a tombstone) counts as
    one that never was: through a repartition topic, records of several
    input partitions arrive in an order the model cannot know, and which
    sessions existed on the way (and were deleted when they merged) depends
    on it; the sessions that remain do not."""
    modes = window_modes(case)
    got_plain, got_win = {}, {}
    for o in outs:
        t = o["topic"]
        if modes.get(t) == "update":
            v = decoded(o["value"])
            start = v["window_start"] if isinstance(v, dict) else int(o["headers"]["sproc.window.start"])
            got_win.setdefault(t, {})[(o["key"], start)] = v
        else:
            got_plain.setdefault(t, []).append((o["key"], o["value"]))
    diffs = []
    topics = set(got_plain) | set(expected.plain)
    for t in sorted(topics):
        want = sorted(map(repr, ((k, norm(v)) for k, v in expected.plain.get(t, []))))
        got = sorted(map(repr, ((k, norm(v)) for k, v in got_plain.get(t, []))))
        if want != got:
            missing = [x for x in want if x not in got]
            extra = [x for x in got if x not in want]
            diffs.append(f"topic {t}: {len(want)} expected, {len(got)} got; missing {missing[:4]}, "
                         f"unexpected {extra[:4]}")
    for t in sorted(set(got_win) | set(expected.windows)):
        want = {k: norm(v) for k, v in expected.windows.get(t, {}).items()
                if v is not None or not deleted_is_absent}
        got = {k: norm(v) for k, v in got_win.get(t, {}).items()
               if v is not None or not deleted_is_absent}
        if want != got:
            keys = sorted(set(want) | set(got), key=repr)
            bad = [(k, want.get(k, "absent"), got.get(k, "absent")) for k in keys
                   if want.get(k, "absent") != got.get(k, "absent")]
            diffs.append(f"topic {t} (update mode, last result per window): {len(bad)} windows "
                         f"differ, e.g. {bad[:3]}")
    return diffs


def check(case, tmp, modes=DRIVER_MODES):
    """Runs a case on the driver in every mode: [(mode, differences)]."""
    path = write_case(case, tmp)
    try:
        expected = model.expected(case)
        model_error = None
    except (model.ScriptError, model.BadInput) as e:
        expected, model_error = None, str(e)
    failures = []
    for mode, arg in modes:
        outs, error = run_driver(path, mode, arg)
        if model_error or error:
            if not (model_error and error):
                failures.append((f"{mode} {arg}", [f"model error: {model_error}; sproc error: {error}"]))
            continue
        diffs = compare(case, expected, outs)
        if diffs:
            failures.append((f"{mode} {arg}", diffs))
    return failures


# --- shrinking -------------------------------------------------------------------

def still_fails(case, tmp, modes):
    try:
        return bool(check(case, tmp, modes))
    except Exception:  # a shrunk case the model cannot take is not a failure
        return False


def shrink(case, tmp, modes):
    """A smaller case that still fails in one of modes: fewer input
    records, sources, operators and aggregates (greedy, delta-debugging
    style)."""
    case = json.loads(json.dumps(case))

    def attempt(mutate):
        nonlocal case
        trial = json.loads(json.dumps(case))
        if mutate(trial) is False:
            return False
        if still_fails(trial, tmp, modes):
            case = trial
            return True
        return False

    progress = True
    while progress:
        progress = False
        # input records: halves, then one at a time
        chunk = max(1, len(case["inputs"]) // 2)
        while chunk >= 1:
            i = 0
            while i < len(case["inputs"]):
                if attempt(lambda c, i=i: c["inputs"].__delitem__(slice(i, i + chunk))):
                    progress = True
                else:
                    i += chunk
            chunk //= 2
        # sources
        for i in reversed(range(len(case["sources"]))):
            if len(case["sources"]) > 1 and attempt(lambda c, i=i: c["sources"].pop(i)):
                progress = True

        # operators other than windows and sinks, in every chain
        def chains(c):
            out = []
            def walk(ops):
                out.append(ops)
                for o in ops:
                    if o["op"] == "branch":
                        for b in o["branches"]:
                            walk(b)
            for s in c["sources"]:
                walk(s["ops"])
            return out
        for ci in range(len(chains(case))):
            j = 0
            while j < len(chains(case)[ci]):
                op = chains(case)[ci][j]["op"]
                if op not in ("window", "to", "branch") and \
                        attempt(lambda c, ci=ci, j=j: chains(c)[ci].pop(j)):
                    progress = True
                else:
                    j += 1
        # aggregates
        for ci in range(len(chains(case))):
            for idx in range(len(chains(case)[ci])):
                o = chains(case)[ci][idx]
                if o["op"] != "window":
                    continue
                for name in sorted(o["aggs"]):
                    if len(chains(case)[ci][idx]["aggs"]) > 1 and attempt(
                            lambda c, ci=ci, idx=idx, name=name: chains(c)[ci][idx]["aggs"].pop(name)):
                        progress = True
        # stores and sources' options
        for si in range(len(case["sources"])):
            for k, v in (("tombstones", "pass"), ("time", False)):
                if case["sources"][si].get(k) != v and attempt(
                        lambda c, si=si, k=k, v=v: c["sources"][si].__setitem__(k, v)):
                    progress = True
        if case["partitions"] > 1 and attempt(lambda c: c.__setitem__("partitions", 1)):
            progress = True
    return case


def canon(v):
    """A value as tests/spec/spec_fuzz.lua writes it."""
    if isinstance(v, str) and v[:1] in "{[":
        try:
            v = json.loads(v)
        except ValueError:
            pass
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"{float(v):.12g}"
    if isinstance(v, str):
        return lua_quote(v)
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]" if v else "{}"
    return "{" + ",".join(f"{lua_quote(k)}:{canon(x)}" for k, x in sorted(v.items())) + "}"


def lua_quote(s):
    """string.format("%q", s) for the printable strings of generated cases."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n") + '"'


def expected_lines(case):
    exp = model.expected(case)
    lines = []
    for t, vs in exp.plain.items():
        for k, v in vs:
            lines.append(f"{t}|{'nil' if k is None else k}|{canon(v)}")
    for t, wins in exp.windows.items():
        for (k, start), v in wins.items():
            lines.append(f"{t}|{'nil' if k is None else k}|{float(start):.12g}|{canon(v)}")
    return sorted(lines)


def regression_spec(case, failures, path):
    """A busted spec that runs the shrunk case on the driver, as the
    failing run did, and compares its outputs with the model's, for the
    developer to commit with the fix."""
    mode, arg = failures[0][0].split(" ")
    update = sorted(t for t, m in window_modes(case).items() if m == "update")
    lines = expected_lines(case)
    with open(path, "w") as f:
        f.write(f"""-- Found by tests/fuzz (seed {case['seed']}, run "{mode} {arg}"), shrunk:
-- {failures[0][1][0][:400]}
local testing = require "sproc.testing"
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = spec_dir .. "/?.lua;" .. package.path
local fuzz = require "spec_fuzz"

describe("fuzz case {case['seed']}", function()
  it("gives the model's outputs", function()
    local script = os.tmpname() .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write([==[
{gen.render_lua(case)}]==])
    f:close()
    local d = testing.driver{{ script = script, partitions = {case['partitions']} }}
    local inputs = {{
""")
        for r in case["inputs"]:
            key = "nil" if r["key"] is None else json.dumps(r["key"])
            val = "nil" if r["value"] is None else "[==[" + r["value"] + "]==]"
            f.write(f'      {{ topic = "{r["topic"]}", key = {key}, value = {val}, ts = {r["ts"]}, '
                    f'partition = {r["partition"]} }},\n')
        f.write("    }\n")
        f.write(f'    fuzz.run(d, inputs, "{mode}", {arg}, script, {case["partitions"]})\n')
        f.write("    os.remove(script)\n")
        f.write("    local update = { " + ", ".join(f'["{t}"] = true' for t in update) + " }\n")
        f.write("    assert.are.same({\n")
        for ln in lines:
            f.write(f"      {lua_quote(ln)},\n")
        f.write("    }, fuzz.lines(d, update))\n  end)\nend)\n")
    return path


def check_broker(case, tmp, bootstrap, variant, guarantee):
    """Runs a case through the broker: [(run, differences)]."""
    import broker
    name = f"broker {variant} {guarantee}"
    try:
        expected = model.expected(case, close_at_end=variant != "continuous")
    except (model.ScriptError, model.BadInput) as e:
        return [(name, [f"the model stops ({e}): not a broker case"])]
    run = broker.BrokerRun(case, bootstrap, tmp, guarantee, variant, case["seed"])
    outs, error = run.run()
    if error:
        return [(name, [error])]
    diffs = compare(case, expected, outs, deleted_is_absent=True)
    return [(name, diffs)] if diffs else []


def features(case):
    """The API features a case uses (for the coverage table)."""
    f = set()
    f.add(f"policy {case['policy']}")
    f.add(f"{case['partitions']} partition(s)")
    tops = [s["topic"] for s in case["sources"]]
    f.add(f"{len(case['sources'])} source(s)")
    if len(set(tops)) < len(tops):
        f.add("sources sharing a topic")
    for t in case.get("timers", []):
        f.add("stream timer")
        if t["store"]:
            f.add("stream timer reading a store")
    for st in case["stores"]:
        f.add(f"store {st['backend']}")
        if st["ttl"]:
            f.add("store TTL")
    for s in case["sources"]:
        f.add("source json" if s["json"] else "source string")
        if s["time"]:
            f.add("event-time function")
        if s["json"] and s["tombstones"] == "skip":
            f.add("tombstones skip")

        def walk(ops, keyed):
            for o in ops:
                k = o["op"]
                if k == "store":
                    f.add(f"store {o['action']}")
                elif k == "window":
                    f.add(f"window {o['kind']}")
                    f.add(f"emit {o['emit']}")
                    if keyed:
                        f.add("window after key_by (repartition)")
                    for a in o["aggs"].values():
                        f.add(f"agg {a}")
                elif k == "branch":
                    f.add("branch")
                    for b in o["branches"]:
                        walk(b, keyed)
                else:
                    f.add(k)
                keyed = keyed or k == "key_by"
        walk(s["ops"], False)
    for r in case["inputs"]:
        if r["key"] is None:
            f.add("input: null key")
        if r["value"] is None and not r.get("value_hex"):
            f.add("input: tombstone")
        if r.get("value_hex") or (r["value"] or "").startswith("{not") or \
                "1e999" in (r["value"] or "") or "ud800" in (r["value"] or "") or r["value"] == "null":
            f.add("input: bad value")
    return f


def broker_variant(seed):
    """The broker run a seed gets: bounded or continuous, at-least-once or
    exactly-once; exactly-once with kills and a second process."""
    rnd = __import__("random").Random(seed * 7919)
    v = rnd.choice(["bounded", "bounded", "continuous", "kills"])
    g = "exactly_once" if v == "kills" else rnd.choice(["at_least_once", "exactly_once"])
    return v, g


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("seeds", nargs="+")
    r.add_argument("--broker", help="bootstrap servers: run the cases through Kafka instead")
    s = sub.add_parser("soak")
    s.add_argument("seconds", type=float)
    s.add_argument("--start", type=int, default=int(time.time()))
    s.add_argument("--broker", help="also run every tenth case through Kafka")
    cv = sub.add_parser("coverage")
    cv.add_argument("seeds")
    cv.add_argument("--broker-seeds", default="1-8")
    sk = sub.add_parser("shrink")
    sk.add_argument("seed", type=int)
    sk.add_argument("--spec-dir", help="where to write the regression spec (default: a temporary directory)")
    sh = sub.add_parser("show")
    sh.add_argument("seed", type=int)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sproc-fuzz-")
    if a.cmd == "coverage":
        def rng(spec):
            lo, _, hi = spec.partition("-")
            return range(int(lo), int(hi or lo) + 1)
        counts, n = {}, 0
        for sd in rng(a.seeds):
            n += 1
            for ft in features(gen.gen_case(sd)):
                counts[ft] = counts.get(ft, 0) + 1
        bcounts, nb = {}, 0
        for sd in rng(a.broker_seeds):
            nb += 1
            v, g = broker_variant(sd)
            for ft in features(gen.gen_case(sd, broker=True)) | {f"run {v}", f"run {g}"}:
                bcounts[ft] = bcounts.get(ft, 0) + 1
        print(f"| feature | driver cases (of {n}, each run 5 ways) | broker cases (of {nb}) |")
        print("|---|---:|---:|")
        for ft in sorted(set(counts) | set(bcounts)):
            print(f"| {ft} | {counts.get(ft, 0)} | {bcounts.get(ft, 0)} |")
        return 0
    if a.cmd == "shrink":
        case = gen.gen_case(a.seed)
        fails = check(case, tmp)
        if not fails:
            print(f"seed {a.seed} does not fail")
            return 0
        modes = [tuple(fails[0][0].split(" "))]
        small = shrink(case, tmp, modes)
        print(gen.render_lua(small))
        for rec in small["inputs"]:
            print(json.dumps(rec))
        for mode, diffs in check(small, tmp, modes):
            for d in diffs:
                print(f"[{mode}] {d}")
        with open(os.path.join(tmp, "shrunk.json"), "w") as f:
            json.dump(small, f)
        print("shrunk case:", os.path.join(tmp, "shrunk.json"))
        spec = regression_spec(small, check(small, tmp, modes) or fails, os.path.join(
            a.spec_dir or tmp, f"fuzz_{a.seed}_spec.lua"))
        print("regression spec:", spec)
        return 0
    if a.cmd == "show":
        case = gen.gen_case(a.seed)
        print(gen.render_lua(case))
        for rec in case["inputs"]:
            print(json.dumps(rec))
        return 0
    seeds = []
    if a.cmd == "run":
        for spec in a.seeds:
            lo, _, hi = spec.partition("-")
            seeds.extend(range(int(lo), int(hi or lo) + 1))
    failed = 0
    broker_cases = 0
    t0 = time.time()
    n = 0
    seed = a.start if a.cmd == "soak" else None
    while True:
        if a.cmd == "run":
            if n >= len(seeds):
                break
            sd = seeds[n]
        else:
            if time.time() - t0 > a.seconds:
                break
            sd = seed + n
        n += 1
        through = a.broker and (a.cmd == "run" or sd % 10 == 0)
        case = gen.gen_case(sd, broker=bool(through))
        if through and case["policy"] == "fail":
            case["policy"] = "skip"  # the model stops at a failure; a broker run would too
        if through:
            fails = check_broker(case, tmp, a.broker, *broker_variant(sd))
            broker_cases += 1
        else:
            fails = check(case, tmp)
        if fails:
            failed += 1
            print(f"seed {sd}: FAIL", flush=True)
            for mode, diffs in fails:
                for d in diffs:
                    print(f"  [{mode}] {d}", flush=True)
    dt = time.time() - t0
    print(f"{n} cases ({broker_cases} through Kafka), {failed} failed, {dt:.0f} s "
          f"({n / dt * 3600:.0f} cases/hour)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
