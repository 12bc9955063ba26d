"""Operational endpoints: liveness, readiness, metrics."""

import re

import requests

from conftest import register


def test_healthz(server):
    r = requests.get(server.base + "/healthz", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"status": "ok"}


def test_readyz(server):
    r = requests.get(server.base + "/readyz", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"status": "ready"}


def _posted_total(server):
    r = requests.get(server.base + "/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "text/plain", r.headers["Content-Type"]
    m = re.search(r"^natter_messages_posted_total(?:\{[^}]*\})? ([0-9.e+]+)$", r.text, re.M)
    assert m, "natter_messages_posted_total missing:\n" + r.text[:2000]
    return float(m.group(1)), r.text


def test_metrics(server):
    before, text = _posted_total(server)
    assert "# TYPE natter_messages_posted_total counter" in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$", line), line
    alice = register(server, "alice")
    cid = alice.create_chat()["id"]
    for i in range(3):
        alice.api.post_message(cid, f"m{i}")
    after, _ = _posted_total(server)
    assert after - before == 3, (before, after)
