"""The Schema Registry's security settings for real: schema.registry.url
on https, basic.auth.user.info (USER:PASSWORD, HTTP basic auth) and
schema.registry.ssl.ca.location (the CA file the registry's certificate is
checked against), as Confluent's clients name them.

The registry (scripts/registry: Apicurio, plain http, no auth) sits behind
a reverse proxy that this module runs in a thread: HTTPS with a
self-signed certificate made by openssl for IP 127.0.0.1, basic auth
required (401 {"error_code":401,"message":"Unauthorized"} otherwise, as
Confluent's registry answers), every authorized request forwarded as it
came (method, path, body, content type). Checked: a pipeline that writes
Avro registers its schema through the proxy and what it wrote reads back
equal, through sproc and through confluent-kafka's client given the same
three settings; a wrong password or user, or none, a certificate sproc
cannot verify, one for another host name and a CA file that is not there
each stop the load with exit 1 and the reason (never the password),
before anything is read or written."""
import base64
import http.server
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import ROOT, SPROC, free_port, write_script

REGISTRY = os.path.join(ROOT, "scripts", "registry")
API = "/apis/ccompat/v7"
# a password as generated secrets come: a colon (the user ends at the
# first one, as in Confluent's clients), '=' (--set splits at the first),
# '@', '%', ';', '/', '+'
USER, PASSWORD = "sproc-app", "s3:cr=t@p%ss;w/rd+"
UNAUTHORIZED = {"error_code": 401, "message": "Unauthorized"}

FARE = {"type": "record", "name": "Fare", "namespace": "auth", "fields": [
    {"name": "id", "type": "long"}, {"name": "fare", "type": "double"},
    {"name": "vendor", "type": ["null", "string"], "default": None}]}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    env = dict(os.environ, SPROC_REGISTRY_DIR=str(tmp_path_factory.mktemp("registry")))
    r = subprocess.run([REGISTRY, "start", "--port", str(free_port())], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    yield r.stdout.strip().splitlines()[-1]
    subprocess.run([REGISTRY, "stop"], env=env, timeout=60)


def self_signed(d, name, san="IP:127.0.0.1"):
    """A self-signed certificate (its own CA), by default for IP 127.0.0.1:
    (cert, key)."""
    assert shutil.which("openssl"), "these tests make their certificates with openssl"
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return str(cert), str(key)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl reuses its connection

    def log_message(self, *args):
        pass

    def forward(self):
        p = self.server.proxy
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        auth = self.headers.get("Authorization")
        headers = {}
        if auth != p.expected:
            status, ctype, data = 401, "application/json", json.dumps(UNAUTHORIZED).encode()
            headers["WWW-Authenticate"] = 'Basic realm="SchemaRegistry"'
        else:
            req = urllib.request.Request(p.upstream + self.path, data=body, method=self.command)
            for h in ("Content-Type", "Accept"):
                if self.headers.get(h):
                    req.add_header(h, self.headers[h])
            try:
                with p.opener.open(req, timeout=30) as resp:
                    status, ctype, data = resp.status, resp.headers.get("Content-Type"), resp.read()
            except urllib.error.HTTPError as e:
                status, ctype, data = e.code, e.headers.get("Content-Type"), e.read()
        with p.lock:
            p.seen.append({"method": self.command, "path": self.path, "auth": auth,
                           "content_type": self.headers.get("Content-Type"), "status": status})
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = forward


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # the handshake in the connection's own thread: a client that
        # refuses the certificate is recorded and holds up no one else
        try:
            tls = self.proxy.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.proxy.lock:
                self.proxy.refused.append(str(e))
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


class Proxy:
    """HTTPS with basic auth in front of the plain registry at upstream
    (scheme://host:port). seen: each request it answered, authorized or
    not; refused: TLS handshakes that failed."""

    def __init__(self, upstream, cert, key):
        self.upstream = upstream
        self.expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.lock = threading.Lock()
        self.seen, self.refused = [], []
        self.server = TLSServer(("127.0.0.1", 0), Handler)
        self.server.proxy = self
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}{API}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def mark(self):
        with self.lock:
            return len(self.seen), len(self.refused)

    def since(self, mark):
        with self.lock:
            return self.seen[mark[0]:], self.refused[mark[1]:]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {"proxy": self_signed(d, "proxy"), "other": self_signed(d, "other"),
            "elsewhere": self_signed(d, "elsewhere", "DNS:registry.elsewhere.test")}


