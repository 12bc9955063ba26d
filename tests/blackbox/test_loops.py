"""The node's event loops (--threads): sockets spread over the loops, every socket gets every message
once and in order, and the queues between threads are bounded, each with its policy."""

import json
import os
import re
import threading
import time

import requests

from conftest import WsReader, register, ws_send, ws_wait
from rawws import RawWs, client_frame, read_close

FLOOD_FRAMES = 100_000
FLOOD_RSS_LIMIT_KIB = 48 * 1024  # what a flood of 100,000 frames may add to the server's RSS


def loop_sockets(srv):
    """{loop index: open WebSockets} from /metrics."""
    text = requests.get(srv.base + "/metrics", timeout=5).text
    return {int(m.group(1)): int(float(m.group(2)))
            for m in re.finditer(r'^natter_loop_websockets_open\{loop="(\d+)"\} (\S+)$', text, re.M)}


def small_quarantine_env():
    """ASan keeps freed memory in a quarantine; a small one lets RSS follow live memory."""
    asan = os.environ.get("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    return {"ASAN_OPTIONS": asan + ":quarantine_size_mb=4"}


def test_tabs_spread_over_loops_get_every_message_once_in_order(server_factory):
    """A user with 8 tabs, which the kernel spreads over 4 loops: posts over HTTP (from connections that
    land on any loop) and over one of the tabs reach every tab exactly once, in history's order."""
    srv = server_factory(args=["--threads", "4"])
    alice = register(srv, "alice")
    bob = register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    tabs = []
    try:
        # SO_REUSEPORT hashes each connection to a loop: open tabs until at least two loops hold some
        while len(tabs) < 8 or (len([n for n in loop_sockets(srv).values() if n]) < 2 and len(tabs) < 40):
            tabs.append(WsReader(bob.ws(timeout=10)))
        assert len(loop_sockets(srv)) == 4
        used = [n for n in loop_sockets(srv).values() if n]
        assert sum(used) == len(tabs) and len(used) >= 2, loop_sockets(srv)
        for t in tabs:
            t.start()
        sender = bob.ws(timeout=10)
        sessions = [requests.Session() for _ in range(4)]  # keep-alive connections, likely on different loops
        sent, client_ids = 0, set()
        for i in range(100):
            s = sessions[i % 4]
            r = s.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": f"http-{i}"}),
                       headers={"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"},
                       timeout=10)
            assert r.status_code == 202, r.text
            sent += 1
            if i % 5 == 0:
                ws_send(sender, {"type": "send", "chat_id": cid, "content": f"ws-{i}", "client_id": f"c{i}"})
                client_ids.add(f"c{i}")
                sent += 1
        while client_ids:  # the sends are not answered in line with the posts: history waits for their acks
            ack, _ = ws_wait(sender, lambda f: f.get("type") == "ack", timeout=10, what="ack")
            client_ids.discard(ack["client_id"])
        history = [m["id"] for m in alice.api.all_history(cid)]
        assert len(history) == sent
        # a sentinel posted last: a tab's pushes come in order, so an extra copy of any message would be before it
        history.append(alice.api.post_message(cid, "sentinel")["id"])
        for k, t in enumerate(tabs):
            assert t.wait_count(sent + 1, timeout=20), f"tab {k} got {len(t.messages())}/{sent + 1} (close={t.close})"
        for k, t in enumerate(tabs):
            assert [m["id"] for m in t.messages()] == history, f"tab {k}: not every message once, in order"
        sender.close()
    finally:
        for t in tabs:
            t.stop()
            t.ws.close()


def _flood(ws, frame, count, limit_s=60):
    """Sends count copies of frame without ever reading; stops early when the server stops reading
    (the socket blocks for a while) or closes. Returns how many frames went out."""
    ws.s.setblocking(False)
    chunk = frame * 256
    sent_bytes, total = 0, len(frame) * count
    deadline = time.monotonic() + limit_s
    stalled_since = None
    while sent_bytes < total and time.monotonic() < deadline:
        want = chunk[: min(len(chunk), total - sent_bytes)]
        try:
            n = ws.s.send(want)
            sent_bytes += n
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 3:
                break  # the server stopped reading us: it has closed us at the frame level
            time.sleep(0.01)
        except OSError:
            break
    ws.s.setblocking(True)
    return sent_bytes // len(frame)


