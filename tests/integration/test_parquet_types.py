"""Parquet as Spark users expect it: dates, decimals and lists; column
statistics that readers use to skip row groups; Hive-style partition
directories.

60,000 trips go from a one-partition topic (so that ids rise through the
files) through a source schema into two Parquet sinks: one plain, one
partitioned by pickup date with a checkpoint. pyarrow reads both back to
the values the input holds under the schema (decimals rounded half up as
Spark rounds them), every column chunk's min, max and null count equal
what its rows hold, DuckDB's scan of a filtered query reads one row group
in twelve, and DuckDB and pyarrow read the partition directories as
columns."""
import datetime as dt
import decimal
import glob
import os
import random
import re

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from conftest import FAST, write_script

N = 60_000
GROUP = 5_000
DAYS = 7

SCHEMA_LUA = """
local trip = sproc.schema{
  { "id", "int64", nullable = false },
  { "pickup", "timestamp" },
  { "pickup_date", "date" },
  { "vendor", "string" },
  { "fare", "decimal(8,2)" },
  { "tags", "list<string>" },
  { "splits", "list<decimal(6,2)>" },
}
"""

ARROW = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    ("pickup", pa.timestamp("ms", tz="UTC")),
    ("pickup_date", pa.date32()),
    ("vendor", pa.string()),
    ("fare", pa.decimal128(8, 2)),
    ("tags", pa.list_(pa.string())),
    ("splits", pa.list_(pa.decimal128(6, 2))),
])


def half_up(text, places):
    return decimal.Decimal(text).quantize(decimal.Decimal(1).scaleb(-places),
                                          rounding=decimal.ROUND_HALF_UP)