@pytest.fixture(scope="module")
def proxy(registry, certs):
    upstream = registry[:registry.index(API)]
    p = Proxy(upstream, *certs["proxy"])
    yield p
    p.stop()


def settings(url, userinfo=None, ca=None):
    s = ["--set", f"schema.registry.url={url}"]
    if userinfo is not None:
        s += ["--set", f"basic.auth.user.info={userinfo}"]
    if ca is not None:
        s += ["--set", f"schema.registry.ssl.ca.location={ca}"]
    return s


def run(kafka, tmp_path, script, app, extra):
    t0 = time.time()
    r = subprocess.run([SPROC, script, "--brokers", kafka.bootstrap, "--app", kafka.topic(app),
                        "--until-end", *extra], capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path))
    r.took = time.time() - t0
    return r


def rides(n):
    # every 5th without a vendor: the union's null, the field's default
    return [{"id": i, "fare": round(2.5 + i * 0.25, 2), **({} if i % 5 == 0 else {"vendor": f"v{i % 3}"})}
            for i in range(n)]


WRITE = """
local sproc = require "sproc"
sproc.source{{ topic = "{src}", value = "json" }}
  :map(function(r) return {{ id = r.value.id, fare = r.value.fare, vendor = r.value.vendor }} end)
  :to{{ topic = "{dst}", value = "avro", schema = [[{schema}]] }}
"""


def write_script_for(kafka, tmp_path, name, src="rides", dst="fares"):
    return write_script(tmp_path, name, WRITE.format(src=kafka.topic(src), dst=kafka.topic(dst),
                                                     schema=json.dumps(FARE)))


def test_https_with_basic_auth_registers_and_reads_through_the_proxy(kafka, tmp_path, proxy, certs,
                                                                     registry, monkeypatch):
    kafka.create("rides", partitions=2)
    kafka.create("fares", partitions=2)
    kafka.create("back", partitions=1)
    data = rides(500)
    kafka.produce("rides", [(str(v["id"]).encode(), v) for v in data])
    secure = settings(proxy.url, f"{USER}:{PASSWORD}", certs["proxy"][0])

    mark = proxy.mark()
    r = run(kafka, tmp_path, write_script_for(kafka, tmp_path, "write.lua"), "write", secure)
    assert r.returncode == 0, r.stderr
    assert proxy.url in r.stderr, r.stderr  # "schema registry at URL"
    assert PASSWORD not in r.stderr, "the password is not logged"
    seen, refused = proxy.since(mark)
    assert not refused, refused
    subject = kafka.topic("fares") + "-value"
    register = f"{API}/subjects/{subject}/versions"
    assert [(s["method"], s["path"]) for s in seen] == [("GET", f"{API}/subjects"), ("POST", register)], seen
    assert all(s["auth"] == proxy.expected and s["status"] == 200 for s in seen), seen
    assert seen[1]["content_type"] == "application/vnd.schemaregistry.v1+json", seen[1]
    # registered in the real registry, under the topic's subject, the schema sproc gave
    plain = SchemaRegistryClient({"url": registry})
    latest = plain.get_latest_version(subject)
    assert json.loads(latest.schema.schema_str) == FARE
    fares = kafka.read("fares")
    assert len(fares) == len(data)
    assert {int.from_bytes(f["value"][1:5], "big") for f in fares} == {latest.schema_id}
    want = {v["id"]: (v["fare"], v.get("vendor")) for v in data}

    # Confluent's own client with the same three settings, through the proxy
    # (requests lets these variables override a session's CA file, and a
    # machine may set them to the system's bundle: psf/requests#3829)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    confluent = SchemaRegistryClient({"url": proxy.url, "basic.auth.user.info": f"{USER}:{PASSWORD}",
                                      "ssl.ca.location": certs["proxy"][0]})
    de = AvroDeserializer(confluent)
    ctx = SerializationContext(kafka.topic("fares"), MessageField.VALUE)
    got = {v["id"]: (v["fare"], v["vendor"]) for v in (de(f["value"], ctx) for f in fares)}
    assert got == want, f"{len(set(got.items()) ^ set(want.items()))} values differ"

    # sproc reads them back through the proxy: each schema fetched by its id
    read = write_script(tmp_path, "read.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{kafka.topic('fares')}", value = "avro" }}
  :map(function(r) return {{ id = r.value.id, fare = r.value.fare, vendor = r.value.vendor or "none" }} end)
  :to{{ topic = "{kafka.topic('back')}" }}