def _assert_others_served(srv, carol, dave):
    """Two other users, in a chat of their own, still post and get pushes. dave is also in the flooded
    chat, whose accepted sends may still be reaching him: only the new chat's pushes are counted."""
    cid = carol.create_chat(members=[dave])["id"]
    reader = WsReader(dave.ws(timeout=10))
    reader.start()
    try:
        mid = carol.api.post_message(cid, "still served")["id"]
        in_chat = lambda m: m["chat_id"] == cid  # noqa: E731
        assert reader.wait_count(1, timeout=10, pred=in_chat), \
            f"another user was not served (close={reader.close})"
        assert [m["id"] for m in reader.messages() if in_chat(m)] == [mid]
    finally:
        reader.stop()
        reader.ws.close()


def test_flood_of_sends_without_reading_is_closed_and_bounded(server_factory):
    """A client sends 100,000 "send" frames and reads nothing. Each would be answered, so it has more
    than --ws-pending answers pending long before the end: it is closed with 1008 and no more of its
    bytes are read. The server's RSS stays within a stated bound and other users are served."""
    srv = server_factory(args=["--threads", "2"], env=small_quarantine_env())
    bob, carol, dave = register(srv, "bob"), register(srv, "carol"), register(srv, "dave")
    cid = bob.create_chat(members=[carol, dave])["id"]
    bob.api.post_message(cid, "warm-up")  # the caches know bob and the chat: sends run on the loop
    time.sleep(0.2)
    base = srv.rss_kib()
    ws = RawWs(srv.port, bob.token)
    frame = client_frame(0x1, json.dumps({"type": "send", "chat_id": cid, "content": "flood",
                                          "client_id": "flood"}).encode())
    try:
        sent = _flood(ws, frame, FLOOD_FRAMES)
        growth = srv.rss_kib() - base
        code, reason = read_close(ws, timeout=20)
    finally:
        ws.close()
    print(f"flood of sends: {sent} frames went out before the server stopped reading; RSS +{growth} KiB")
    assert code == 1008 and reason, (code, reason)
    assert growth < FLOOD_RSS_LIMIT_KIB, f"RSS grew {growth} KiB"
    text = requests.get(srv.base + "/metrics", timeout=5).text
    assert re.search(r"^natter_websockets_flood_closed_total [1-9]", text, re.M), "no flood close counted"
    _assert_others_served(srv, carol, dave)


def test_flood_of_bad_frames_without_reading_is_closed_and_bounded(server_factory):
    """The same with frames answered at once (errors): the answers fill the client's send queue,
    so it is closed as a slow reader (1008), and memory stays bounded."""
    srv = server_factory(args=["--threads", "2", "--ws-queue", "256"], env=small_quarantine_env())
    bob, carol, dave = register(srv, "bob"), register(srv, "carol"), register(srv, "dave")
    time.sleep(0.2)
    base = srv.rss_kib()
    ws = RawWs(srv.port, bob.token, rcvbuf=4096)
    try:
        sent = _flood(ws, client_frame(0x1, b"not json"), FLOOD_FRAMES)
        growth = srv.rss_kib() - base
        code, reason = read_close(ws, timeout=20)
    finally:
        ws.close()
    print(f"flood of bad frames: {sent} frames went out; RSS +{growth} KiB")
    assert code == 1008 and reason == "send queue full", (code, reason)
    assert growth < FLOOD_RSS_LIMIT_KIB, f"RSS grew {growth} KiB"
    _assert_others_served(srv, carol, dave)


