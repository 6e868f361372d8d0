"""sproc capture (issue 20 #3): a slice of a real topic into a fixture
that sproc.testing replays. A keyed count runs live on 3,000 records over
2 partitions (some with headers, one key that is not UTF-8, one
tombstone); the whole topic is captured, and the spec that replays the
fixture through the same script gets the outputs the live run produced,
record for record. Offsets, times, a key and a maximum narrow a capture."""
import json
import os
import subprocess

from conftest import FAST, SPROC, wait_until, write_script


def test_a_captured_slice_replays_to_the_live_outputs(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2)
    recs = []
    for i in range(3000):
        key = f"user{i % 37}".encode()
        headers = [("origin", b"web")] if i % 10 == 0 else None
        if i == 7:
            headers = [("trace", b"\x00\xff\x01"), ("origin", b"web")]
        recs.append((key, {"i": i, "amount": i % 50}, headers, 1_700_000_000_000 + i))
    recs.append((b"\xff\xfebinary", {"i": 3000, "amount": 42}))
    recs.append((b"user1", None))
    kafka.produce("in", recs)
    script = write_script(tmp_path, "counts.lua", f"""
local sproc = require "sproc"
local counts = sproc.store{{ name = "counts" }}
sproc.source{{ topic = "{src}", value = "json", tombstones = "skip" }}
  :filter(function(r) return r.value.amount > 10 end)
  :map(function(r)
    return {{ n = counts:incr(r.key), i = r.value.i, ts = r.ts,
             origin = r.headers and r.headers.origin or nil }}
  end)
  :to{{ topic = "{dst}" }}
""")
    live = sproc([script, "--brokers", kafka.bootstrap, "--until-end",
                  "--app", kafka.topic("app")] + FAST, name="live")
    assert live.wait(120) == 0, live.stderr()
    want = sorted((r["key"], r["value"]) for r in kafka.read("out"))

    fixture = tmp_path / "slice.jsonl"
    cap = subprocess.run([SPROC, "capture", src, "--brokers", kafka.bootstrap, "--out",
                          str(fixture)], capture_output=True, text=True, timeout=60)
    assert cap.returncode == 0, cap.stderr
    lines = [json.loads(x) for x in fixture.read_text().splitlines()]
    assert len(lines) == len(recs) and "3002 records" in cap.stderr
    assert any("key_b64" in x for x in lines) and any(x["value"] is None for x in lines)
    assert sum(1 for x in lines if x.get("headers") == [["origin", "web"]]) == 300
    assert [x["headers"] for x in lines if x["offset"] is not None and
            json.loads(x["value"] or "null") and json.loads(x["value"])["i"] == 7] == \
        [[["trace", {"b_b64": "AP8B"}], ["origin", "web"]]]

    got_path = tmp_path / "replayed.jsonl"
    spec = tmp_path / "replay_spec.lua"
    spec.write_text(f"""
local testing = require "sproc.testing"
local function hex(s)
  return s and (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) or ""
end
describe("the captured slice", function()
  it("replays", function()
    local d = testing.driver{{ script = "{script}", partitions = 2 }}
    d:pipe("{src}", testing.fixture("{fixture}"))
    local f = assert(io.open("{got_path}", "w"))
    for _, o in ipairs(d:output("{dst}")) do f:write(hex(o.key), " ", o.value, "\\n") end
    f:close()
  end)
end)
""")
    run = subprocess.run([SPROC, "test", str(spec)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    def canon(v):  # a Lua table's keys come in no fixed order: compare values
        return json.dumps(json.loads(v), sort_keys=True)
    got = sorted((k, canon(v)) for k, v in (x.split(" ", 1) for x in got_path.read_text().splitlines()))
    want = sorted((k.hex(), canon(v)) for k, v in want)
    print(f"live outputs {len(want)}, replayed {len(got)}")
    assert len(want) > 1000 and got == want, "the replay differs from the live run"

    # narrowed: one partition from an offset, a time bound, a key, a maximum
    def capture(*args):
        r = subprocess.run([SPROC, "capture", src, "--brokers", kafka.bootstrap] + list(args),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [json.loads(x) for x in r.stdout.splitlines()]
    part = capture("--partition", "1", "--from", "100", "--to", "110")
    assert [x["offset"] for x in part] == list(range(100, 110))
    assert {x["partition"] for x in part} == {1}
    one = capture("--key", "user5", "--max", "7")
    assert len(one) == 7 and {x["key"] for x in one} == {"user5"}
    timed = capture("--from", "2023-11-14T22:13:21Z", "--to", "2023-11-14T22:13:21.010Z")
    assert sorted(x["timestamp"] - 1_700_000_000_000 for x in timed) == list(range(1000, 1010))
    bad = subprocess.run([SPROC, "capture", "no-such-topic", "--brokers", kafka.bootstrap],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not found" in bad.stderr
