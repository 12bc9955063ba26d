"""A WebSocket reader that stops reading is cut off with a close code; memory stays bounded;
other readers of the same chat are not disturbed."""

import json
import os
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import WsReader, metric, register, wait_for
from rawws import RawWs, client_frame, read_close_code

WS_QUEUE = 64
ROUND = WS_QUEUE // 2
N_MESSAGES = 1500
CONTENT_LEN = 3000
POSTERS = 4
RSS_GROWTH_LIMIT_KIB = 64 * 1024


def test_slow_reader_is_closed_and_memory_bounded(server_factory):
    asan = os.environ.get("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    # a small quarantine so that RSS reflects live memory, not ASan's freed-memory quarantine
    srv = server_factory(args=["--ws-queue", str(WS_QUEUE)], env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=4"})
    alice = register(srv, "alice")
    bob = register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]

    bob2 = WsReader(bob.ws(timeout=10))  # a second tab that reads normally
    bob2.start()
    slow = RawWs(srv.port, bob.token)

    # warm up, then take the baseline
    warm = alice.api.post_message(cid, "warm-up")["id"]
    assert bob2.wait_count(1, timeout=5)
    time.sleep(0.2)
    base_rss = srv.rss_kib()
    peak = [base_rss]
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            try:
                peak[0] = max(peak[0], srv.rss_kib())
            except (OSError, AssertionError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    # the slow reader starts reading once the server has closed it (its close frame then gets through
    # the buffers within the close grace, however long the posting below takes on this machine)
    seen, close, read_error = [], [], []

    def read_slow():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = requests.get(f"{srv.base}/metrics", timeout=5).text
            if any(line.startswith("natter_websockets_slow_closed_total ") and float(line.split()[1]) >= 1
                   for line in text.splitlines()):
                break
            time.sleep(0.05)
        try:
            while True:
                op, data = slow.read_frame(timeout=10)
                if op == 0x1:
                    f = json.loads(data.decode("utf-8"))
                    if f.get("type") == "message":
                        seen.append(f["message"]["id"])
                elif op == 0x8:
                    code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                    close.append((code, data[2:].decode("utf-8", "replace")))
                    return
        except (TimeoutError, EOFError, ConnectionResetError) as e:
            read_error.append(repr(e))

    slow_reader = threading.Thread(target=read_slow, daemon=True)
    slow_reader.start()

    # posting goes in rounds of half the normal reader's queue, each after that reader has taken the
    # last: it reads as a normal client does, however slowly this machine runs its thread; the slow
    # reader reads nothing, so its queue still fills
    posted = {}
    failures = []
    lock = threading.Lock()
    local = threading.local()
    h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}

    def post(i):
        if not hasattr(local, "sess"):
            local.sess = requests.Session()
        content = (f"{i:05d}-" + "x" * CONTENT_LEN)[:CONTENT_LEN]
        try:
            r = local.sess.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": content}),
                                headers=h, timeout=20)
        except requests.RequestException as e:
            failures.append(repr(e))
            return
        if r.status_code != 202:
            failures.append(f"{r.status_code} {r.text[:200]}")
            return
        with lock:
            posted[r.json()["id"]] = content

    t0 = time.monotonic()
    with ThreadPoolExecutor(POSTERS) as pool:
        for start in range(0, N_MESSAGES, ROUND):
            list(pool.map(post, range(start, min(start + ROUND, N_MESSAGES))))
            assert not failures, failures[:5]
            assert bob2.wait_count(1 + len(posted), timeout=30), \
                f"normal reader got {len(bob2.messages())}/{1 + len(posted)}, close={bob2.close}, error={bob2.error!r}"
    post_secs = time.monotonic() - t0
    assert len(posted) == N_MESSAGES

    # the normal reader gets everything, in id order, and is not closed
    ok = bob2.wait_count(N_MESSAGES + 1, timeout=30)
    time.sleep(0.3)
    stop_sampling.set()
    sampler.join()
    got2 = [m["id"] for m in bob2.messages()]
    assert ok, f"normal reader got {len(got2)}/{N_MESSAGES + 1}, close={bob2.close}, error={bob2.error!r}"
    assert bob2.close is None and bob2.error is None, (bob2.close, bob2.error)
    assert got2 == [warm] + sorted(posted, key=int), "normal reader: wrong ids or order"

    growth = peak[0] - base_rss
    assert growth < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {growth / 1024:.1f} MiB (base {base_rss} KiB)"

    # the slow reader read some messages, then a close frame with 1008/1013 and a reason
    slow_reader.join(timeout=70)
    slow.close()
    assert not read_error, f"slow reader: {read_error} after {len(seen)} messages, no close frame"
    assert close, f"slow reader was not closed: read {len(seen)} messages (posting took {post_secs:.1f} s)"
    close = close[0]
    print(f"slow reader: posting took {post_secs:.2f} s, RSS base {base_rss} KiB peak {peak[0]} KiB, "
          f"slow socket read {len(seen)} messages then close {close}")
    assert close[0] in (1008, 1013), f"close code {close}"
    assert close[1], "close frame without a reason"
    assert len(seen) < N_MESSAGES, "the slow reader got every message: it was never too slow?"
    assert seen == sorted(seen, key=int) and set(seen) <= set(posted) | {warm}, "slow reader got ids out of order"

    # he catches up from history after the last id he saw
    last = seen[-1] if seen else "0"
    rest = [m["id"] for m in bob.api.all_history(cid) if int(m["id"]) > int(last)]
    assert seen + rest == [warm] + sorted(posted, key=int), "socket + history catch-up does not give every message"

    bob2.stop()
    bob2.ws.close()
    assert requests.get(srv.base + "/healthz", timeout=5).status_code == 200


