"""Parquet through sproc, read back by pyarrow and DuckDB.

1,000,000 trips (scripts/gen_trips, made to cover every type: nulls, a
boolean, a nested struct that is sometimes null) go from Kafka through a
source schema into two Parquet sinks at once: dictionary + snappy and plain
+ zstd, both with several row groups per file. Every row and value read
back equals what the input says under the schema.

The crash test SIGKILLs a continuous run 5 times while input arrives, with
files rolling every second and a checkpoint: the published files hold each
input record exactly once."""
import datetime as dt
import glob
import json
import os
import random
import subprocess
import threading
import time

import pytest
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from conftest import FAST, ROOT, wait_until, write_script

N = 1_000_000

SCHEMA_LUA = """
local trip = sproc.schema{
  { "id", "int64", nullable = false },
  { "vendorid", "int64" },
  { "pickup", "timestamp" },
  { "passengers", "int64" },
  { "distance", "double" },
  { "flag", "string" },
  { "cash", "boolean" },
  { "tip", "double" },
  { "total", "double", nullable = false },
  { "at", { { "lon", "double", nullable = false }, { "lat", "double" } } },
}
"""

ARROW = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    ("vendorid", pa.int64()),
    ("pickup", pa.timestamp("ms", tz="UTC")),
    ("passengers", pa.int64()),
    ("distance", pa.float64()),
    ("flag", pa.string()),
    ("cash", pa.bool_()),
    ("tip", pa.float64()),
    pa.field("total", pa.float64(), nullable=False),
    ("at", pa.struct([pa.field("lon", pa.float64(), nullable=False), ("lat", pa.float64())])),
])


