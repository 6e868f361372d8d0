"""Random pipelines and inputs, reproducible from one integer.

A case is a plain dict (JSON-serialisable, so a failing one can be saved,
shrunk and replayed): the pipeline as a tree of operators, and the input
records. render_lua() writes it as a sproc script; model.py interprets the
same dict from the README's semantics. Expressions are small templates
that both sides render (Lua here, Python in model.py): nothing of sproc's
own code is shared.
"""
import json
import random

SFIELDS = ["a", "b", "c"]
AGGS = ["count", "sum", "min", "max", "avg", "first", "last"]


# --- expressions -------------------------------------------------------------
# An expression is a list: ["n"] the value's number (nil -> 0), ["mod", e, m, k]
# e % m == k, ["s"] the value's string, ["key"], ["ts"], ["add", e, k], ...

def rand_num(rnd, depth=0):
    c = rnd.random()
    if c < 0.5 or depth > 1:
        return ["n"]
    if c < 0.75:
        return ["add", rand_num(rnd, depth + 1), rnd.randrange(-3, 10)]
    return ["mul", rand_num(rnd, depth + 1), rnd.randrange(1, 4)]


def rand_pred(rnd):
    c = rnd.random()
    if c < 0.6:
        m = rnd.randrange(2, 6)
        return ["mod", rand_num(rnd), m, rnd.randrange(m)]
    if c < 0.8:
        return ["lt", rand_num(rnd), rnd.randrange(0, 100)]
    return ["seq", rnd.choice(SFIELDS)]


def rand_key(rnd):
    c = rnd.random()
    if c < 0.5:
        return ["kmod", rand_num(rnd), rnd.randrange(1, 8)]
    if c < 0.8:
        return ["s"]
    return ["keycat", rnd.choice(SFIELDS)]


# --- operators ---------------------------------------------------------------

def rand_window(rnd, rekeyed, broker, parts):
    """A window; against a broker only what the order in which partitions
    interleave cannot change (a grace that covers every record, no Lua
    aggregate on sessions or sliding windows, whose merges depend on it,
    no first/last of a re-keyed stream, whose ties do)."""
    kind = rnd.choice(["tumbling", "hopping", "sliding", "session"])
    size = rnd.choice([10, 50, 100, 250])
    w = {"op": "window", "kind": kind, "grace": rnd.choice([0, 20, 100, 1000])}
    if kind == "session":
        w["gap"] = rnd.choice([5, 30, 100])
    else:
        w["size"] = size
    if kind == "hopping":
        w["advance"] = rnd.choice([d for d in (5, 10, 25, 50) if d <= size and size % d == 0] or [size])
    if rekeyed or broker:
        # the order in which partitions reach a repartition topic (or a
        # broker) is not fixed: only a grace that covers every record
        # gives one answer
        w["grace"] = 100000
    w["emit"] = rnd.choice(["final", "final", "update"])
    if not rekeyed and parts > 1:
        # a key on several partitions has a window on each: their updates
        # interleave in no fixed order, so only final results compare
        w["emit"] = "final"
    aggs = {}
    for i in range(rnd.randrange(1, 4)):
        a = rnd.choice(AGGS + ["custom"])
        if broker and a == "custom" and kind in ("session", "sliding"):
            a = "sum"
        if broker and rekeyed and a in ("first", "last"):
            a = "max"
        aggs[f"a{i}"] = a
    w["aggs"] = aggs
    return w


