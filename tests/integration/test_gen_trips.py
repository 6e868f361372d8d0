"""The trip generator: shape, money, determinism and disorder."""
import datetime as dt
import json
import os
import subprocess

from conftest import ROOT

GEN = os.path.join(ROOT, "scripts", "gen_trips")
FIELDS = ["vendorid", "lpep_pickup_datetime", "lpep_dropoff_datetime", "passenger_count",
          "trip_distance", "pickup_longitude", "pickup_latitude", "dropoff_longitude",
          "dropoff_latitude", "ratecodeid", "store_and_fwd_flag", "payment_type", "fare_amount",
          "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge",
          "total_amount", "trip_type"]


def gen(*args):
    return subprocess.run([GEN, *args], capture_output=True, text=True, check=True).stdout


def t(s):
    return dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()


def cents(s):
    whole, frac = s.split(".")
    return int(whole) * 100 + int(frac)


def test_records():
    text = gen("--count", "20000", "--seed", "7")
    assert text == gen("--count", "20000", "--seed", "7")
    assert text != gen("--count", "20000", "--seed", "8")
    recs = [json.loads(line) for line in text.splitlines()]
    assert len(recs) == 20000
    max_pickup = 0
    very_late = 0
    for r in recs:
        assert list(r) == FIELDS and all(isinstance(v, str) for v in r.values())
        parts = ["fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge"]
        assert sum(cents(r[k]) for k in parts) == cents(r["total_amount"])
        p = t(r["lpep_pickup_datetime"])
        assert t(r["lpep_dropoff_datetime"]) >= p
        if p < max_pickup - 20 * 60:
            very_late += 1
        assert p >= max_pickup - 91 * 60
        max_pickup = max(max_pickup, p)
    assert 0.002 <= very_late / len(recs) <= 0.01, very_late