""")
    # (the URL as some write it, with a trailing slash: the same paths)
    mark = proxy.mark()
    r = run(kafka, tmp_path, read, "read", settings(proxy.url + "/", f"{USER}:{PASSWORD}",
                                                    certs["proxy"][0]))
    assert r.returncode == 0, r.stderr
    seen, refused = proxy.since(mark)
    assert not refused, refused
    assert [(s["method"], s["path"]) for s in seen] == \
        [("GET", f"{API}/subjects"), ("GET", f"{API}/schemas/ids/{latest.schema_id}")], seen
    assert all(s["auth"] == proxy.expected and s["status"] == 200 for s in seen), seen
    back = {v["id"]: (v["fare"], None if v["vendor"] == "none" else v["vendor"])
            for v in (json.loads(b["value"]) for b in kafka.read("back"))}
    assert back == want, f"{len(set(back.items()) ^ set(want.items()))} values differ"
    print(f"{len(data)} rides written as Avro and read back equal through https + basic auth "
          f"(sproc and confluent-kafka); schema id {latest.schema_id}")


def assert_nothing_done(kafka, app, dst="fares"):
    """A load stopped before anything ran: nothing written, nothing committed."""
    assert kafka.count(dst) == 0, "nothing written"
    committed = kafka.committed(kafka.topic(app), "rides")
    assert all(o < 0 for o in committed.values()), f"nothing committed: {committed}"


@pytest.mark.parametrize("userinfo", [f"{USER}:wrong-{PASSWORD}", f"someone:{PASSWORD}", None],
                         ids=["wrong-password", "wrong-user", "no-user-info"])
def test_refused_credentials_stop_the_load_with_the_registrys_message(kafka, tmp_path, proxy, certs,
                                                                      userinfo):
    kafka.create("rides", partitions=2)
    kafka.create("fares", partitions=1)
    kafka.produce("rides", [(str(v["id"]).encode(), v) for v in rides(50)])
    mark = proxy.mark()
    r = run(kafka, tmp_path, write_script_for(kafka, tmp_path, "w.lua"), "refused",
            settings(proxy.url, userinfo, certs["proxy"][0]))
    assert r.returncode == 1, r.stderr
    # the URL, the registry's message and its status, once, as an error
    assert f"schema registry at {proxy.url}: Unauthorized (HTTP 401)" in r.stderr, r.stderr
    assert PASSWORD not in r.stderr, "no password in the log"
    assert r.took < 30, f"took {r.took:.1f} s"
    seen, refused = proxy.since(mark)
    assert not refused, refused
    # asked once (a 401 is not tried again), with what it was given
    assert len(seen) == 1 and seen[0]["status"] == 401, seen
    want_auth = None if userinfo is None else "Basic " + base64.b64encode(userinfo.encode()).decode()
    assert seen[0]["auth"] == want_auth, seen
    assert_nothing_done(kafka, "refused")


@pytest.mark.parametrize("ca", ["none", "other", "missing", "other-host"])
def test_a_certificate_it_cannot_verify_stops_the_load_naming_the_url(kafka, tmp_path, proxy, certs, ca):
    """The proxy's self-signed certificate with no CA setting (the system's
    CAs do not know it), with another self-signed certificate as the CA, a
    CA file that is not there, or a registry whose certificate is the CA
    given but for another host name: exit 1 with the TLS reason and the URL;
    no request gets through."""
    kafka.create("rides", partitions=1)
    kafka.create("fares", partitions=1)
    kafka.produce("rides", [(str(v["id"]).encode(), v) for v in rides(20)])
    target = Proxy(proxy.upstream, *certs["elsewhere"]) if ca == "other-host" else proxy
    try:
        path = {"none": None, "other": certs["other"][0], "missing": str(tmp_path / "no-such-ca.pem"),
                "other-host": certs["elsewhere"][0]}[ca]
        mark = target.mark()
        r = run(kafka, tmp_path, write_script_for(kafka, tmp_path, "w.lua"), "tls",
                settings(target.url, f"{USER}:{PASSWORD}", path))
        seen, refused = target.since(mark)
    finally:
        if target is not proxy:
            target.stop()
    assert r.returncode == 1, r.stderr
    assert f"schema registry at {target.url}: " in r.stderr, r.stderr
    err = r.stderr.lower()
    if ca == "missing":
        assert path in r.stderr, r.stderr  # the file it could not use
    elif ca == "other-host":
        assert "127.0.0.1" in err and "name" in err and "certificate" in err, r.stderr
    else:
        assert "certificate" in err and ("self-signed" in err or "self signed" in err), r.stderr
    assert PASSWORD not in r.stderr
    assert r.took < 30, f"took {r.took:.1f} s"
    assert seen == [], "no request got through"
    if ca in ("none", "other"):
        # (a name that does not match is seen after the handshake, by the client)
        assert refused, "the proxy saw the handshake fail"
    assert_nothing_done(kafka, "tls")


def test_credentials_in_the_url_are_used_and_never_logged(kafka, tmp_path, proxy, certs):
    """https://USER:PASSWORD@host/ (percent-encoded), as some configure a
    registry: libcurl sends them as basic auth; every message shows the
    URL with *** in their place."""
    kafka.create("rides", partitions=1)
    kafka.create("fares", partitions=1)
    kafka.produce("rides", [(str(v["id"]).encode(), v) for v in rides(30)])
    host = proxy.url[len("https://"):]
    url = f"https://{USER}:{urllib.parse.quote(PASSWORD, safe='')}@{host}"
    mark = proxy.mark()
    r = run(kafka, tmp_path, write_script_for(kafka, tmp_path, "w.lua"), "inurl",
            settings(url, None, certs["proxy"][0]))
    assert r.returncode == 0, r.stderr
    assert f"schema registry at https://***@{host}" in r.stderr, r.stderr
    assert urllib.parse.quote(PASSWORD, safe="") not in r.stderr and PASSWORD not in r.stderr
    seen, _ = proxy.since(mark)
    assert seen and all(s["auth"] == proxy.expected and s["status"] == 200 for s in seen), seen
    assert kafka.count("fares") == 30
    # refused, the error names the URL without them too
    bad = f"https://{USER}:wrong@{host}"
    r = run(kafka, tmp_path, write_script_for(kafka, tmp_path, "w.lua"), "inurl2",
            settings(bad, None, certs["proxy"][0]))
    assert r.returncode == 1, r.stderr
    assert f"schema registry at https://***@{host}: Unauthorized (HTTP 401)" in r.stderr, r.stderr
    assert "wrong" not in r.stderr