def rand_ops(rnd, depth, ctx, replaced=False):
    """A chain of operators ending in a sink (or a branch)."""
    ops = []
    for _ in range(rnd.randrange(0, 5)):
        c = rnd.random()
        if c < 0.18:
            ops.append({"op": "filter", "pred": rand_pred(rnd)})
        elif c < 0.30:
            ops.append({"op": "map", "n": rand_num(rnd), "s": rnd.choice(SFIELDS)})
            replaced = True
        elif c < 0.38:
            ops.append({"op": "flat_map", "n": rand_num(rnd), "mod": rnd.randrange(1, 4)})
            replaced = True
        elif c < 0.46 and not replaced and ctx["json"]:
            ops.append({"op": "select", "fields": rnd.sample(["n", "s", "t", "x"], rnd.randrange(1, 4))})
            replaced = True
        elif c < 0.58:
            ops.append({"op": "key_by", "key": rand_key(rnd)})
            ctx["keyed"] = True
        elif c < 0.70 and ctx["stores"]:
            # against a broker a store belongs to one source: the order of
            # two topics' records on a partition is not fixed
            st = rnd.choice(ctx["stores"] if not ctx["broker"] else ctx["stores"][:1])
            action = rnd.choice(["incr", "incr", "get", "put", "delete"])
            ops.append({"op": "store", "store": st, "action": action, "key": rand_key(rnd),
                        "emit": rnd.random() < 0.7})
            if ops[-1]["emit"]:
                replaced = True
        elif c < 0.76 and ctx["policy"] != "fail":
            ops.append({"op": "error_if", "pred": ["mod", ["n"], rnd.choice([7, 11, 13]), 3]})
        elif c < 0.80:
            ops.append({"op": "each"})
    if depth < 1 and rnd.random() < 0.12:
        preds = [rand_pred(rnd) for _ in range(rnd.randrange(1, 3))]
        branches = []
        for _ in preds:
            sub = dict(ctx)
            branches.append(rand_ops(rnd, depth + 1, sub, replaced))
        ops.append({"op": "branch", "preds": preds, "branches": branches})
        return ops
    if ctx["windows"] and rnd.random() < 0.45:
        rekeyed = any(o["op"] == "key_by" for o in ops) or ctx.get("keyed", False)
        ops.append(rand_window(rnd, rekeyed, ctx["broker"], ctx["parts"]))
        ctx["windows"] -= 1
        # each aggregation's results have a topic of their own
        ctx["wid"][0] += 1
        ops.append({"op": "to", "topic": f"win{ctx['wid'][0]}"})
        return ops
    ops.append({"op": "to", "topic": f"out{rnd.randrange(3)}"})
    return ops


def gen_case(seed, broker=False):
    rnd = random.Random(seed)
    parts = rnd.choice([1, 2, 3])
    policy = rnd.choice(["fail", "skip", "dlq", "dlq"])
    stores = []
    for i in range(rnd.randrange(0, 3)):
        # against a broker without a TTL: what is expired depends on how
        # two sources' records interleave
        st = {"name": f"st{i}", "ttl": None if broker else rnd.choice([None, None, 50, 200, 1000]),
              "backend": rnd.choice(["memory", "memory", "lmdb"])}
        stores.append(st)
    nsrc = rnd.choice([1, 1, 2, 3])
    sources = []
    wid = [0]
    topics = [f"in{i}" for i in range(rnd.randrange(1, nsrc + 1))]
    for i in range(nsrc):
        json_src = rnd.random() < 0.85
        mine = [s["name"] for s in stores]
        if broker:
            mine = [s["name"] for j, s in enumerate(stores) if j % nsrc == i]
        ctx = {"json": json_src, "stores": mine, "policy": policy,
               "windows": 1, "broker": broker, "wid": wid, "parts": parts}
        src = {"topic": topics[i % len(topics)], "json": json_src,
               "time": json_src and rnd.random() < 0.7,
               "tombstones": rnd.choice(["pass", "skip"]) if json_src else "pass"}
        src["ops"] = rand_ops(rnd, 0, ctx)
        sources.append(src)
    case = {"seed": seed, "partitions": parts, "policy": policy, "stores": stores,
            "sources": sources, "inputs": gen_inputs(rnd, topics, parts, policy, sources)}
    case["timers"] = rand_timers(random.Random(seed * 31 + 7), case, topics)
    if not broker:
        files_for_some_sinks(random.Random(seed * 17 + 3), case)
    return case


def files_for_some_sinks(rnd, case):
    """Some sinks of a driver case write JSON-lines files instead of a
    topic (to_files, a directory each). Drawn apart from the rest, so that
    a seed's pipeline and input stay what they were."""
    n = [0]

    def walk(ops):
        for o in ops:
            if o["op"] == "to" and not o["topic"].startswith("win") and rnd.random() < 0.2:
                o["op"], o["dir"] = "to_files", f"files{n[0]}"
                del o["topic"]
                n[0] += 1
            elif o["op"] == "branch":
                for b in o["branches"]:
                    walk(b)
    for s in case["sources"]:
        walk(s["ops"])

def rand_timers(rnd, case, topics):
    """Stream timers, each reporting its partition, time and a store's
    value of a key. Only where a partition's records come in a fixed order
    (one input topic, no repartition topic): a timer fires as its
    partition's stream time crosses a multiple, so with two topics the
    order a broker hands their records over would decide when."""
    def rekeys(ops):
        return any(o["op"] == "key_by" or (o["op"] == "branch" and any(rekeys(b) for b in o["branches"]))
                   for o in ops)
    if len(topics) > 1 or any(rekeys(s["ops"]) for s in case["sources"]) or rnd.random() < 0.6:
        return []
    timers = []
    for i in range(rnd.randrange(1, 3)):
        st = rnd.choice([None] + [s["name"] for s in case["stores"]])
        timers.append({"every": rnd.choice([20, 50, 100, 250]), "store": st,
                       "key": f"k{rnd.randrange(3)}", "topic": f"tim{i}"})
    return timers


