"""Many sockets: heartbeats find peers that went silent, the node holds a bounded number of connections
and says so, an idle WebSocket costs little memory, and running out of file descriptors pauses
accepting instead of spinning."""

import os
import re
import resource
import socket
import time

import requests
import websocket

from conftest import WsReader, assert_error, register, wait_for
from rawws import RawWs, read_close
from tcpproxy import Proxy

IDLE_SOCKETS = 1000
RSS_PER_SOCKET_LIMIT = 8 * 1024  # bytes an idle authenticated WebSocket may cost (issue 12)


def metric(srv, name, session=requests):
    text = session.get(srv.base + "/metrics", timeout=5).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_silent_peer_is_pinged_then_closed(server_factory):
    """A client that answers nothing is pinged after --ws-ping-interval, then closed with 1001
    "ping timeout" once --ws-ping-timeout passes; one that answers pings stays."""
    srv = server_factory(args=["--ws-ping-interval", "1", "--ws-ping-timeout", "1"])
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    lively = WsReader(bob.ws(timeout=10))  # websocket-client answers pings by itself
    lively.start()
    silent = RawWs(srv.port, bob.token)
    try:
        op = 0x1
        while op == 0x1:  # a push (the chat's membership, on Kafka after the socket opened) comes first
            op, _ = silent.read_frame(10, pings=True)
        assert op == 0x9, f"expected a ping, got opcode {op}"
        assert read_close(silent, timeout=10) == (1001, "ping timeout")
        assert silent.read_eof(10)
        assert metric(srv, "natter_websockets_ping_timeouts_total") >= 1
        time.sleep(3)  # several intervals: the lively one is pinged, answers, and stays
        mid = alice.api.post_message(cid, "still there?")["id"]
        assert lively.wait_count(1, timeout=10), f"the lively socket was closed: {lively.close}"
        assert lively.messages()[0]["id"] == mid
        assert lively.close is None
    finally:
        lively.stop()
        lively.ws.close()
        silent.close()


def test_peer_paused_at_the_tcp_level_is_freed(server_factory):
    """A peer whose network vanished (no FIN, nothing read or answered): the ping gets no pong, the
    close frame cannot even be delivered, and the socket is freed anyway."""
    srv = server_factory(args=["--ws-ping-interval", "1", "--ws-ping-timeout", "1"])
    bob = register(srv, "bob")
    proxy = Proxy(srv.port)
    try:
        ws = websocket.create_connection(f"ws://127.0.0.1:{proxy.port}/ws?token={bob.token}", timeout=10)
        assert wait_for(lambda: metric(srv, "natter_websockets_open") == 1)
        proxy.pause()
        assert wait_for(lambda: metric(srv, "natter_websockets_open") == 0, timeout=30), \
            "the paused socket was never freed"
        assert metric(srv, "natter_websockets_ping_timeouts_total") >= 1
        ws.sock.close()
    finally:
        proxy.close()


def test_at_capacity_upgrades_get_503_and_the_rest_is_served(server_factory):
    """--max-connections bounds HTTP connections and WebSockets together: past it an upgrade gets 503
    at_capacity with Retry-After, and the sockets the node has keep working."""
    srv = server_factory(args=["--max-connections", "6"])
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    sockets, refused = [], None
    try:
        for _ in range(12):
            try:
                sockets.append(WsReader(bob.ws(timeout=10)))
            except websocket.WebSocketBadStatusException as e:
                refused = e
                break
        assert refused is not None, "no upgrade was refused past --max-connections"
        assert refused.status_code == 503
        assert b"at_capacity" in (refused.resp_body or b""), refused.resp_body
        assert refused.resp_headers.get("retry-after") == "5"
        assert 1 <= len(sockets) <= 6
        for r in sockets:
            r.start()
        mid = alice.api.post_message(cid, "for those in")["id"]
        for r in sockets:
            assert r.wait_count(1, timeout=10) and r.messages()[0]["id"] == mid
        assert metric(srv, "natter_at_capacity_total") >= 1
        # one leaves: there is room again (once natter has seen it go, and the connection that read
        # /metrics too: each loop notices a close in its own time)
        sockets[0].stop()
        sockets[0].ws.close()

        def room():
            try:
                bob.ws(timeout=10).close()
                return True
            except websocket.WebSocketBadStatusException as e:
                assert e.status_code == 503, e
                return False

        assert wait_for(room)
    finally:
        for r in sockets:
            r.stop()
            r.ws.close()


