"""Keys land where Kafka's Java producer would put them: murmur2, computed
here independently of librdkafka."""
import json

from conftest import FAST, write_script


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (Java), on unsigned 32-bit arithmetic."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = data[4 * n4:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_reference_values():
    # values from Kafka's own UtilsTest.testMurmur2
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}
    for k, want in cases.items():
        got = murmur2(k)
        got = got - (1 << 32) if got >= 1 << 31 else got
        assert got == want, k


def test_1000_keys_land_on_the_java_partition(kafka, sproc, tmp_path):
    src = kafka.create("in", partitions=1)
    dst = kafka.create("out", partitions=7)
    kafka.produce("in", [(None, {"user": f"user-{i}"}) for i in range(1000)])
    script = write_script(tmp_path, "p.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}
  :key_by(function(r) return r.value.user end)
  :to{{ topic = "{dst}" }}
""")
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", kafka.topic("app"), "--until-end"] + FAST)
    assert p.wait(120) == 0, p.stderr()
    out = kafka.read("out")
    assert len(out) == 1000
    for r in out:
        assert r["key"] == json.loads(r["value"])["user"].encode()
        assert r["partition"] == java_partition(r["key"], 7), r["key"]
    assert len({r["partition"] for r in out}) == 7
