"""History paging over more than 1,000 messages that span several store
partitions (on Cassandra: time buckets of 1 s here), forward and backward:
every message once, in id order."""

import json
import threading
import time

import requests

from conftest import RUN_ID, register


def test_paging_over_buckets(server_factory):
    # the bucket size is fixed when a keyspace is made: this test has its own
    srv = server_factory(args=["--cql-bucket", "1", "--cql-keyspace", f"buckets_{RUN_ID}"])
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    sent, lock = [], threading.Lock()

    def poster(t, n):
        s = requests.Session()
        h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
        for i in range(n):
            r = s.post(f"{srv.base}/chats/{cid}/messages", data=json.dumps({"content": f"p{t}-{i}"}),
                       headers=h, timeout=30)
            assert r.status_code == 202, r.text
            with lock:
                sent.append(r.json()["id"])
            if i % 100 == 99:
                time.sleep(0.3)  # spread the posts over several seconds: several buckets

    threads = [threading.Thread(target=poster, args=(t, 300)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = sorted(sent, key=int)
    assert len(want) == 1200
    spanned = (int(want[-1]) >> 22) // 1000 - (int(want[0]) >> 22) // 1000
    assert spanned >= 2, "the posts did not span several seconds"

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
