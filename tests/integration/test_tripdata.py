"""The seed job: trips from a JSON-lines file into Kafka (tripdata_feed.lua),
then from Kafka into rolling files (tripdata.lua), bounded and continuous.
Every trip arrives in a published file exactly as it was fed (all declared
fields, in order), and no in-progress file is left behind."""
import glob
import json
import os
import signal
import subprocess

from conftest import FAST, ROOT, wait_until

N = 50_000


def published_lines(outdir):
    lines = []
    for f in sorted(glob.glob(os.path.join(outdir, "trips-*.jsonl"))):
        with open(f) as fh:
            lines.extend(fh.read().splitlines())
    return lines


def test_tripdata_bounded_and_continuous(kafka, sproc, tmp_path):
    topic = kafka.create("tripdata", partitions=4)
    trips = tmp_path / "trips.jsonl"
    subprocess.run([os.path.join(ROOT, "scripts", "gen_trips"), "--count", str(N), "--seed", "3",
                    "--out", str(trips)], check=True)
    env = {"TRIPS": str(trips), "TRIPDATA_TOPIC": topic, "TRIPDATA_OUT": str(tmp_path / "out")}
    feed = sproc([os.path.join(ROOT, "examples", "tripdata_feed.lua"), "--brokers", kafka.bootstrap,
                  "--until-end"] + FAST, env=env, name="feed")
    assert feed.wait(120) == 0, feed.stderr()
    assert kafka.count("tripdata") == N

    job = [os.path.join(ROOT, "examples", "tripdata.lua"), "--brokers", kafka.bootstrap,
           "--app", kafka.topic("tripdata-app")] + FAST
    bounded = sproc(job + ["--until-end", "--set", "sproc.batch.size=2000"], env=env, name="bounded")
    assert bounded.wait(120) == 0, bounded.stderr()
    want = sorted(trips.read_text().splitlines())
    assert sorted(published_lines(tmp_path / "out")) == want
    assert not glob.glob(str(tmp_path / "out" / ".*inprogress"))

    # continuous: more trips arrive while it runs; SIGTERM publishes the open file
    more = tmp_path / "more.jsonl"
    subprocess.run([os.path.join(ROOT, "scripts", "gen_trips"), "--count", "5000", "--seed", "4",
                    "--out", str(more)], check=True)
    cont = sproc(job, env=env, name="continuous")
    wait_until(lambda: "assigned" in cont.stderr(), timeout=60, what="assignment")
    feed2 = sproc([os.path.join(ROOT, "examples", "tripdata_feed.lua"), "--brokers", kafka.bootstrap,
                   "--until-end"] + FAST, env=dict(env, TRIPS=str(more)), name="feed2")
    assert feed2.wait(120) == 0, feed2.stderr()
    # the new trips are being written to the hidden in-progress file (rolled
    # every 30 s at most): wait until it holds all but a stdio buffer of
    # them, then a clean stop must publish the rest
    def in_progress_bytes():
        return sum(os.path.getsize(f) for f in glob.glob(str(tmp_path / "out" / ".*inprogress")))
    need = more.stat().st_size - 8192
    wait_until(lambda: in_progress_bytes() >= need, timeout=120, what="the new trips in the open file")
    assert sorted(published_lines(tmp_path / "out")) == want, "nothing new is published before the roll"
    cont.signal(signal.SIGTERM)
    assert cont.wait(60) == 0, cont.stderr()
    assert sorted(published_lines(tmp_path / "out")) == sorted(want + more.read_text().splitlines())
    assert not glob.glob(str(tmp_path / "out" / ".*inprogress"))


def parquet_rows(outdir):
    import pyarrow.parquet as pq
    files = sorted(glob.glob(os.path.join(outdir, "trips-*.parquet")))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def typed(line):
    """A trip as the tutorial's schema types it."""
    import datetime as dt
    t = json.loads(line)
    ints = ("vendorid", "passenger_count", "ratecodeid", "payment_type", "trip_type")
    out = {}
    for k, v in t.items():
        if k in ints:
            out[k] = int(v)
        elif k.endswith("_datetime"):
            out[k] = dt.datetime.strptime(v, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        elif k == "store_and_fwd_flag":
            out[k] = v
        else:
            out[k] = float(v)
    return out


def test_tripdata_parquet_bounded_then_continuous(kafka, sproc, tmp_path):
    """The tutorial's job proper (TRIPDATA_FORMAT=parquet): Kafka JSON, the
    trip schema, Parquet files under a checkpoint. A bounded run writes
    every trip once; a continuous run started after it (the same checkpoint
    and group) adds only the trips that arrived since, and pyarrow reads
    every value back as the schema types it."""
    topic = kafka.create("tripdata-pq", partitions=4)
    trips, more = tmp_path / "trips.jsonl", tmp_path / "more.jsonl"
    for path, n, seed in ((trips, 20_000, 5), (more, 5_000, 6)):
        subprocess.run([os.path.join(ROOT, "scripts", "gen_trips"), "--count", str(n), "--seed",
                        str(seed), "--out", str(path)], check=True)
    out = tmp_path / "out"
    env = {"TRIPDATA_TOPIC": topic, "TRIPDATA_OUT": str(out), "TRIPDATA_FORMAT": "parquet",
           "TRIPDATA_ROLL_SECONDS": "1"}
    feed = [os.path.join(ROOT, "examples", "tripdata_feed.lua"), "--brokers", kafka.bootstrap,
            "--until-end"] + FAST
    f = sproc(feed, env=dict(env, TRIPS=str(trips)), name="feed")
    assert f.wait(120) == 0, f.stderr()
    job = [os.path.join(ROOT, "examples", "tripdata.lua"), "--brokers", kafka.bootstrap,
           "--app", kafka.topic("tripdata-pq-app")] + FAST
    bounded = sproc(job + ["--until-end"], env=env, name="bounded")
    assert bounded.wait(120) == 0, bounded.stderr()
    key = lambda r: json.dumps(r, default=str, sort_keys=True)  # noqa: E731
    want = sorted((typed(line) for line in trips.read_text().splitlines()), key=key)
    assert sorted(parquet_rows(out), key=key) == want

    cont = sproc(job, env=env, name="continuous")
    wait_until(lambda: "assigned" in cont.stderr(), timeout=60, what="assignment")
    f = sproc(feed, env=dict(env, TRIPS=str(more)), name="feed2")
    assert f.wait(120) == 0, f.stderr()
    want = sorted(want + [typed(line) for line in more.read_text().splitlines()], key=key)
    wait_until(lambda: len(parquet_rows(out)) >= len(want), timeout=120,
               what="the new trips published (files roll every second)")
    cont.signal(signal.SIGTERM)
    assert cont.wait(60) == 0, cont.stderr()
    assert sorted(parquet_rows(out), key=key) == want
    assert not glob.glob(str(out / ".*inprogress"))