def overflow(srv, request, what):
    """Rounds of 24 requests at once until one is answered 503: every 503 is "busy" with
    Retry-After: 1, every other answer a success, and the server still answers after."""
    statuses, busy = [], []
    lock = threading.Lock()

    def send():
        r = request()
        with lock:
            statuses.append(r.status_code)
            if r.status_code == 503:
                busy.append((r.json()["error"]["code"], r.headers.get("Retry-After")))

    for _ in range(10):  # rounds, until one overflowed (on any machine a round of 24 does)
        threads = [threading.Thread(target=send) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if busy:
            break
    assert busy, f"no 503 in {len(statuses)} {what}"
    assert all(code == "busy" and ra == "1" for code, ra in busy), busy[:3]
    assert requests.get(srv.base + "/healthz", timeout=5).status_code == 200
    return statuses


def test_full_worker_queue_answers_503_at_once(server_factory):
    """One worker, room for one job, and a store that takes 100 ms a session (core/fault.h):
    requests that miss the session cache overflow it; the overflow is answered 503 "busy" with
    Retry-After, never queued without bound, never hung."""
    srv = server_factory(args=["--workers", "1", "--worker-queue", "1", "--session-cache-ttl", "0"],
                         env={"NATTER_FAULTS": "store.session_user:delay=100"})
    user = register(srv, "eve")
    statuses = overflow(srv, lambda: requests.get(f"{srv.base}/me", headers={"Authorization": f"Bearer {user.token}"},
                                                  timeout=60), "requests with one worker and a queue of one")
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses


def test_full_auth_queue_answers_503_at_once(server_factory):
    """One hashing thread, room for one login (an Argon2 hash each): logins sent at once overflow
    it and are answered 503 "busy"; the API workers are another pool."""
    srv = server_factory(args=["--auth-workers", "1", "--auth-queue", "1"])
    user = register(srv, "eve")
    statuses = overflow(srv, lambda: requests.post(f"{srv.base}/sessions", timeout=60,
                                                   json={"username": user.username, "password": user.password}),
                        "logins with one hashing thread and a queue of one")
    assert set(statuses) <= {201, 503}, statuses
    assert 201 in statuses


def test_fanout_queue_bound_sheds_sockets_not_messages(server_factory):
    """--fanout-queue 1: a loop that gets a batch of pushes while another waits for it sheds it and
    closes (1013) the sockets it was for. Whatever a socket got before, plus history after the last id
    it saw, is every message, in order: a shed socket catches up, it never silently misses one. How
    many are shed depends on the loops' pace (none when a loop always takes a batch before the next
    comes: seen on Kafka + Cassandra); that a batch is shed, and the sockets closed 1013, is
    test_gateway_overload.c's, which hands a loop its batches itself."""
    srv = server_factory(args=["--threads", "2", "--fanout-queue", "1"])
    alice = register(srv, "alice")
    members = [register(srv, f"m{i}") for i in range(6)]
    cid = alice.create_chat(members=members)["id"]
    readers = [WsReader(m.ws(timeout=10)) for m in members for _ in range(2)]
    for r in readers:
        r.start()
    posted, failures, lock = [], [], threading.Lock()

    def post():
        sess = requests.Session()
        h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
        for i in range(300):
            r = sess.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": f"p{i}"}), headers=h,
                          timeout=10)
            with lock:
                if r.status_code != 202:
                    failures.append(r.text)
                    return
                posted.append(r.json()["id"])

    threads = [threading.Thread(target=post) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        history = [m["id"] for m in alice.api.all_history(cid)]
        assert sorted(history, key=int) == sorted(posted, key=int)
        shed = 0
        for r in readers:
            r.wait_count(len(history), timeout=20)
            got = [m["id"] for m in r.messages()]
            assert got == history[: len(got)], "a socket got messages out of order or with a gap"
            if r.close is not None:
                assert r.close[0] == 1013, f"closed with {r.close}"
                shed += 1
                rest = [m["id"] for m in alice.api.all_history(cid, after=got[-1] if got else "0")]
                assert got + rest == history
            else:
                assert len(got) == len(history), f"an open socket is short of messages ({len(got)}/{len(history)})"
        text = requests.get(srv.base + "/metrics", timeout=5).text
        counted = re.search(r"^natter_websockets_shed_closed_total (\S+)", text, re.M)
        assert counted and float(counted.group(1)) == shed
        print(f"fan-out queue of 1: {shed} of {len(readers)} sockets shed")
    finally:
        for r in readers:
            r.stop()
            r.ws.close()