def trips(seed):
    """The input values (JSON text) and the rows they should become."""
    rnd = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    values, rows = [], []
    for i in range(N):
        pickup = start + dt.timedelta(seconds=i * DAYS * 86400 // N)
        p = pickup.strftime("%Y-%m-%d %H:%M:%S")
        fare = f"{rnd.randrange(0, 20000000) / 1000:.3f}"
        tags = rnd.choice([None, [], ["card"], ["card", None, "airport"], ["caf\u00e9/\"x\""]])
        small = f"{rnd.randrange(0, 9999999) / 1000:.3f}"
        splits = rnd.choice([None, [], [small], ["1.005", None, "-2.5"]])
        v = {"id": i, "pickup": p, "pickup_date": p, "vendor": rnd.choice(["a", "b", "c", None]),
             "fare": fare if rnd.random() < 0.5 else float(fare), "tags": tags, "splits": splits}
        if rnd.random() < 0.02:
            v["pickup"] = v["pickup_date"] = None  # the null partition
            pickup = None
        if rnd.random() < 0.02:
            del v["fare"]
        values.append(v)
        rows.append({
            "id": i, "pickup": pickup, "pickup_date": pickup and pickup.date(),
            "vendor": v["vendor"],
            "fare": half_up(str(v["fare"]), 2) if "fare" in v else None,
            "tags": tags,
            "splits": None if splits is None else [s and half_up(s, 2) for s in splits]})
    return values, pa.Table.from_pylist(rows, schema=ARROW)


def stats_of(column):
    """min, max and null count a column chunk should carry: over the
    values of a list's elements, nulls counting null and empty lists and
    null elements, as the chunk's levels do."""
    if pa.types.is_list(column.type):
        nulls = sum(1 for v in column.to_pylist() if not v)
        column = pa.chunked_array([c.flatten() for c in column.chunks], column.type.value_type)
    else:
        nulls = 0
    vals = [v for v in column.to_pylist() if v is not None]
    return min(vals), max(vals), nulls + column.null_count


def check_statistics(path):
    f = pq.ParquetFile(path)
    md = f.metadata
    checked = 0
    for g in range(md.num_row_groups):
        rows = f.read_row_group(g)
        for c in range(md.num_columns):
            col = md.row_group(g).column(c)
            name = col.path_in_schema.split(".")[0]
            st = col.statistics
            assert st is not None and st.has_min_max and st.has_null_count, \
                f"{path}: row group {g} column {col.path_in_schema} has no statistics"
            lo, hi, nulls = stats_of(rows.column(name))
            assert (st.min, st.max, st.null_count) == (lo, hi, nulls), \
                f"{path}: row group {g} {col.path_in_schema}: {st} but rows hold {lo}, {hi}, {nulls}"
            checked += 1
    return checked


def scan_line(con, sql, what):
    plan = con.sql("EXPLAIN ANALYZE " + sql).fetchall()[0][1]
    m = re.search(what + r": (\d+) / (\d+)", plan)
    assert m, plan
    return int(m.group(1)), int(m.group(2))


def test_types_statistics_and_partitions(kafka, sproc, tmp_path):
    values, want = trips(21)
    topic = kafka.create("pqt-trips", partitions=1)
    kafka.produce("pqt-trips", ((None, v) for v in values))
    script = write_script(tmp_path, "types.lua", f"""
local sproc = require "sproc"
{SCHEMA_LUA}
local s = sproc.source{{ topic = "{topic}", schema = trip }}
s:to_parquet{{ dir = "plain", row_group_rows = {GROUP} }}
s:to_parquet{{ dir = "parts", row_group_rows = {GROUP}, partition_by = {{ "pickup_date" }},
               checkpoint = "chk" }}
""")
    run = sproc([script, "--brokers", kafka.bootstrap, "--until-end",
                 "--app", kafka.topic("pqt-app")] + FAST, name="types")
    assert run.wait(300) == 0, run.stderr()

    # the values, as pyarrow reads them
    files = sorted(glob.glob(str(tmp_path / "plain" / "*.parquet")))
    got = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("id")
    assert got.schema.equals(ARROW, check_metadata=False), got.schema
    assert got.equals(want), "plain: rows differ from the input"

    # statistics: every column chunk's min, max and null count
    checked = sum(check_statistics(f) for f in files)
    assert checked == (N // GROUP) * len(ARROW.names)

    # DuckDB skips row groups by them: a range of ids, then of dates
    con = duckdb.connect()
    src = f"read_parquet('{tmp_path}/plain/*.parquet')"
    sql = f"SELECT count(*) FROM {src} WHERE id BETWEEN 12000 AND 12999"
    assert con.sql(sql).fetchall()[0][0] == 1000
    read, total = scan_line(con, sql, "Row Groups Scanned")
    print(f"DuckDB, ids 12000..12999: {read} of {total} row groups scanned")
    assert (read, total) == (1, N // GROUP)
    day = dt.date(2024, 1, 4)
    sql = f"SELECT count(*), sum(fare) FROM {src} WHERE pickup_date = DATE '{day}'"
    rows = want.filter(pa.compute.equal(want.column("pickup_date"), day))
    assert con.sql(sql).fetchall()[0] == (rows.num_rows, pa.compute.sum(rows.column("fare")).as_py())
    read, total = scan_line(con, sql, "Row Groups Scanned")
    print(f"DuckDB, one pickup day: {read} of {total} row groups scanned")
    assert read <= 3

    # partition directories: one per day and one for the null date; the
    # files leave the column out, readers take it from the path
    dirs = sorted(os.path.basename(d) for d in glob.glob(str(tmp_path / "parts" / "*")))
    assert dirs == [f"pickup_date={dt.date(2024, 1, 1) + dt.timedelta(d)}" for d in range(DAYS)] + \
        ["pickup_date=__HIVE_DEFAULT_PARTITION__"]
    one = glob.glob(str(tmp_path / "parts" / dirs[0] / "*.parquet"))[0]
    assert "pickup_date" not in pq.read_schema(one).names
    part = ds.partitioning(pa.schema([("pickup_date", pa.date32())]), flavor="hive")
    dataset = ds.dataset(str(tmp_path / "parts"), format="parquet", partitioning=part)
    got = dataset.to_table().select(ARROW.names).sort_by("id")
    assert got.equals(want), "partitioned: rows differ from the input"
    parts = f"read_parquet('{tmp_path}/parts/**/*.parquet', hive_partitioning = true)"
    sql = f"SELECT count(*) FROM {parts} WHERE pickup_date = DATE '{day}'"
    assert con.sql(sql).fetchall()[0][0] == rows.num_rows
    assert con.sql(f"SELECT count(*) FROM {parts} WHERE pickup_date IS NULL").fetchall()[0][0] == \
        want.column("pickup_date").null_count
    plan = con.sql("EXPLAIN ANALYZE " + sql).fetchall()[0][1]
    m = re.search(r"Total Files Read: (\d+)", plan)
    assert m and int(m.group(1)) == 1, plan
    # one checkpoint entry lists every day's file
    entries = glob.glob(str(tmp_path / "chk" / "*.commit"))
    listed = [ln[5:].strip() for e in entries for ln in open(e) if ln.startswith("file ")]
    on_disk = sorted(os.path.relpath(f, tmp_path / "parts")
                     for f in glob.glob(str(tmp_path / "parts" / "*" / "*.parquet")))
    assert sorted(listed) == on_disk
