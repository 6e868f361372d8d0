"""The seed job: trips from a JSON-lines file into Kafka (tripdata_feed.lua),
then from Kafka into rolling files (tripdata.lua), bounded and continuous.
Every trip arrives in a published file exactly as it was fed (all declared
fields, in order), and no in-progress file is left behind."""
import glob
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
