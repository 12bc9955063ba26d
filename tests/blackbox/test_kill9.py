"""kill -9 while posting: every message answered 202 survives, exactly once."""

import json
import threading
import time

import requests

from conftest import KAFKA, Client, login, register, wait_drained

THREADS = 8
PER_THREAD = 300 if KAFKA else 200  # 2,400 (Kafka) or 1,600 posts in all, if the server lives that long


def test_kill9_keeps_every_acked_message(server_factory):
    srv = server_factory()
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    old_token = alice.token

    acked = {}  # id -> content
    dup_acks = []
    lock = threading.Lock()
    go = threading.Event()

    def poster(t):
        sess = requests.Session()
        h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
        go.wait()
        for i in range(PER_THREAD):
            content = f"t{t}-m{i:04d}"
            try:
                r = sess.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": content}),
                              headers=h, timeout=10)
            except requests.RequestException:
                return  # the server died under us
            if r.status_code != 202:
                return
            with lock:
                mid = r.json()["id"]
                if mid in acked:
                    dup_acks.append((mid, acked[mid], content))
                acked[mid] = content

    threads = [threading.Thread(target=poster, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    go.set()
    t0 = time.monotonic()
    # stream for ~0.75 s (longer if the server is slow to ack anything at all)
    while time.monotonic() - t0 < 0.75 or (len(acked) < 50 and time.monotonic() - t0 < 5):
        time.sleep(0.01)
    with lock:
        n_before_kill = len(acked)
    srv.kill9()
    for t in threads:
        t.join(timeout=15)
    assert not dup_acks, f"one id answered for two posts: {dup_acks[:5]}"
    assert n_before_kill > 0, "no post was acknowledged before the kill"
    assert len(acked) < THREADS * PER_THREAD, "all posts finished before the kill: the test proved nothing"

    srv.start()  # same data dir, new port
    wait_drained(srv.base)
    token = login(srv, alice.username)
    api = Client(srv.base, token)
    stored, after = [], "0"
    while True:
        r = api.get(f"/chats/{cid}/messages", params={"after": after, "limit": 200})
        assert r.status_code == 200, r.text
        page = r.json()
        stored += page["messages"]
        if not page["has_more"]:
            break
        after = page["messages"][-1]["id"]

    ids = [m["id"] for m in stored]
    print(f"kill9: {n_before_kill} acked at the kill, {len(acked)} acked in all, {len(stored)} stored")
    dups = {i for i in ids if ids.count(i) > 1} if len(set(ids)) != len(ids) else set()
    assert not dups, f"duplicate ids in history: {sorted(dups)[:10]}"
    assert ids == sorted(ids, key=int), "history not in id order"
    contents = [m["content"] for m in stored]
    assert len(set(contents)) == len(contents), "a message was stored twice under different ids"
    by_id = {m["id"]: m for m in stored}
    missing = [i for i in acked if i not in by_id]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages lost, e.g. {missing[:5]}"
    wrong = [(i, acked[i], by_id[i]["content"]) for i in acked if by_id[i]["content"] != acked[i]]
    assert not wrong, f"contents differ: {wrong[:5]}"
    sent = {f"t{t}-m{i:04d}" for t in range(THREADS) for i in range(PER_THREAD)}
    assert set(contents) <= sent, "history holds content nobody sent"
    for m in stored:
        assert m["chat_id"] == cid and m["sender_id"] == alice.id

    # the chat still works after the restart, and ids keep increasing
    r = api.post(f"/chats/{cid}/messages", {"content": "after restart"})
    assert r.status_code == 202, r.text
    if ids:
        assert int(r.json()["id"]) > int(ids[-1]), "ids went backwards after the restart"
    # a session issued before the crash survives it (sessions are stored, not in memory)
    assert Client(srv.base, old_token).get("/me").status_code == 200
