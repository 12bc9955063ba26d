"""History paging over more than 1,000 messages that span several store
partitions (on Cassandra: time buckets of 1 s here), forward and backward:
every message once, in id order. Over the same messages, unread counts stop
at 1,000."""

import json
import threading
import time

import requests

from conftest import RUN_ID, register


ROUNDS, THREADS, PER_ROUND = 4, 4, 75  # 1,200 posts
ID_EPOCH_MS = 1704067200000


def id_second(mid):
    """The Unix second a message id was issued in (bits 62..22: ms since 2024-01-01, core/id.h)."""
    return ((int(mid) >> 22) + ID_EPOCH_MS) // 1000


def test_paging_over_buckets(server_factory):
    # the bucket size is fixed when a keyspace is made: this test has its own
    srv = server_factory(args=["--cql-bucket", "1", "--cql-keyspace", f"buckets_{RUN_ID}"])
    alice = register(srv, "alice")
    bob = register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    sent, lock = [], threading.Lock()

    def poster(r, t):
        s = requests.Session()
        h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
        for i in range(PER_ROUND):
            r_ = s.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": f"p{r}-{t}-{i}"}),
                        headers=h, timeout=30)
            assert r_.status_code == 202, r_.text
            with lock:
                sent.append(r_.json()["id"])

    # Rounds of concurrent posts; each round starts once the wall clock is
    # past the second of the last id the previous round got, so the posts
    # span at least ROUNDS seconds (buckets) however fast the machine is.
    for r in range(ROUNDS):
        if sent:
            last = max(id_second(m) for m in sent)
            while int(time.time()) <= last:
                time.sleep(0.01)
        threads = [threading.Thread(target=poster, args=(r, t)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    want = sorted(sent, key=int)
    assert len(want) == ROUNDS * THREADS * PER_ROUND
    assert id_second(want[-1]) - id_second(want[0]) >= ROUNDS - 1, "the posts did not span several seconds"

    forward = [m["id"] for m in alice.api.all_history(cid, limit=97)]
    assert forward == want

    backward, before = [], None
    while True:
        params = {"limit": 89} if before is None else {"limit": 89, "before": before}
        page = alice.api.history(cid, **params)
        ids = [m["id"] for m in page["messages"]]
        assert ids == sorted(ids, key=int)
        backward = ids + backward
        if not page["has_more"]:
            break
        before = ids[0]
    assert backward == want

    # a window in the middle: after X and before Y
    x, y = want[100], want[1100]
    page = alice.api.history(cid, after=x, before=y, limit=200)
    assert [m["id"] for m in page["messages"]] == want[101:301] and page["has_more"]

    # unread: what others sent after bob's marker, counted up to 1,000
    assert bob.api.chat_summary(cid)["unread"] == 1000  # 1,200
    r = bob.api.put(f"/chats/{cid}/read", {"message_id": want[150]})
    assert r.status_code == 204, r.text
    assert bob.api.chat_summary(cid)["unread"] == 1000  # 1,049, over several buckets
    r = bob.api.put(f"/chats/{cid}/read", {"message_id": want[200]})
    assert r.status_code == 204, r.text
    assert bob.api.chat_summary(cid)["unread"] == 999
    bob.api.post_message(cid, "his own")
    assert bob.api.chat_summary(cid)["unread"] == 999
    assert alice.api.chat_summary(cid)["unread"] == 1
