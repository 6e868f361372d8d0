"""The expected outputs of a generated case, from the README's semantics
(and Kafka Streams' rules for windows, where the README defers to them),
written without looking at sproc's code.

expected(case) gives {topic: [(key, value)]} for plain outputs and, for the
topics a windowed aggregation writes, the final result of each window. A
window result in "update" mode is compared by its last value per window
(how many intermediate results a batch gives is not fixed).
"""
import copy
import json
import math

from gen import SFIELDS  # noqa: F401  (the shared vocabulary of the templates)


class ScriptError(Exception):
    pass


class BadInput(Exception):
    pass


# --- Kafka's default partitioner (the Java client's murmur2) -----------------

def murmur2(data):
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key, n):
    return (murmur2(key.encode()) & 0x7FFFFFFF) % n


# --- a record as the operators see it ------------------------------------------

def raw_value(raw):
    """The input's value as text (bytes that are not UTF-8 kept as
    surrogate escapes), or None for a tombstone."""
    if raw.get("value_hex"):
        return bytes.fromhex(raw["value_hex"]).decode("utf-8", "surrogateescape")
    return raw["value"]


def strict_json(text):
    """JSON as the README takes it: UTF-8 text, strings without half a
    surrogate pair, numbers within a double's range."""
    v = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    def walk(x):
        if isinstance(x, float) and math.isinf(x):
            raise ValueError("number out of range")
        if isinstance(x, str):
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in x):
                raise ValueError("not UTF-8, or half a surrogate pair")
        elif isinstance(x, dict):
            for k, y in x.items():
                walk(k)
                walk(y)
        elif isinstance(x, list):
            for y in x:
                walk(y)
    walk(v)
    return v


class Rec:
    def __init__(self, src, raw):
        self.raw = raw
        self.key = raw["key"]
        self.ts = raw["ts"]
        self.partition = raw["partition"]
        self.value = None       # a dict for JSON objects, a str, or None
        self.replaced = False   # the value is not the record's own
        self.projected = None   # select()'s fields while its projection is the value
        self.rekeyed = False


def N(r):
    v = r.value.get("n") if isinstance(r.value, dict) else None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def NV(r):
    v = r.value.get("n") if isinstance(r.value, dict) else None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def S(r):
    v = r.value.get("s") if isinstance(r.value, dict) else None
    return v if isinstance(v, str) else "-"


def num(e, r):
    k = e[0]
    if k == "n":
        return N(r)
    if k == "add":
        return num(e[1], r) + e[2]
    if k == "mul":
        return num(e[1], r) * e[2]
    raise ValueError(e)


def lua_mod(a, b):
    return a - math.floor(a / b) * b


def pred(e, r):
    k = e[0]
    if k == "mod":
        return lua_mod(num(e[1], r), e[2]) == e[3]
    if k == "lt":
        return num(e[1], r) < e[2]
    if k == "seq":
        return S(r) == e[1]
    raise ValueError(e)


def lua_num_text(v):
    """A number as Lua's tostring/.. writes it (integral doubles without
    a fraction)."""
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def keyof(e, r):
    k = e[0]
    if k == "kmod":
        return "g" + lua_num_text(lua_mod(num(e[1], r), e[2]))
    if k == "s":
        return S(r)
    if k == "keycat":
        return (r.key if r.key is not None else "nil") + e[1]
    raise ValueError(e)


# --- stream time and stores -----------------------------------------------------

class Clocks:
    """Stream time per task (a source declaration) and partition: the
    highest record time it has read, per record."""

    def __init__(self):
        self.t = {}

    def see(self, task, part, ts):
        self.t[(task, part)] = max(self.t.get((task, part), -1), ts)

    def of(self, tasks, part):
        if not tasks:
            vals = [v for (t, p), v in self.t.items() if p == part]
        else:
            vals = [v for (t, p), v in self.t.items() if p == part and t in tasks]
        return max(vals) if vals else -1


