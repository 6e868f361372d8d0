"""Random pipelines through the real broker (tests/fuzz): a fixed set of
seeds, each run bounded or continuous, at-least-once or exactly-once (with
kills and a second process), compared exactly with the model. The driver's
seeds run as ctest's fuzz/driver; scripts/fuzz-pipelines runs new ones."""
import os
import subprocess
import sys

from conftest import ROOT, brokers

SEEDS = os.environ.get("SPROC_FUZZ_BROKER_SEEDS", "1-16")


def test_random_pipelines_through_kafka():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fuzz", "fuzz.py"), "run", SEEDS,
                        "--broker", brokers()], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " 0 failed" in r.stdout
