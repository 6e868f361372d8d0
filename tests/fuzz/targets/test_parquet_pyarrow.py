"""The Parquet writer's files read back by pyarrow.

The libFuzzer target fuzz_parquet turns any bytes into a random schema
(nested structs, lists, required and optional fields, every type), writer options
(codec, dictionary, small pages and row groups) and rows given as JSON the
way producers write it; with SPROC_FUZZ_PARQUET_DUMP it leaves each file
and the rows as the schema renders them (sp_schema_write_json, what a JSON
sink would write). Here it runs over the committed seeds and seeded random
inputs, and every file must read back in pyarrow to those rows, value for
value (timestamps as epoch milliseconds, decimals exact)."""
import decimal
import glob
import json
import os
import random
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

FUZZ = os.environ.get("SPROC_FUZZ_PARQUET")
CORPUS = os.environ.get("SPROC_FUZZ_CORPUS")
CASES = int(os.environ.get("SPROC_FUZZ_PYARROW_CASES", "400"))
SEED = int(os.environ.get("SPROC_FUZZ_PYARROW_SEED", "19"))


def ms_type(t):
    """t with timestamps as int64 (epoch ms), at any depth: years past
    9999 have no Python datetime."""
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_date(t):
        return pa.int32()  # days: the year 0 has no Python date either
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, ms_type(f.type), f.nullable) for f in t])
    if pa.types.is_list(t):
        return pa.list_(pa.field(t.value_field.name, ms_type(t.value_type), True))
    return t


def days(text):
    """Days since 1970-01-01 of "YYYY-MM-DD", proleptic Gregorian (any
    year from 0)."""
    y, m, d = (int(x) for x in text.split("-"))
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def norm(v, t):
    """A value of type t (dates as int32 days) as both sides can hold it:
    dates as days, decimals as Decimal (JSON read with
    parse_float=Decimal), doubles as floats."""
    if v is None:
        return None
    if pa.types.is_struct(t):
        return {f.name: norm(v.get(f.name), f.type) for f in t}
    if pa.types.is_list(t):
        return [norm(x, t.value_type) for x in v]
    if pa.types.is_int32(t):
        return days(v) if isinstance(v, str) else v
    if pa.types.is_decimal(t):
        return decimal.Decimal(str(v))
    if pa.types.is_floating(t):
        return float(v)
    return v


def write_inputs(dir_):
    rnd = random.Random(SEED)
    paths = []
    for i in range(CASES):
        p = dir_ / f"random-{i}"
        p.write_bytes(rnd.randbytes(rnd.randrange(8, 2048)))
        paths.append(str(p))
    if CORPUS:
        paths += sorted(glob.glob(os.path.join(CORPUS, "*")))
    return paths


def count_lines(parquet_path):
    with open(parquet_path[: -len(".parquet")] + ".jsonl") as f:
        return sum(1 for _ in f)


def test_random_schemas_and_rows_read_back(tmp_path):
    if not FUZZ:
        pytest.skip("SPROC_FUZZ_PARQUET is not set (ctest in a build with -DSPROC_LIBFUZZER=ON sets it)")
    inputs, dump = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    dump.mkdir()
    paths = write_inputs(inputs)
    env = dict(os.environ, SPROC_FUZZ_PARQUET_DUMP=str(dump))
    # given files, a libFuzzer binary runs each once and does not fuzz
    subprocess.run([FUZZ, *paths], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)

    files = sorted(glob.glob(str(dump / "*.parquet")))
    assert len(files) >= CASES * 0.9  # inputs that are the same bytes give one file
    rows_total, types = 0, set()
    for path in files:
        table = pq.read_table(path)
        assert pq.ParquetFile(path).metadata.num_rows == count_lines(path), path
        schema = pa.schema([pa.field(f.name, ms_type(f.type), f.nullable) for f in table.schema])
        row = pa.struct(list(schema))
        with open(path[: -len(".parquet")] + ".jsonl") as f:
            want = [norm(json.loads(line, parse_float=decimal.Decimal), row) for line in f]
        got = [norm(r, row) for r in table.cast(schema).to_pylist()]
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{path} row {i}: pyarrow {g!r}, schema {w!r}"
        assert len(got) == len(want), path
        rows_total += len(got)
        types |= {str(f.type).split("<")[0] for f in table.schema}
    # not vacuous: many rows, every kind of column
    assert rows_total >= CASES * 5, rows_total
    assert {"string", "int64", "double", "bool", "timestamp[ms, tz=UTC]", "struct", "date32[day]",
            "list"} <= types, types
    assert any(t.startswith("decimal128") for t in types), types