class Store:
    def __init__(self, spec):
        self.ttl = spec["ttl"]
        self.data = {}      # (partition, key) -> (value, ts)
        self.tasks = set()  # tasks whose records wrote it

    def now(self, clocks, r, task):
        t = clocks.of(self.tasks, r.partition)
        if not self.tasks or task in self.tasks:
            t = max(t, r.ts)
        return max(t, 0)

    def get(self, clocks, r, task, key):
        e = self.data.get((r.partition, key))
        if e is None:
            return None
        if self.ttl and e[1] <= self.now(clocks, r, task) - self.ttl:
            return None
        return e[0]

    def write(self, clocks, r, task, key, value):
        self.tasks.add(task)
        if value is None:
            self.data.pop((r.partition, key), None)
        else:
            self.data[(r.partition, key)] = (value, self.now(clocks, r, task))


# --- windows --------------------------------------------------------------------

# The generated Lua aggregate: init() = 100 (not neutral, so that how
# accumulators combine shows), add(a, r) = a + N(r) + 1, merge(a, b) = a + b.
INIT = 100


class Acc:
    def __init__(self, aggs):
        self.aggs = aggs
        self.recs = []  # (arrival, ts, nv, custom)
        self.custom = INIT

    def add(self, arrival, ts, nv, n):
        self.recs.append((arrival, ts, nv, n + 1))
        self.custom += n + 1

    def result(self, start, end):
        out = {"window_start": start, "window_end": end}
        rs = sorted(self.recs)
        vals = [(a, ts, nv) for a, ts, nv, _ in rs if nv is not None]
        for name, a in self.aggs.items():
            if a == "count":
                out[name] = len(rs)
            elif a == "custom":
                out[name] = self.custom
            elif a == "sum":  # of no values: 0
                out[name] = float(sum(v for _, _, v in vals))
            elif not vals:
                out[name] = None
            elif a == "min":
                out[name] = min(v for _, _, v in vals)
            elif a == "max":
                out[name] = max(v for _, _, v in vals)
            elif a == "avg":
                out[name] = sum(v for _, _, v in vals) / len(vals)
            elif a == "first":  # the earliest time; among equal times the first to arrive
                out[name] = min(vals, key=lambda x: (x[1], x[0]))[2]
            elif a == "last":   # the latest time; among equal times the last to arrive
                out[name] = max(vals, key=lambda x: (x[1], x[0]))[2]
        return out

    def max_ts(self):
        return max(ts for _, ts, _, _ in self.recs)