def trips(n, seed, tmp_path):
    """The input records (JSON text) and the rows they should become."""
    path = tmp_path / f"trips-{seed}.jsonl"
    subprocess.run([os.path.join(ROOT, "scripts", "gen_trips"), "--count", str(n), "--seed",
                    str(seed), "--out", str(path)], check=True)
    rnd = random.Random(seed)
    values, rows = [], []
    with open(path) as f:
        for i, line in enumerate(f):
            t = json.loads(line)
            v = {"id": i, "vendorid": t["vendorid"], "pickup": t["lpep_pickup_datetime"],
                 "passengers": t["passenger_count"], "distance": float(t["trip_distance"]),
                 "flag": t["store_and_fwd_flag"], "cash": t["payment_type"] == "2",
                 "tip": t["tip_amount"], "total": t["total_amount"], "ignored": "x",
                 "at": {"lon": float(t["pickup_longitude"]), "lat": t["pickup_latitude"]}}
            # nulls of every kind: missing, JSON null, "" for non-strings, a null struct
            r = rnd.random()
            if r < 0.02:
                del v["tip"]
            elif r < 0.04:
                v["cash"] = None
            elif r < 0.06:
                v["passengers"] = ""
            elif r < 0.08:
                v["at"] = None
            elif r < 0.10:
                del v["at"]["lat"]
            elif r < 0.11:
                v["flag"] = "caf\u00e9 \"quoted\""
            values.append(json.dumps(v, separators=(",", ":")))
            pickup = dt.datetime.strptime(t["lpep_pickup_datetime"], "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=dt.timezone.utc)
            at = v["at"]
            rows.append({
                "id": i, "vendorid": int(t["vendorid"]), "pickup": pickup,
                "passengers": None if v["passengers"] == "" else int(v["passengers"]),
                "distance": v["distance"], "flag": v["flag"], "cash": v["cash"],
                "tip": float(v["tip"]) if "tip" in v else None, "total": float(v["total"]),
                "at": None if at is None else {"lon": at["lon"],
                                               "lat": float(at["lat"]) if "lat" in at else None}})
    return values, pa.Table.from_pylist(rows, schema=ARROW)


def read_dir(d):
    files = sorted(glob.glob(os.path.join(d, "*.parquet")))
    assert files, f"no Parquet file in {d}"
    return files, pa.concat_tables([pq.read_table(f) for f in files]).sort_by("id")


def test_million_trips_read_back_by_pyarrow_and_duckdb(kafka, sproc, tmp_path):
    values, want = trips(N, 11, tmp_path)
    topic = kafka.create("pq-trips", partitions=4)
    kafka.produce("pq-trips", ((str(i % 7), v) for i, v in enumerate(values)))
    script = write_script(tmp_path, "to_parquet.lua", f"""
local sproc = require "sproc"
{SCHEMA_LUA}
local s = sproc.source{{ topic = "{topic}", schema = trip }}
s:to_parquet{{ dir = "dict", compression = "snappy", row_group_rows = 60000 }}
s:to_parquet{{ dir = "plain", compression = "zstd", dictionary = false,
               row_group_bytes = 4 * 1024 * 1024, roll_bytes = 40 * 1024 * 1024 }}
""")
    t0 = time.monotonic()
    run = sproc([script, "--brokers", kafka.bootstrap, "--until-end",
                 "--app", kafka.topic("pq-app")] + FAST, name="parquet")
    assert run.wait(300) == 0, run.stderr()
    print(f"1M records into two Parquet sinks in {time.monotonic() - t0:.1f} s (with start-up)")

    for d, codec, dictionary in (("dict", "SNAPPY", True), ("plain", "ZSTD", False)):
        files, got = read_dir(tmp_path / d)
        assert got.num_rows == N
        assert got.cast(ARROW).equals(want), f"{d}: rows differ from the input"
        groups = [pq.ParquetFile(f).metadata.num_row_groups for f in files]
        assert max(groups) >= 3, f"{d}: row groups per file {groups}"
        md = pq.ParquetFile(files[0]).metadata
        cols = [md.row_group(0).column(c) for c in range(md.num_columns)]
        assert {c.compression for c in cols} == {codec}
        assert any(c.has_dictionary_page for c in cols) == dictionary
        if dictionary:  # a low-cardinality column is dictionary-encoded
            flag = next(c for c in cols if c.path_in_schema == "flag")
            assert "PLAIN_DICTIONARY" in flag.encodings
        # DuckDB reads the same rows
        con = duckdb.connect()
        dk = con.sql(f"SELECT * FROM read_parquet('{tmp_path / d}/*.parquet') ORDER BY id").arrow()
        if isinstance(dk, pa.RecordBatchReader):
            dk = dk.read_all()
        assert dk.num_rows == N
        for name in ARROW.names:
            # DuckDB gives a null struct's children nulls: compare as nullable
            t = ARROW.field(name).type
            if name == "at":
                t = pa.struct([("lon", pa.float64()), ("lat", pa.float64())])
            assert dk.column(name).cast(t).equals(want.column(name).cast(t)), \
                f"{d}: DuckDB reads column {name} differently"


def published_rows(chk):
    n = 0
    for e in glob.glob(os.path.join(chk, "*.commit")):
        with open(e) as f:
            for line in f:
                if line.startswith("rows "):
                    n += int(line.split()[1])
    return n


@pytest.mark.parametrize("partition_by", [None, "vendorid"])
def test_parquet_exactly_once_across_kills(kafka, sproc, tmp_path, partition_by):
    """Also with Hive-style partition directories (one open file per
    vendor, published together under one checkpoint entry)."""
    total, rate = 300_000, 25_000
    values, want = trips(total, 12, tmp_path)
    name = "pq-crash" + (f"-{partition_by}" if partition_by else "")
    topic = kafka.create(name, partitions=4)
    parts = f', partition_by = {{ "{partition_by}" }}' if partition_by else ""
    script = write_script(tmp_path, "crash.lua", f"""
local sproc = require "sproc"
{SCHEMA_LUA}
sproc.source{{ topic = "{topic}", schema = trip }}
  :to_parquet{{ dir = "out", compression = "zstd", roll_seconds = 1, checkpoint = "chk",
               row_group_rows = 2000{parts} }}
""")
    # offsets are committed every 5 s while files publish every second: most
    # kills land after a publication and before its commit, so the restart
    # reads published records again and must not write them twice
    args = [script, "--brokers", kafka.bootstrap, "--app", kafka.topic(name + "-app"),
            "--set", f"group.instance.id={name}-1"] + FAST + [
            "--set", "sproc.commit.interval.ms=5000"]
    in_progress = str(tmp_path / "out" / ("*/" if partition_by else "") / ".*.inprogress")

    def feed():  # input keeps arriving while sproc is killed and restarted
        step = rate // 10
        for i in range(0, total, step):
            kafka.produce(name, ((str(j % 7), values[j]) for j in range(i, min(i + step, total))))
            time.sleep(0.1)
    feeder = threading.Thread(target=feed)
    feeder.start()
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    marks = sorted(rnd.uniform(0.1, 0.8) * total for _ in range(5))
    unpublished_at_kill = []
    try:
        for k, mark in enumerate(marks):
            run = sproc(args, name=f"run{k}")
            wait_until(lambda: published_rows(tmp_path / "chk") >= mark, timeout=180,
                       what=f"kill {k} at {int(mark)} published rows (seed {seed})")
            wait_until(lambda: any(os.path.getsize(f) > 4 for f in glob.glob(in_progress)),
                       timeout=30, what="an open file with rows")
            unpublished_at_kill.append(max(os.path.getsize(f) for f in glob.glob(in_progress)))
            run.kill()
    finally:
        feeder.join()
    last = sproc(args, name="last")
    wait_until(lambda: published_rows(tmp_path / "chk") >= total, timeout=180,
               what=f"all rows published (seed {seed})")
    last.signal(15)
    assert last.wait(60) == 0, last.stderr()
    print(f"kills at {[int(m) for m in marks]} published rows (seed {seed}); "
          f"open-file bytes at each kill: {unpublished_at_kill}")
    if partition_by:
        files = sorted(glob.glob(str(tmp_path / "out" / "*" / "*.parquet")))
        assert {os.path.basename(os.path.dirname(f)) for f in files} == \
            {f"{partition_by}={v}" for v in set(want.column(partition_by).to_pylist())}
        part = ds.partitioning(pa.schema([(partition_by, pa.int64())]), flavor="hive")
        got = ds.dataset(str(tmp_path / "out"), format="parquet", partitioning=part) \
            .to_table().select(ARROW.names).sort_by("id")
    else:
        files, got = read_dir(tmp_path / "out")
    ids = got.column("id").to_pylist()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} rows twice (seed {seed})"
    assert len(ids) == total, f"{total - len(ids)} rows missing (seed {seed})"
    assert got.cast(ARROW).equals(want)
    # every published file is listed, and nothing is left in progress
    listed = {ln[5:].strip() for e in glob.glob(str(tmp_path / "chk" / "*.commit"))
              for ln in open(e) if ln.startswith("file ")}
    assert {os.path.relpath(f, tmp_path / "out") for f in files} == listed
    assert not glob.glob(in_progress)
