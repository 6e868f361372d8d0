"""SASL_SSL for real: a pipeline through a SASL_SSL listener (SCRAM-SHA-512,
TLS with the broker's certificate verified against the CA and its name),
and the ways a secure connection is refused, a wrong password, a
certificate signed by a CA sproc does not trust, or one of the trusted CA
for another host name, each an exit 1 with the reason within the connect
timeout instead of retries for ever.

The listener is the suite's broker's when scripts/test started it with
--secure; otherwise (a broker started by hand, say) this module starts a
secure broker of its own on free ports and stops it at the end. Topics are
made, fed and read through the PLAINTEXT listener: only sproc goes through
SASL_SSL."""
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import FAST, ROOT, SPROC, Kafka, free_port, wait_until, write_script

KAFKA = os.path.join(ROOT, "scripts", "kafka")
CONNECT_TIMEOUT = 10


def secure_info(env):
    """The listener's librdkafka settings from scripts/kafka secure-info, or
    None when that cluster was started without --secure."""
    out = subprocess.run([KAFKA, "secure-info"], capture_output=True, text=True, env=env,
                         timeout=30)
    if out.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """(plaintext bootstrap, SASL_SSL settings)."""
    plain = os.environ.get("SPROC_TEST_BROKERS")
    settings = secure_info(dict(os.environ)) if plain and os.environ.get("SPROC_KAFKA_DIR") else None
    if settings:
        yield plain, settings
        return
    env = dict(os.environ, SPROC_KAFKA_DIR=str(tmp_path_factory.mktemp("kafka-secure")))
    t0 = time.time()
    out = subprocess.run([KAFKA, "start", "--secure", "--port", "39092"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    print(f"secure broker of this module started in {time.time() - t0:.1f} s")
    try:
        yield out.stdout.strip().splitlines()[-1], secure_info(env)
    finally:
        subprocess.run([KAFKA, "stop"], env=env, timeout=120)


def sproc_args(settings, **override):
    """--brokers and one --set per client setting (override replaces some)."""
    s = dict(settings, **override)
    args = ["--brokers", s.pop("bootstrap.servers")]
    for k, v in s.items():
        args += ["--set", f"{k}={v}"]
    return args


COUNT = """
local sproc = require "sproc"
sproc.app{{ processing_guarantee = "exactly_once" }}
local counts = sproc.store{{ name = "counts" }}
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r) return {{ k = r.value.k, n = counts:incr(r.value.k) }} end)
  :to{{ topic = "{dst}" }}
"""


def test_pipeline_through_sasl_ssl_with_verified_certificate(secure, sproc, tmp_path):
    """A stateful exactly-once pipeline: the producer, the consumer group,
    transactions, the changelog topic sproc makes and, on the second run,
    the restore of the counts from it all go through SASL_SSL."""
    plain, settings = secure
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["ssl.endpoint.identification.algorithm"] == "https"
    assert os.path.isfile(settings["ssl.ca.location"])
    assert settings["bootstrap.servers"] != plain
    kafka = Kafka(plain, "sec-" + os.urandom(4).hex())
    src = kafka.create("in", partitions=2)
    dst = kafka.create("out", partitions=2)
    script = write_script(tmp_path, "count.lua", COUNT.format(src=src, dst=dst))
    args = [script, "--app", kafka.topic("app"), "--until-end",
            "--connect-timeout", str(CONNECT_TIMEOUT)] + sproc_args(settings) + FAST
    truth = {}
    for run in range(2):
        recs = [(f"k{i % 7}".encode(), {"k": f"k{i % 7}"}) for i in range(run * 100, run * 100 + 100)]
        for _, v in recs:
            truth[v["k"]] = truth.get(v["k"], 0) + 1
        kafka.produce("in", recs)
        p = sproc(args, name=f"run{run}")
        assert p.wait(120) == 0, p.stderr()
    # counts 1..truth once each: the second run restored the first's state
    seen = {}
    for r in kafka.read("out"):
        v = json.loads(r["value"])
        seen.setdefault(v["k"], []).append(v["n"])
    assert {k: sorted(ns) for k, ns in seen.items()} == \
        {k: list(range(1, n + 1)) for k, n in truth.items()}, p.stderr()


def refused(secure, tmp_path, override, with_timeout):
    """Runs a pipeline with some settings replaced: (exit code, stderr,
    seconds to the exit)."""
    plain, settings = secure
    kafka = Kafka(plain, "sec-" + os.urandom(4).hex())
    src = kafka.create("in")
    script = write_script(tmp_path, "p.lua", 'local sproc = require "sproc"\n'
                          f'sproc.source{{ topic = "{src}" }}:print()\n')
    args = [SPROC, script, "--app", kafka.topic("app")] + sproc_args(settings, **override)
    if with_timeout:
        args += ["--connect-timeout", str(CONNECT_TIMEOUT)]
    t0 = time.time()
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    took = time.time() - t0
    print(f"exit {r.returncode} after {took:.2f} s{'' if with_timeout else ' (no --connect-timeout)'}")
    return r.returncode, r.stderr, took


# without --connect-timeout sproc waits for ever for a broker that is not
# there; a refusal stops it all the same
@pytest.mark.parametrize("with_timeout", [True, False], ids=["connect-timeout", "no-timeout"])
def test_wrong_password_exits_1_naming_the_failed_login(secure, tmp_path, with_timeout):
    rc, err, took = refused(secure, tmp_path, {"sasl.password": "not-the-password"}, with_timeout)
    assert rc == 1, err
    assert "cannot connect to Kafka at " + secure[1]["bootstrap.servers"] in err, err
    assert "SASL authentication error" in err and "invalid credentials" in err, err
    assert "not-the-password" not in err
    assert took < CONNECT_TIMEOUT, took


@pytest.mark.parametrize("with_timeout", [True, False], ids=["connect-timeout", "no-timeout"])
def test_untrusted_certificate_exits_1_naming_the_verification(secure, tmp_path, with_timeout):
    # a CA of its own, which did not sign the broker's certificate
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=not the CA",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(tmp_path / "other.pem")],
                   check=True, capture_output=True, timeout=30)
    rc, err, took = refused(secure, tmp_path, {"ssl.ca.location": str(tmp_path / "other.pem")},
                            with_timeout)
    assert rc == 1, err
    assert "cannot connect to Kafka at " + secure[1]["bootstrap.servers"] in err, err
    assert "SSL handshake failed" in err and "certificate verify failed" in err, err
    assert took < CONNECT_TIMEOUT, took


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_certificate_for_another_host_exits_1(secure, tmp_path):
    """Host name verification is on: a TLS server whose certificate the
    trusted CA signed, but for another name, is refused like an untrusted
    one. The server is openssl's: the refusal comes before any Kafka
    request."""
    ca = secure[1]["ssl.ca.location"]
    key = os.path.join(os.path.dirname(ca), "ca.key")  # scripts/kafka keeps it beside
    (tmp_path / "ext").write_text("subjectAltName = DNS:elsewhere.example\n")

    def run(*a):
        subprocess.run(a, check=True, capture_output=True, timeout=30, cwd=str(tmp_path))
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-subj", "/CN=elsewhere.example", "-keyout", "srv.key", "-out", "srv.csr")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", ca, "-CAkey", key, "-CAcreateserial",
        "-CAserial", "srv.srl", "-days", "1", "-extfile", "ext", "-out", "srv.pem")
    port = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
                            "-cert", "srv.pem", "-key", "srv.key"], cwd=str(tmp_path),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port), timeout=10, what="openssl s_server")
        script = write_script(tmp_path, "p.lua", 'local sproc = require "sproc"\n'
                              'sproc.source{ topic = "x" }:print()\n')
        t0 = time.time()
        r = subprocess.run([SPROC, script, "--connect-timeout", str(CONNECT_TIMEOUT)] +
                           sproc_args(secure[1], **{"bootstrap.servers": f"127.0.0.1:{port}"}),
                           capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
        took = time.time() - t0
    finally:
        srv.kill()
        srv.wait()
    print(f"exit {r.returncode} after {took:.2f} s")
    assert r.returncode == 1, r.stderr
    assert f"cannot connect to Kafka at 127.0.0.1:{port}" in r.stderr, r.stderr
    assert "SSL handshake failed" in r.stderr and "certificate verify failed" in r.stderr, r.stderr
    assert took < CONNECT_TIMEOUT, took