class WindowOp:
    """One aggregation: its windows per (partition, key), stream time per
    partition of its input."""

    def __init__(self, spec, topic, out):
        self.w = spec
        self.topic = topic
        self.out = out          # the model's output collector
        self.stream = {}        # partition -> stream time
        self.open = {}          # (partition, key) -> {start: (end, Acc)}
        self.sessions = {}      # (partition, key) -> list of [start, end, Acc]
        self.raw = {}           # sliding: (partition, key) -> [(ts, arrival, nv, n)]
        self.custom = {}        # sliding: (partition, key, start) -> the Lua aggregate
        self.late = 0

    def emit(self, key, start, end, acc, tombstone=False):
        self.out.window_result(self.topic, self.w["emit"], key, start, end,
                               None if tombstone else acc.result(start, end))

    # tumbling and hopping: [s, s + size), s a multiple of advance
    def add_fixed(self, part, key, r, arrival):
        size = self.w["size"]
        adv = self.w.get("advance", size)
        stream = self.stream[part]
        wins = self.open.setdefault((part, key), {})
        s = r.ts - r.ts % adv
        while s >= 0 and s > r.ts - size:
            e = s + size
            if e <= stream - self.w["grace"]:
                self.late += 1
            else:
                if s not in wins:
                    wins[s] = (e, Acc(self.w["aggs"]))
                wins[s][1].add(arrival, r.ts, NV(r), N(r))
                if self.w["emit"] == "update":
                    self.emit(key, s, e, wins[s][1])
            s -= adv

    def close_fixed(self, part, everything):
        stream = self.stream.get(part, -1)
        for (p, key), wins in self.open.items():
            if p != part:
                continue
            for s in sorted(list(wins)):
                e, acc = wins[s]
                if everything or e + self.w["grace"] <= stream:
                    if self.w["emit"] == "final":
                        self.emit(key, s, e, acc)
                    del wins[s]

    # sessions: Kafka Streams' rules; a closed session takes no record
    def session_open(self, sess, stream):
        return sess[1] + self.w["gap"] + self.w["grace"] >= stream

    def add_session(self, part, key, r, arrival):
        gap, grace = self.w["gap"], self.w["grace"]
        stream = self.stream[part]
        ss = self.sessions.setdefault((part, key), [])
        merged = [x for x in ss if self.session_open(x, stream) and
                  x[1] >= r.ts - gap and x[0] <= r.ts + gap]
        start = min([r.ts] + [x[0] for x in merged])
        end = max([r.ts] + [x[1] for x in merged])
        if end < stream - grace - gap:
            self.late += 1
            return
        acc = Acc(self.w["aggs"])   # Kafka Streams: init(), merge each, add
        for x in sorted(merged):
            acc.recs.extend(x[2].recs)
            acc.custom += x[2].custom
            ss.remove(x)
            if self.w["emit"] == "update":
                self.emit(key, x[0], x[1], x[2], tombstone=True)
        acc.add(arrival, r.ts, NV(r), N(r))
        ss.append([start, end, acc])
        if self.w["emit"] == "update":
            self.emit(key, start, end, acc)

    def close_sessions(self, part, everything):
        stream = self.stream.get(part, -1)
        for (p, key), ss in self.sessions.items():
            if p != part:
                continue
            for x in list(ss):
                if everything or not self.session_open(x, stream):
                    if self.w["emit"] == "final":
                        self.emit(key, x[0], x[1], x[2])
                    ss.remove(x)

    # sliding windows: Kafka Streams' SlidingWindows
    def add_sliding(self, part, key, r, arrival):
        size, grace = self.w["size"], self.w["grace"]
        stream = self.stream[part]
        t = r.ts
        if t + size + grace < stream:
            self.late += 1
            return
        if t + grace < stream:
            self.late += 1  # its own window closed: it joins the others
        raw = self.raw.setdefault((part, key), [])
        raw.append((t, arrival, NV(r), N(r)))
        wins = self.open.setdefault((part, key), {})
        made = set()

        def make(start):
            end = start + size
            if end + grace < stream or start in wins:
                return
            wins[start] = end
            made.add(start)
            # a new window's Lua aggregate: init() merged with the records'
            # own accumulators (add(init(), r) each)
            self.custom[(part, key, start)] = INIT + sum(
                INIT + n + 1 for ts, _, _, n in raw if start <= ts <= end)

        make(max(0, t - size))
        if any(t < x[0] <= t + size for x in raw):
            make(t + 1)
        for x in raw:
            if t - size <= x[0] <= t - 1:
                make(x[0] + 1)
        for s, e in wins.items():
            if s <= t <= e and s not in made and e + 1 + grace > stream:
                self.custom[(part, key, s)] += N(r) + 1
        if self.w["emit"] == "update":
            self.changed = getattr(self, "changed", set())
            for s, e in wins.items():
                if s <= t <= e or s == t + 1:
                    self.changed.add((part, key, s))

    def sliding_acc(self, part, key, s, e):
        acc = Acc(self.w["aggs"])
        for ts, arrival, nv, n in self.raw.get((part, key), []):
            if s <= ts <= e:
                acc.add(arrival, ts, nv, n)
        acc.custom = self.custom[(part, key, s)]
        return acc

    def close_sliding(self, part, everything):
        stream = self.stream.get(part, -1)
        for (p, key), wins in self.open.items():
            if p != part:
                continue
            for s in sorted(list(wins)):
                e = wins[s]
                if everything or e + 1 + self.w["grace"] <= stream:
                    acc = self.sliding_acc(p, key, s, e)
                    if acc.recs:
                        self.emit(key, s, e, acc)
                    del wins[s]

    def flush_updates(self):
        """Sliding windows in update mode: each changed window's content."""
        for part, key, s in sorted(getattr(self, "changed", set())):
            wins = self.open.get((part, key), {})
            if s in wins:
                self.emit(key, s, wins[s], self.sliding_acc(part, key, s, wins[s]))
        self.changed = set()

    def add(self, part, key, r, arrival):
        self.stream[part] = max(self.stream.get(part, -1), r.ts)
        kind = self.w["kind"]
        if kind == "session":
            self.add_session(part, key, r, arrival)
        elif kind == "sliding":
            self.add_sliding(part, key, r, arrival)
        else:
            self.add_fixed(part, key, r, arrival)

    def close(self, everything=False):
        parts = set(self.stream) | {p for p, _ in self.open} | {p for p, _ in self.sessions}
        if self.w["kind"] == "sliding" and self.w["emit"] == "update":
            self.flush_updates()
        for part in sorted(parts):
            if self.w["kind"] == "session":
                self.close_sessions(part, everything)
            elif self.w["kind"] == "sliding":
                self.close_sliding(part, everything)
            else:
                self.close_fixed(part, everything)


