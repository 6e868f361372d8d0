"""The benchmark's smoke run (issue: CI checks the comparison, the full
run is scripts/bench): 100,000 records through S0-S3 for sproc, Kafka
Streams and Quix Streams (and librdkafka's pipe for S0), and 20,000 trips
through the joins S4 (with the 100,000-vendor table) and S5 for sproc and
Kafka Streams, on the suite's broker; compare.py exits non-zero when the
systems' outputs differ or a join's records differ from the data."""
import os
import subprocess
import sys

from conftest import ROOT, brokers


def test_benchmark_outputs_agree():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "bench", "compare.py"),
                        brokers(), "--smoke"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ("outputs agree: S1 (66,666 records), S2 (100,000 records), S3 (52 records), "
            "S4 (20,000 records), S5 (18,000 records); "
            "systems: Kafka Streams, Quix Streams, sproc") in r.stdout, r.stdout