def test_burst_that_fills_the_queue_mid_receive_closes_cleanly(server_factory):
    """More refused frames than --ws-queue in one read, then more frames and a ping: natter closes the
    socket as a slow reader from inside wslay's receive, with the rest of the burst still unread. It
    must not re-enter wslay there (a review found that path could reach an assertion in wslay), and
    must stay up for everyone else."""
    srv = server_factory(args=["--ws-queue", "16"])
    bob = register(srv, "bob")
    ws = RawWs(srv.port, bob.token, rcvbuf=1 << 20)
    # the 17th refused frame fills the queue; the rest of the burst is still unread when it does
    burst = client_frame(0x2) * 17 + client_frame(0x1, b"x" * 100) * 90 + client_frame(0x9, b"ping")
    ws.s.sendall(burst)
    assert read_close_code(ws) == 1008
    ws.close()
    assert srv.alive()
    assert requests.get(f"{srv.base}/healthz", timeout=5).status_code == 200
    other = register(srv, "carol")
    assert other.api.get("/me").status_code == 200


def test_ping_flood_without_reading_is_closed(server_factory):
    """A client that sends pings and never reads its pongs is a slow reader too: it is closed,
    and natter's memory does not grow with the pongs it would otherwise queue."""
    srv = server_factory(args=["--ws-queue", "32"])
    bob = register(srv, "bob")
    ws = RawWs(srv.port, bob.token, rcvbuf=4096)
    pings = client_frame(0x9, b"p" * 100) * 2000
    try:
        ws.s.sendall(pings)  # the server closes once its queue of pongs is full
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while srv.alive() and time.monotonic() < deadline:
        text = requests.get(f"{srv.base}/metrics", timeout=5).text
        if _metric_value(text, "natter_websockets_slow_closed_total") >= 1:
            break
        time.sleep(0.1)
    assert _metric_value(requests.get(f"{srv.base}/metrics", timeout=5).text,
                         "natter_websockets_slow_closed_total") >= 1
    ws.close()
    assert srv.alive()


def _metric_value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_an_http_client_that_stops_reading_is_dropped(server_factory):
    """An HTTP client that asks for a large answer and never reads it would hold that answer in the
    server's memory for as long as its connection lived (h2o has no write timeout): with
    --write-timeout the connection ends once what was sent sits unacknowledged that long."""
    # (an idle keep-alive connection is closed after --request-timeout: long here, so only the
    # write timeout can end this one)
    srv = server_factory(args=["--write-timeout", "1000", "--request-timeout", "120000"])
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    for i in range(200):
        alice.api.post_message(cid, f"{i:04d}" + "x" * 3996)
    base_open = metric(srv.base, "natter_connections_open")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a window that closes at once
    s.connect(("127.0.0.1", srv.port))
    try:
        s.sendall(f"GET /chats/{cid}/messages?limit=200 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {alice.token}\r\n\r\n".encode())
        assert wait_for(lambda: metric(srv.base, "natter_connections_open") > base_open, timeout=10)
        # ~800 KB of answer, never read: the kernel gives up on the closed window and h2o closes it
        assert wait_for(lambda: metric(srv.base, "natter_connections_open") <= base_open, timeout=30), \
            "the connection of a client that reads nothing stayed open"
    finally:
        s.close()
    assert alice.api.get("/me").status_code == 200