def gen_inputs(rnd, topics, parts, policy, sources):
    recs = []
    t = 1000
    hot = [f"k{i}" for i in range(3)]
    n = rnd.randrange(5, 60)
    for _ in range(n):
        topic = rnd.choice(topics)
        t += rnd.randrange(0, 40)
        ts = max(0, t - (rnd.randrange(0, 200) if rnd.random() < 0.2 else 0))
        if rnd.random() < 0.08:
            key = None
        elif rnd.random() < 0.6:
            key = rnd.choice(hot)
        else:
            key = f"k{rnd.randrange(20)}"
        c = rnd.random()
        odd = None
        if c < 0.05 and policy != "fail":
            value = "{not json"
        elif c < 0.07 and policy != "fail":
            # bad input of other kinds: not UTF-8, half a surrogate pair,
            # a number beyond a double, a top-level null
            odd = rnd.choice(["utf8", "surrogate", "huge", "null"])
            value = {"utf8": None, "surrogate": '{"n":1,"s":"\\ud800","t":%d}' % ts,
                     "huge": '{"n":1e999,"s":"a","t":%d}' % ts, "null": "null"}[odd]
        elif c < 0.09 and policy != "fail":
            value = None  # a tombstone
        else:
            v = {"n": rnd.randrange(0, 100), "s": rnd.choice(SFIELDS), "t": ts}
            if rnd.random() < 0.1:
                del v["n"]
            if rnd.random() < 0.1:
                v["x"] = [1, {"y": "z"}]
            value = json.dumps(v, separators=(",", ":"))
        rec = {"topic": topic, "partition": rnd.randrange(parts), "key": key,
               "value": value, "ts": ts}
        if odd == "utf8":
            rec["value_hex"] = (b'{"n":1,"s":"\xff\xfe","t":' + str(ts).encode() + b"}").hex()
        recs.append(rec)
    return recs


# --- Lua ---------------------------------------------------------------------

def lua_num(e):
    k = e[0]
    if k == "n":
        return "N(r)"
    if k == "add":
        return f"({lua_num(e[1])} + {e[2]})"
    if k == "mul":
        return f"({lua_num(e[1])} * {e[2]})"
    raise ValueError(e)


def lua_pred(e):
    k = e[0]
    if k == "mod":
        return f"({lua_num(e[1])} % {e[2]} == {e[3]})"
    if k == "lt":
        return f"({lua_num(e[1])} < {e[2]})"
    if k == "seq":
        return f'(S(r) == "{e[1]}")'
    raise ValueError(e)


def lua_key(e):
    k = e[0]
    if k == "kmod":
        return f'("g" .. ({lua_num(e[1])} % {e[2]}))'
    if k == "s":
        return "S(r)"
    if k == "keycat":
        return f'((r.key or "nil") .. "{e[1]}")'
    raise ValueError(e)


AGG_LUA = {
    "count": "sproc.agg.count()",
    "sum": "sproc.agg.sum(NV)", "min": "sproc.agg.min(NV)", "max": "sproc.agg.max(NV)",
    "avg": "sproc.agg.avg(NV)", "first": "sproc.agg.first(NV)", "last": "sproc.agg.last(NV)",
    "custom": "LIST",
}


