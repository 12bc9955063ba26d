"""HTTP as RFC 9110 and a hostile client see it: HEAD on every GET route, a bound on the request's
line and headers (431), and clients that trickle their request in too slowly are dropped."""

import socket
import time

import pytest
import requests

from conftest import register, settle


@pytest.fixture(scope="module")
def world(server):
    alice = register(server, "alice")
    cid = alice.create_chat()["id"]
    alice.api.post_message(cid, "for the history")
    settle(server.base)  # on Kafka the message reaches history a moment after its 202: not between a GET and its HEAD
    return {"alice": alice, "cid": cid}


@pytest.mark.parametrize("path, auth", [
    ("/", False), ("/dashboard", False), ("/static/app.js", False), ("/healthz", False), ("/readyz", False),
    ("/metrics", False), ("/me", True), ("/chats", True), ("/chats/CID", True), ("/chats/CID/messages", True),
])
def test_head_is_get_without_the_body(server, world, path, auth):
    path = path.replace("CID", world["cid"])
    h = {"Authorization": f"Bearer {world['alice'].token}"} if auth else {}
    get = requests.get(server.base + path, headers=h, timeout=10)
    head = requests.head(server.base + path, headers=h, timeout=10)
    assert get.status_code == 200, (path, get.status_code, get.text[:200])
    assert head.status_code == 200, (path, head.status_code)
    assert head.content == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    if "/metrics" not in path:  # a scrape's length changes between two requests
        assert head.headers["Content-Length"] == str(len(get.content)), path


def test_head_of_an_error_has_its_status(server):
    r = requests.head(server.base + "/me", timeout=10)
    assert r.status_code == 401 and r.content == b""


def raw_request(server, data, read_timeout=10):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                if length and len(body) >= int(length[0].split(b":")[1]):
                    return out
    finally:
        s.close()


def test_headers_over_the_limit_get_431(server):
    """A 70 KB header (the issue's example) is over --max-header (16 KiB by default)."""
    big = "x" * 70_000
    r = requests.get(server.base + "/healthz", headers={"X-Big": big}, timeout=10)
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "headers_too_large"
    ok = requests.get(server.base + "/healthz", headers={"X-Small": "x" * 1000}, timeout=10)
    assert ok.status_code == 200


def test_many_headers_add_up(server):
    headers = {f"X-H{i}": "y" * 200 for i in range(95)}  # ~20 KB over 95 headers
    r = requests.get(server.base + "/healthz", headers=headers, timeout=10)
    assert r.status_code == 431


def _trickle(s, data, per_byte_s, limit_s):
    """Sends data on s a byte every per_byte_s; returns the seconds until the server closed the
    connection, or None if it had not within limit_s."""
    t0 = time.monotonic()
    for b in data:
        try:
            s.sendall(bytes([b]))
            s.settimeout(per_byte_s)
            if s.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit_s:
            return None
    return None


def test_trickled_headers_are_dropped(server_factory):
    """Headers sent a byte every 0.2 s never finish within --request-timeout (1 s here): the connection
    is dropped, long before the trickle would end."""
    srv = server_factory(args=["--request-timeout", "1000"])
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"z" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        took = _trickle(s, request, 0.2, limit_s=30)
    assert took is not None, "a trickling client kept its connection"
    assert took < len(request) * 0.2, f"dropped only after {took:.1f} s"


def test_trickled_body_is_dropped(server_factory):
    srv = server_factory(args=["--request-timeout", "1000"])
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    body = b'{"content":"' + b"s" * 200 + b'"}'
    head = (f"POST /chats/{cid}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        s.sendall(head)
        took = _trickle(s, body, 0.2, limit_s=30)
    finally:
        s.close()
    assert took is not None, "a trickling body kept its connection"
    # alice's pooled keep-alive connection sat idle as long as the trickle and natter closes it at
    # the same timeout: ask on a new connection, not on one that may be closing right now
    alice.api.s.close()
    assert len(alice.api.history(cid)["messages"]) == 0, "a body that never arrived made a message"