# --- the whole case -------------------------------------------------------------

class Outputs:
    def __init__(self):
        self.plain = {}    # topic -> [(key, value)]
        self.windows = {}  # topic -> {(key, start): value or None}
        self.window_topics = set()

    def write(self, topic, key, value):
        self.plain.setdefault(topic, []).append((key, value))

    def window_result(self, topic, mode, key, start, end, value):
        self.window_topics.add(topic)
        if mode == "final":
            self.plain.setdefault(topic, []).append((key, value))
        else:
            self.windows.setdefault(topic, {})[(key, start)] = value


def encode_value(r):
    if r.value is None:
        return None
    if isinstance(r.value, str):
        return r.value
    return r.value  # compared decoded


class Model:
    def __init__(self, case):
        self.case = case
        self.out = Outputs()
        self.clocks = Clocks()
        self.stores = {s["name"]: Store(s) for s in case["stores"]}
        self.windows = {}  # id(op dict) -> WindowOp
        self.arrival = 0

    def window_of(self, op, then):
        w = self.windows.get(id(op))
        if w is None:
            # a window's operators after it are a sink (gen.py)
            w = WindowOp(op, then["topic"], self.out)
            self.windows[id(op)] = w
        return w

    def run_ops(self, ops, r, task):
        for i, o in enumerate(ops):
            k = o["op"]
            if k == "filter":
                if not pred(o["pred"], r):
                    return
            elif k == "map":
                r.value = {"n": num(o["n"], r), "s": o["s"]}
                r.replaced, r.projected = True, None
            elif k == "flat_map":
                count = int(lua_mod(N(r), o["mod"] + 1))
                base = num(o["n"], r)
                s = S(r)
                for j in range(1, count + 1):
                    r2 = copy.copy(r)
                    r2.value, r2.replaced, r2.projected = {"n": base + j, "s": s}, True, None
                    self.run_ops(ops[i + 1:], r2, task)
                return
            elif k == "select":
                if raw_value(r.raw) is not None and not isinstance(r.value, dict):
                    raise BadInput("select(): the value is not a JSON object")
                if r.value is not None:
                    r.value = {f: r.value.get(f) for f in o["fields"] if r.value.get(f) is not None}
                    r.projected = o["fields"]
                    r.replaced = True
            elif k == "key_by":
                r.key = keyof(o["key"], r)
                r.rekeyed = True
            elif k == "each":
                pass
            elif k == "error_if":
                if pred(o["pred"], r):
                    raise ScriptError("boom")
            elif k == "store":
                st = self.stores[o["store"]]
                key = keyof(o["key"], r)
                a = o["action"]
                if a == "incr":
                    cur = st.get(self.clocks, r, task, key)
                    v = (cur if isinstance(cur, (int, float)) else 0) + 1
                    st.write(self.clocks, r, task, key, v)
                elif a == "get":
                    v = st.get(self.clocks, r, task, key)
                elif a == "put":  # put and delete return true
                    st.write(self.clocks, r, task, key, N(r))
                    v = True
                else:
                    st.write(self.clocks, r, task, key, None)
                    v = None
                if o["emit"]:
                    isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
                    r.value = {"n": v if isnum else -1, "s": S(r)}
                    r.replaced, r.projected = True, None
            elif k == "branch":
                for p, sub in zip(o["preds"], o["branches"]):
                    if pred(p, r):
                        self.run_ops(sub, r, task)
                        return
                return
            elif k == "window":
                if r.key is None:
                    return  # dropped before the aggregation
                w = self.window_of(o, ops[i + 1])
                part = r.partition
                if getattr(r, "rekeyed", False):
                    part = partition_for(r.key, self.case["partitions"])
                self.arrival += 1
                w.add(part, r.key, r, self.arrival)
                return  # results come at close
            elif k in ("to", "to_files"):
                value = r.value
                if getattr(r, "projected", None) is not None and value is not None:
                    value = {f: r.value.get(f) for f in r.projected}
                elif not r.replaced:
                    value = raw_value(r.raw)  # the record's own bytes
                if k == "to":
                    self.out.write(o["topic"], r.key, value)
                else:  # a line of the value (no key); a tombstone's is empty
                    self.out.write("file:" + o["dir"], None, value)
            else:
                raise ValueError(k)

    def process(self, raw):
        # a record moves the stream time of every source that reads it
        # (event times equal the Kafka timestamps in generated inputs)
        for task, src in enumerate(self.case["sources"]):
            if src["topic"] == raw["topic"]:
                self.clocks.see(task, raw["partition"], raw["ts"])
        for task, src in enumerate(self.case["sources"]):
            if src["topic"] != raw["topic"]:
                continue
            r = Rec(src, raw)
            try:
                text = raw_value(raw)
                if text is None:
                    if src["json"] and src["tombstones"] == "skip":
                        continue
                    r.value = None
                elif src["json"]:
                    try:
                        r.value = strict_json(text)
                    except ValueError:
                        raise BadInput("malformed JSON")
                else:
                    r.value = text
                if src["time"]:
                    if not isinstance(r.value, dict):
                        raise ScriptError("no time")
                    r.ts = r.value["t"]
                self.run_ops(src["ops"], r, task)
            except (ScriptError, BadInput):
                pol = self.case["policy"]
                if pol == "fail":
                    raise
                if pol == "dlq":
                    self.out.write("dead", raw["key"], raw_value(raw))

    def fire_timers(self, part, before):
        """Stream timers, right after a record of partition part (which
        had stream time before it): each fires once when the record made
        the partition's stream time cross its next multiple of every."""
        now = self.clocks.of(None, part)
        for i, t in enumerate(self.case.get("timers", [])):
            every = t["every"]
            nxt = self.timer_next.get((i, part))
            if nxt is None:
                base = before if before >= 0 else now
                nxt = base - base % every + every
            if now >= nxt:
                r = Rec(None, {"topic": None, "partition": part, "key": None, "value": None, "ts": now})
                v = None
                if t["store"]:
                    v = self.stores[t["store"]].get(self.clocks, r, None, t["key"])
                isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
                self.out.write(t["topic"], None, {"p": part, "t": now, "v": v if isnum else -1})
                nxt = now - now % every + every
            self.timer_next[(i, part)] = nxt

    def run(self, close_at_end=True):
        self.timer_next = {}
        for raw in self.case["inputs"]:
            before = self.clocks.of(None, raw["partition"])
            self.process(raw)
            self.fire_timers(raw["partition"], before)
            for w in self.windows.values():
                w.close()
        if close_at_end:  # the end of a bounded run
            for w in self.windows.values():
                w.close(everything=True)
        return self.out


def expected(case, close_at_end=True):
    return Model(case).run(close_at_end)
