"""SIGTERM: sockets are closed with 1001, in-flight posts are either durable (202) or refused (503),
and the process exits 0."""

import json
import signal
import threading
import time

import requests

from conftest import Client, WsReader, assert_error, login, register, wait_drained


def test_sigterm_closes_sockets_1001_and_drains(server_factory):
    srv = server_factory()
    alice = register(srv, "alice")
    bob = register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    reader = WsReader(bob.ws(timeout=10))
    reader.start()

    acked, bad = {}, []
    lock = threading.Lock()

    def poster(t):
        sess = requests.Session()
        h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
        for i in range(10000):
            content = f"s{t}-{i}"
            try:
                r = sess.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": content}),
                              headers=h, timeout=10)
            except requests.RequestException:
                return
            if r.status_code == 202:
                with lock:
                    acked[r.json()["id"]] = content
                continue
            try:
                assert_error(r, 503, "unavailable")
            except AssertionError as e:
                bad.append(str(e))
            return

    threads = [threading.Thread(target=poster, args=(t,), daemon=True) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        rc = srv.proc.wait(timeout=10)
    except Exception:
        rc = None
    exit_secs = time.monotonic() - t0
    for t in threads:
        t.join(timeout=15)
    reader.join(timeout=5)
    assert rc is not None, "server did not exit within 10 s of SIGTERM"
    assert rc == 0, f"server exited with status {rc} after SIGTERM:\n{srv.stderr_text()[-3000:]}"
    assert not bad, bad[:3]
    assert acked, "no post acknowledged before SIGTERM"
    assert reader.close is not None, f"websocket not closed with a close frame (error={reader.error!r})"
    assert reader.close[0] == 1001, f"close frame {reader.close}"
    print(f"shutdown: {len(acked)} acked, exit took {exit_secs:.2f} s")

    srv.stderr_file.close()
    srv.start()
    wait_drained(srv.base)
    api = Client(srv.base, login(srv, alice.username))
    stored = {m["id"]: m["content"] for m in api.all_history(cid)}
    missing = [i for i in acked if i not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost over a graceful restart"
    assert all(stored[i] == c for i, c in acked.items())
