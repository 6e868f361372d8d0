"""The Parquet writer's files read back by pyarrow.

The libFuzzer target fuzz_parquet turns any bytes into a random schema
(nested structs, required and optional fields, every type), writer options
(codec, dictionary, small pages and row groups) and rows given as JSON the
way producers write it; with SPROC_FUZZ_PARQUET_DUMP it leaves each file
and the rows as the schema renders them (sp_schema_write_json, what a JSON
sink would write). Here it runs over the committed seeds and seeded random
inputs, and every file must read back in pyarrow to those rows, value for
value (timestamps as epoch milliseconds)."""
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
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, ms_type(f.type), f.nullable) for f in t])
    return t


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
        with open(path[: -len(".parquet")] + ".jsonl") as f:
            want = [json.loads(line) for line in f]
        table = pq.read_table(path)
        assert pq.ParquetFile(path).metadata.num_rows == len(want), path
        schema = pa.schema([pa.field(f.name, ms_type(f.type), f.nullable) for f in table.schema])
        got = table.cast(schema).to_pylist()
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{path} row {i}: pyarrow {g!r}, schema {w!r}"
        assert len(got) == len(want), path
        rows_total += len(got)
        types |= {str(f.type).split("<")[0] for f in table.schema}
    # not vacuous: many rows, every kind of column
    assert rows_total >= CASES * 5, rows_total
    assert {"string", "int64", "double", "bool", "timestamp[ms, tz=UTC]", "struct"} <= types, types