def render_ops(ops, ind, prefix=""):
    out = []
    for o in ops:
        k = o["op"]
        if k == "filter":
            out.append(f"{ind}:filter(function(r) return {lua_pred(o['pred'])} end)")
        elif k == "map":
            out.append(f'{ind}:map(function(r) return {{ n = {lua_num(o["n"])}, s = "{o["s"]}" }} end)')
        elif k == "flat_map":
            out.append(f"{ind}:flat_map(function(r, emit) for i = 1, N(r) % {o['mod'] + 1} do "
                       f"emit({{ n = {lua_num(o['n'])} + i, s = S(r) }}) end end)")
        elif k == "select":
            fs = ", ".join(f'"{f}"' for f in o["fields"])
            out.append(f"{ind}:select{{ {fs} }}")
        elif k == "key_by":
            out.append(f"{ind}:key_by(function(r) return {lua_key(o['key'])} end)")
        elif k == "each":
            out.append(f"{ind}:each(function(r) local _ = N(r) end)")
        elif k == "error_if":
            out.append(f'{ind}:each(function(r) if {lua_pred(o["pred"])} then error("boom " .. N(r)) end end)')
        elif k == "store":
            st, key = o["store"], lua_key(o["key"])
            act = {"incr": f"{st}:incr({key}, 1)", "get": f"{st}:get({key})",
                   "put": f"{st}:put({key}, N(r))", "delete": f"{st}:delete({key})"}[o["action"]]
            if o["emit"]:
                out.append(f"{ind}:map(function(r) local v = {act}; "
                           f"return {{ n = type(v) == 'number' and v or -1, s = S(r) }} end)")
            else:
                out.append(f"{ind}:each(function(r) {act} end)")
        elif k == "branch":
            out.append(f"{ind}:branch(" + ", ".join(f"function(r) return {lua_pred(p)} end"
                                                      for p in o["preds"]) + ")")
            return out, o
        elif k == "window":
            kind = o["kind"]
            parts = [f"grace = {o['grace']}"]
            if kind == "session":
                parts.append(f"gap = {o['gap']}")
            else:
                parts.append(f"size = {o['size']}")
            if kind == "hopping":
                parts.append(f"advance = {o['advance']}")
            out.append(f"{ind}:window(sproc.window.{kind}{{ {', '.join(parts)} }})")
            aggs = ", ".join(f"{n} = {AGG_LUA[a]}" for n, a in sorted(o["aggs"].items()))
            out.append(f"{ind}:aggregate{{ {aggs} }}")
            out.append(f'{ind}:emit "{o["emit"]}"')
            # window results are JSON: later operators read them as values
        elif k == "to":
            out.append(f'{ind}:to{{ topic = "{prefix}{o["topic"]}" }}')
        elif k == "to_files":
            out.append(f'{ind}:to_files{{ dir = "{o["dir"]}", prefix = "f" }}')
        else:
            raise ValueError(k)
    return out, None


def render_lua(case, prefix=""):
    """The case as a sproc script; prefix goes before every topic name (a
    run against a broker)."""
    lines = ['local sproc = require "sproc"']
    pol = case["policy"]
    lines.append(f'sproc.app{{ id = "{prefix}fz", errors = "{pol}"' +
                 (f', dlq = "{prefix}dead"' if pol == "dlq" else "") + " }")
    lines.append("local function N(r) local v = r.value; v = type(v) == 'table' and v.n or nil; "
                 "return type(v) == 'number' and v or 0 end")
    lines.append("local function S(r) local v = r.value; v = type(v) == 'table' and v.s or nil; "
                 "return type(v) == 'string' and v or '-' end")
    lines.append("local function NV(r) local v = r.value; v = type(v) == 'table' and v.n or nil; "
                 "return type(v) == 'number' and v or nil end")
    lines.append("local LIST = sproc.agg.custom{ init = function() return 100 end, "
                 "add = function(a, r) return a + N(r) + 1 end, merge = function(a, b) return a + b end }")
    for st in case["stores"]:
        ttl = f", ttl = {st['ttl']}" if st["ttl"] else ""
        lines.append(f'local {st["name"]} = sproc.store{{ name = "{st["name"]}", backend = "{st["backend"]}"{ttl} }}')
    for t in case.get("timers", []):
        v = f"local v = {t['store']}:get(\"{t['key']}\"); " if t["store"] else "local v = nil; "
        lines.append(f"sproc.timer{{ every = {t['every']} }}")
        lines.append(f"  :map(function(r) {v}return {{ p = r.partition, t = r.ts, "
                     f"v = type(v) == 'number' and v or -1 }} end)")
        lines.append(f'  :to{{ topic = "{prefix}{t["topic"]}" }}')
    for i, src in enumerate(case["sources"]):
        opts = [f'topic = "{prefix}{src["topic"]}"']
        if src["json"]:
            opts.append('value = "json"')
            opts.append(f'tombstones = "{src["tombstones"]}"')
        if src["time"]:
            opts.append("time = function(r) return r.value.t end")
        lines.append(f"local src{i} = sproc.source{{ {', '.join(opts)} }}")
        body, br = render_ops(src["ops"], "  ", prefix)
        lines.append(f"local chain{i} = src{i}")
        lines.extend(body)
        if br:
            names = [f"b{i}_{j}" for j in range(len(br["preds"]))]
            lines[-len(body) - 1] = f"local {', '.join(names)} = src{i}"
            for j, sub in enumerate(br["branches"]):
                sb, _ = render_ops(sub, "  ", prefix)
                lines.append(names[j])
                lines.extend(sb)
    return "\n".join(lines) + "\n"
