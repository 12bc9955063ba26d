"""HTTP as RFC 9110 and a hostile client see it: HEAD on every GET route, a bound on the request's
line and headers (431), clients that trickle their request in too slowly are dropped, and requests
that arrive while one is still being answered (pipelined, or behind a post that waits for its
commit; a client that hangs up then) are answered in order, and a client that waits for each
answer before it posts again is not made to wait out the batch time."""

import json
import socket
import threading
import time

import pytest
import requests

from conftest import KAFKA, register, settle


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


def _post_bytes(token, cid, content):
    body = ('{"content":"%s"}' % content).encode()
    return (f"POST /chats/{cid}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _read_responses(s, n):
    """Reads n whole HTTP/1.1 responses (each with a Content-Length) off s: [(status, body), ...]."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"the connection closed after {len(out)} of {n} answers"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = int(next(ln for ln in lines if ln.lower().startswith(b"content-length:")).split(b":")[1])
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk, "the connection closed inside an answer's body"
            rest += chunk
        out.append((int(lines[0].split()[1]), json.loads(rest[:length])))
        buf = rest[length:]
    return out


def test_pipelined_posts_are_answered_in_order(server):
    """Twenty posts written at once on one connection: twenty 202s, in the order sent, and history
    holds the twenty messages in that order. Each 202 waits for its batch's commit, so natter's HTTP
    layer stops reading while the requests behind it sit in the socket."""
    alice = register(server, "alice")
    cid = alice.create_chat()["id"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"".join(_post_bytes(alice.token, cid, f"pipelined {i}") for i in range(20)))
        answers = _read_responses(s, 20)
    assert [st for st, _ in answers] == [202] * 20, answers
    ids = [body["id"] for _, body in answers]
    settle(server.base)
    got = [(m["id"], m["content"]) for m in alice.api.all_history(cid)]
    assert got == [(ids[i], f"pipelined {i}") for i in range(20)]


def _server_whose_commits_wait(server_factory):
    """A server whose every store batch takes 300 ms more (a fault delays each insert) and a chat of
    alice's: a post's 202 waits at least that long. Returns (server, alice, chat id)."""
    srv = server_factory(env={"NATTER_FAULTS": "store.messages_insert:delay=300"})
    alice = register(srv, "alice")
    return srv, alice, alice.create_chat()["id"]


def test_a_request_sent_while_one_waits_for_its_commit(server_factory):
    """The next request arrives while the one before it waits for its batch: it is read once the
    first is answered, and both are answered in order."""
    srv, alice, cid = _server_whose_commits_wait(server_factory)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_post_bytes(alice.token, cid, "first"))
        time.sleep(0.05)
        s.sendall(_post_bytes(alice.token, cid, "second"))
        answers = _read_responses(s, 2)
    assert [st for st, _ in answers] == [202, 202], answers
    settle(srv.base)
    got = [(m["id"], m["content"]) for m in alice.api.all_history(cid)]
    assert got == [(answers[0][1]["id"], "first"), (answers[1][1]["id"], "second")]


@pytest.mark.skipif(bool(KAFKA), reason="the embedded log's group commit; on Kafka the 202 comes from the broker")
def test_a_lone_client_does_not_wait_out_the_batch_time(server_factory):
    """With --batch-time 10000 a store batch starts at most every 10 s while posts keep coming spread
    out; a client that posts, waits for its 202 and posts again is all the node has: each of its
    posts goes as soon as the loop has read it, none waits the 10 s."""
    srv = server_factory(args=["--batch-time", "10000"])
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    ids = []
    for i in range(4):
        r = requests.post(f"{srv.base}/chats/{cid}/messages", json={"content": f"in turn {i}"},
                          headers={"Authorization": f"Bearer {alice.token}"}, timeout=5)
        assert r.status_code == 202, (r.status_code, r.text)
        ids.append(r.json()["id"])
    got = [(m["id"], m["content"]) for m in alice.api.all_history(cid)]
    assert got == [(ids[i], f"in turn {i}") for i in range(4)]


def test_a_client_that_hangs_up_after_its_post_still_gets_the_answer(server_factory):
    """A client writes a post and shuts its side down while the 202 waits for the commit: the 202
    still comes, then the connection closes, and the message is stored."""
    srv, alice, cid = _server_whose_commits_wait(server_factory)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_post_bytes(alice.token, cid, "half-closed"))
        s.shutdown(socket.SHUT_WR)
        [(status, body)] = _read_responses(s, 1)
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    assert status == 202, body
    assert rest == b"", rest
    settle(srv.base)
    got = [(m["id"], m["content"]) for m in alice.api.all_history(cid)]
    assert got == [(body["id"], "half-closed")]


@pytest.mark.skipif(bool(KAFKA), reason="--log-queue bounds the embedded log; Kafka's queue is librdkafka's")
def test_a_full_log_queue_answers_busy(server_factory):
    """The embedded log holds --log-queue messages not yet stored: past it a post answers 503 busy
    with Retry-After, counted as a busy refusal, as a full worker queue does; every post answered 202
    is stored."""
    srv = server_factory(args=["--log-queue", "2"], env={"NATTER_FAULTS": "store.messages_insert:delay=700"})
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    answers = []

    def post(i):
        answers.append(requests.post(f"{srv.base}/chats/{cid}/messages", json={"content": f"p{i}"},
                                     headers={"Authorization": f"Bearer {alice.token}"}, timeout=30))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in answers if r.status_code == 503]
    assert busy, [r.status_code for r in answers]
    for r in busy:
        assert r.json()["error"]["code"] == "busy", r.text
        assert r.headers.get("Retry-After") == "1", r.headers
    accepted = [r.json()["id"] for r in answers if r.status_code == 202]
    assert len(accepted) + len(busy) == len(answers), [r.status_code for r in answers]
    text = requests.get(srv.base + "/metrics", timeout=5).text
    assert f"\nnatter_busy_rejected_total {len(busy)}\n" in text
    settle(srv.base)
    assert sorted(m["id"] for m in alice.api.all_history(cid)) == sorted(accepted)


def _read_all(s):
    """Everything the server sends until it closes the connection."""
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("framing,body", [
    # h2o 2.2.5 alone took the first length (or chunked) and read what follows as a second request
    pytest.param(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED,
                 id="two-content-lengths"),
    pytest.param(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % (5 + len(SMUGGLED)),
                 b"0\r\n\r\n" + SMUGGLED, id="content-length-and-chunked"),
    pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % (5 + len(SMUGGLED)),
                 b"0\r\n\r\n" + SMUGGLED, id="chunked-and-content-length"),
])
def test_ambiguous_body_framing_is_refused_and_the_connection_closed(server, framing, body):
    """A request whose body length a proxy in front could read otherwise than natter (two different
    Content-Lengths, or one beside Transfer-Encoding: request smuggling) is answered 400 and its
    connection closed: the bytes behind it are never read as a request of their own."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + b"\r\n" + body)
        got = _read_all(s)
    assert got.startswith(b"HTTP/1.1 400 "), got[:200]
    assert got.count(b"HTTP/1.1 ") == 1, got  # one answer: nothing behind it was taken for a request


def test_a_repeated_content_length_of_one_value_is_accepted(server):
    body = json.dumps({"username": f"twice{time.monotonic_ns() % 10**9}", "password": "correct horse"}).encode()
    n = str(len(body)).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + n +
                  b"\r\nContent-Length: " + n + b"\r\n\r\n" + body)
        (status, answer), = _read_responses(s, 1)
    assert status == 201, answer
