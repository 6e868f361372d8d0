"""sproc reset (issue 18 #2): what Kafka's streams application reset tool
does, for a script's application."""
import json
import os
import signal
import subprocess

from conftest import FAST, SPROC, admin_client, wait_until, write_script


def reset(kafka, script, app, *extra):
    return subprocess.run([SPROC, "reset", script, "--brokers", kafka.bootstrap, "--app", app,
                           *extra], capture_output=True, text=True, timeout=120)


def topics(kafka):
    return set(admin_client(kafka.bootstrap).list_topics(timeout=10).topics)


def test_reset_starts_the_application_over(kafka, sproc, tmp_path):
    kafka.create("in", partitions=2)
    kafka.create("out", partitions=2)
    kafka.produce("in", [(f"s{i % 31}".encode(), {"user": f"u{i % 7}"}) for i in range(1000)])
    app = kafka.topic("app")
    state = tmp_path / "state"
    script = write_script(tmp_path, "r.lua", f"""
local sproc = require "sproc"
sproc.source{{ topic = "{kafka.topic('in')}", value = "json" }}
  :key_by(function(r) return r.value.user end)
  :window(sproc.window.tumbling{{ size = "1h", grace = "0s" }})
  :aggregate{{ n = sproc.agg.count(), name = "per-user" }}
  :to{{ topic = "{kafka.topic('out')}" }}
""")
    sets = ["--set", f"sproc.state.dir={state}"]
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app, "--until-end"] + sets + FAST)
    assert p.wait(120) == 0, p.stderr()
    first = kafka.count("out")
    internal = {f"{app}-per-user-changelog", f"{app}-per-user-repartition"}
    assert internal <= topics(kafka) and first > 0
    ends = kafka.end_offsets("in")
    assert kafka.committed(app, "in") == ends

    # refused while a process of the application runs
    live = sproc([script, "--brokers", kafka.bootstrap, "--app", app] + sets + FAST, name="live")
    wait_until(lambda: "assigned" in live.stderr(), timeout=60, what="assignment", proc=live)
    r = reset(kafka, script, app, *sets)
    assert r.returncode == 1 and "active member" in r.stderr, r.stderr
    live.signal(signal.SIGTERM)
    assert live.wait(60) == 0, live.stderr()

    # --dry-run: the plan, and nothing done
    r = reset(kafka, script, app, "--dry-run", *sets)
    assert r.returncode == 0, r.stderr
    for t in internal:
        assert f"delete topic {t}" in r.stdout, r.stdout
    assert f"delete local state {state}" in r.stdout, r.stdout
    assert f"offset of {kafka.topic('in')} [0] -> 0" in r.stdout, r.stdout
    assert internal <= topics(kafka) and kafka.committed(app, "in") == ends

    r = reset(kafka, script, app, *sets)
    assert r.returncode == 0, r.stderr + r.stdout
    assert kafka.committed(app, "in") == {p: 0 for p in ends}
    wait_until(lambda: not internal & topics(kafka), timeout=60, what="internal topics deleted")
    assert not os.path.exists(state)

    # the application runs again from the start, on empty state
    p = sproc([script, "--brokers", kafka.bootstrap, "--app", app, "--until-end"] + sets + FAST,
              name="again")
    assert p.wait(120) == 0, p.stderr()
    assert kafka.count("out") == 2 * first
    got = [json.loads(x["value"])["n"] for x in kafka.read("out")]
    assert sum(got) == 2 * 1000

    # --to latest: the group skips what is there
    r = reset(kafka, script, app, "--to", "latest", *sets)
    assert r.returncode == 0, r.stderr
    assert kafka.committed(app, "in") == ends
