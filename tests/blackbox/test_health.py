"""Operational endpoints: liveness, readiness, metrics."""

import re
import time

import pytest
import requests

from conftest import KAFKA, node_with_a_batch_given_up, register, wait_for


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


@pytest.mark.skipif(bool(KAFKA), reason="on Kafka the broker answers posts, and a batch is read again until stored")
def test_ready_again_when_the_store_answers_again(server_factory):
    # One batch given up for an outage (its four tries fail): the node is
    # unready once the failure is older than the 5 s grace, as long as no
    # batch is stored. With no post after it, the idle store consumer asks
    # the store whether it answers again (it does) and the node is ready:
    # a load balancer sends nothing to an unready node, so waiting for a
    # post would keep it out for good.
    srv, _, _ = node_with_a_batch_given_up(server_factory)
    failed = time.monotonic()
    assert wait_for(lambda: "the store answers again" in srv.stderr_text(), timeout=30), srv.stderr_text()[-2000:]
    time.sleep(max(0.0, failed + 6 - time.monotonic()))  # past the grace, whatever came before
    r = requests.get(srv.base + "/readyz", timeout=5)
    assert r.status_code == 200, r.text