def test_idle_websocket_memory(server_factory):
    """An idle authenticated WebSocket costs at most 8 KiB of the server's RSS (measured as the issue
    says: process_resident_memory_bytes before and after opening them, divided by their number)."""
    asan = os.environ.get("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    srv = server_factory(args=["--ws-per-user", "0"],  # 100 sockets a user: what costs memory, not who
                         env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=1"})
    users = [register(srv, f"idle{i}") for i in range(10)]
    warm = [u.ws(timeout=10) for u in users]  # the first sockets grow maps and pools once
    for w in warm:
        w.close()
    time.sleep(0.5)
    before = metric(srv, "process_resident_memory_bytes")
    held = []
    try:
        for i in range(IDLE_SOCKETS):
            held.append(users[i % len(users)].ws(timeout=10))
        assert wait_for(lambda: metric(srv, "natter_websockets_open") == IDLE_SOCKETS)
        time.sleep(0.5)
        after = metric(srv, "process_resident_memory_bytes")
        per_socket = (after - before) / IDLE_SOCKETS
        print(f"idle WebSocket: {per_socket:.0f} bytes of RSS each ({IDLE_SOCKETS} sockets, ASan build)")
        assert per_socket <= RSS_PER_SOCKET_LIMIT, f"{per_socket:.0f} bytes per idle socket"
    finally:
        for w in held:
            w.close()


def _low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (120, 120))


def test_out_of_file_descriptors_pauses_accepting(server_factory, monkeypatch):
    """With few file descriptors, connecting more clients than fit makes accept() fail: the loop
    pauses accepting (counted), serves the sockets it has, and accepts again once some close."""
    import subprocess
    real_popen = subprocess.Popen

    def popen(*a, **kw):
        kw["preexec_fn"] = _low_fd_limit
        return real_popen(*a, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    srv = server_factory(args=["--threads", "1", "--max-connections", "100000"])
    monkeypatch.setattr(subprocess, "Popen", real_popen)
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    reader = WsReader(bob.ws(timeout=10))
    reader.start()
    scrape = requests.Session()  # a keep-alive connection opened while there is room
    assert metric(srv, "natter_accept_paused_total", scrape) == 0
    extra = []
    try:
        for _ in range(150):  # more than the process has descriptors for
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            extra.append(s)
        assert wait_for(lambda: metric(srv, "natter_accept_paused_total", scrape) >= 1), "accept never paused"
        mid = alice.api.post_message(cid, "served while full")["id"]  # its connection existed before
        assert reader.wait_count(1, timeout=10) and reader.messages()[0]["id"] == mid
        for s in extra:
            s.close()
        extra.clear()
        r = requests.get(srv.base + "/healthz", timeout=10)  # a new connection is accepted again
        assert r.status_code == 200
    finally:
        for s in extra:
            s.close()
        reader.stop()
        reader.ws.close()


def test_a_user_has_at_most_ws_per_user_sockets(server_factory):
    """--ws-per-user 2: a user's third WebSocket on the node is refused (429, Retry-After)
    while two are open, whether by token or by ticket; another user is not; once one closes
    there is room again."""
    srv = server_factory(args=["--ws-per-user", "2"])
    alice, bob = register(srv, "alice"), register(srv, "bob")
    first, second = alice.ws(), alice.ws()
    others = bob.ws()
    try:
        r = requests.get(f"{srv.base}/ws?token={alice.token}", timeout=10,
                         headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        ticket = alice.api.post("/ws/tickets", {}).json()["ticket"]
        r = requests.get(f"{srv.base}/ws?ticket={ticket}", timeout=10,
                         headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert_error(r, 429, "rate_limited")
        first.close()
        third = None
        deadline = time.monotonic() + 20
        while third is None and time.monotonic() < deadline:  # the close reaches the count on the loop's turn
            try:
                third = alice.ws()
            except websocket.WebSocketBadStatusException:
                time.sleep(0.1)
        assert third is not None, "no room after a socket closed"
        third.close()
    finally:
        for ws in (first, second, others):
            ws.close()
