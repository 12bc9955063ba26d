"""History reads see what was pushed before the store wrote it.

On the Kafka log a node pushes a message as soon as it reads it from the
broker, before (or while) a store consumer writes it (docs/architecture.md).
A client that opens a socket after that push and catches up from history must
still find the message: the node keeps the log's unstored tail (consumer/
tail.h) and merges it into every history page (and into the chat list, and a
read marker may name such a message), and a node that starts replays that
tail from the store group's committed offsets. The tests hold the store
back for good with a fault (every batch write fails as if the store were
away), so nothing they read can have come from it.

On the local log a message is pushed only once it is stored, and a failing
store fails its post: these tests are the Kafka pass's."""

import time

import pytest
import requests

from conftest import KAFKA, _metric, register, wait_drained, ws_wait_message

pytestmark = pytest.mark.skipif(not KAFKA, reason="on the local log a push follows the store: history has it already")

STORE_AWAY = {"NATTER_FAULTS": "store.messages_insert:rc=unavail"}


def ids(page):
    return [m["id"] for m in page["messages"]]


def history(user, cid, **params):
    """GET /chats/{cid}/messages as it is now (the suite's client first waits for the store on
    Kafka, which here never comes)."""
    r = requests.get(f"{user.server.base}/chats/{cid}/messages", params=params, timeout=10,
                     headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def metric(srv, name):
    return _metric(requests.get(srv.base + "/metrics", timeout=5).text, name)


def stored_total(srv):
    return metric(srv, "natter_messages_stored_total")


def wait_tail(srv, n, timeout=30):
    deadline = time.monotonic() + timeout
    while metric(srv, "natter_unstored_tail_messages") != n:
        assert time.monotonic() < deadline, f"natter_unstored_tail_messages never reached {n}"
        time.sleep(0.05)


def test_history_merges_what_was_pushed_but_not_stored(server_factory):
    srv = server_factory(env=STORE_AWAY)
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    ws = bob.ws()
    try:
        first = alice.api.post_message(cid, "one")
        second = alice.api.post_message(cid, "two")
        ws_wait_message(ws, first["id"], timeout=30)
        ws_wait_message(ws, second["id"], timeout=30)
    finally:
        ws.close()

    # bob's second tab catches up: every form of history read has both
    latest = history(bob, cid)
    assert ids(latest) == [first["id"], second["id"]] and latest["has_more"] is False, latest
    m = latest["messages"][1]
    assert m["content"] == "two" and m["sender_id"] == alice.id and m["chat_id"] == cid, m
    assert ids(history(bob, cid, after="0")) == [first["id"], second["id"]]
    assert ids(history(bob, cid, after=first["id"])) == [second["id"]]
    assert ids(history(bob, cid, before=second["id"])) == [first["id"]]
    newest = history(bob, cid, limit=1)
    assert ids(newest) == [second["id"]] and newest["has_more"] is True, newest
    oldest = history(bob, cid, after="0", limit=1)
    assert ids(oldest) == [first["id"]] and oldest["has_more"] is True, oldest
    assert stored_total(srv) == 0  # none of it came from the store
    wait_tail(srv, 2)

    # another chat's tail stays its own; a stranger still gets 403
    r = requests.post(f"{srv.base}/chats", json={"name": "other", "members": []}, timeout=10,
                      headers={"Authorization": f"Bearer {alice.token}"})
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    r = requests.get(f"{srv.base}/chats/{other}/messages", timeout=10, headers={"Authorization": f"Bearer {bob.token}"})
    assert r.status_code == 403, r.text
    assert ids(history(alice, other)) == []


def chats(user):
    """GET /chats as it is now (not waiting for the store, as history() does not)."""
    r = requests.get(f"{user.server.base}/chats", timeout=10, headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["chats"]


def mark_read(user, cid, message_id):
    return requests.put(f"{user.server.base}/chats/{cid}/read", json={"message_id": message_id}, timeout=10,
                        headers={"Authorization": f"Bearer {user.token}"})


def test_chat_list_and_read_marker_see_what_was_pushed_but_not_stored(server_factory):
    srv = server_factory(env=STORE_AWAY)
    alice, bob = register(srv, "alice"), register(srv, "bob")
    busy = alice.create_chat(members=[bob])["id"]
    quiet = alice.create_chat(members=[bob])["id"]  # newer, and without messages
    first = alice.api.post_message(busy, "one")
    second = alice.api.post_message(busy, "two")
    wait_tail(srv, 2)
    assert stored_total(srv) == 0

    # bob's list: two unread, the newest last, and busy first (its last message is newer than quiet)
    listed = chats(bob)
    assert [c["id"] for c in listed] == [busy, quiet], listed
    assert listed[0]["unread"] == 2 and listed[0]["last_message"]["id"] == second["id"], listed[0]
    assert listed[0]["last_message"]["content"] == "two", listed[0]
    assert listed[1]["unread"] == 0 and listed[1]["last_message"] is None, listed[1]
    mine = chats(alice)[0]
    assert mine["id"] == busy and mine["unread"] == 0, mine  # her own messages

    # bob reads the first from his push: the marker takes it, and only the second stays unread
    r = mark_read(bob, busy, first["id"])
    assert r.status_code == 204, (r.status_code, r.text)
    assert chats(bob)[0]["unread"] == 1
    r = mark_read(bob, busy, second["id"])
    assert r.status_code == 204, (r.status_code, r.text)
    assert chats(bob)[0]["unread"] == 0
    # a message of another chat, or none at all, is still not found
    assert mark_read(bob, quiet, second["id"]).status_code == 404
    assert mark_read(bob, busy, str(int(second["id"]) + 1)).status_code == 404
    assert stored_total(srv) == 0


def test_a_message_history_shows_can_be_changed_before_it_is_stored(server_factory):
    """An edit, a reaction or a delete of a message that history shows from the tail is taken, not
    answered 404: the store has the message before the change, which comes after it in the log.
    Past a message's first seconds nothing waited for the store before; the wait below is for
    that age, not for the machine."""
    srv = server_factory(env=STORE_AWAY)
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    m = alice.api.post_message(cid, "hello")
    other = alice.api.post_message(cid, "other")
    wait_tail(srv, 2)
    time.sleep(2.5)  # older than events.c's STORE_WAIT_AGE_MS (2 s), so no wait covers the store's lag
    assert ids(history(bob, cid)) == [m["id"], other["id"]]
    base, h = f"{srv.base}/chats/{cid}/messages", {"Authorization": f"Bearer {alice.token}"}
    r = requests.patch(f"{base}/{m['id']}", json={"content": "edited"}, headers=h, timeout=10)
    assert r.status_code == 200 and r.json()["content"] == "edited", (r.status_code, r.text)
    r = requests.put(f"{base}/{m['id']}/reactions/%F0%9F%91%8D", headers=h, timeout=10)
    assert r.status_code == 204, (r.status_code, r.text)
    r = requests.delete(f"{base}/{other['id']}", headers=h, timeout=10)
    assert r.status_code == 204, (r.status_code, r.text)
    # another's message is still not one's own to edit, and an unknown id is still not found
    r = requests.patch(f"{base}/{m['id']}", json={"content": "x"}, timeout=10,
                       headers={"Authorization": f"Bearer {bob.token}"})
    assert r.status_code == 403, (r.status_code, r.text)
    r = requests.patch(f"{base}/{int(other['id']) + 1}", json={"content": "x"}, headers=h, timeout=10)
    assert r.status_code == 404, (r.status_code, r.text)

    # the events feed has the three changes too, though no store has them: a client that missed their
    # pushes finds them when it catches up
    def feed(**params):
        r = requests.get(f"{srv.base}/chats/{cid}/events", params=params, timeout=10,
                         headers={"Authorization": f"Bearer {bob.token}"})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()
    page = feed(after="0")
    assert [e["type"] for e in page["events"]] == ["message_edited", "reaction", "message_deleted"], page
    assert page["has_more"] is False
    edit, reaction, deleted = page["events"]
    assert edit["message_id"] == m["id"] and edit["user_id"] == alice.id
    assert edit["message"]["content"] == "edited" and edit["message"]["id"] == m["id"] and edit["message"]["edited_at"]
    assert (reaction["emoji"], reaction["op"], reaction["message_id"]) == ("\U0001F44D", "add", m["id"])
    assert deleted["message_id"] == other["id"]
    ids_in_order = [e["id"] for e in page["events"]]
    assert ids_in_order == sorted(ids_in_order, key=int)
    first = feed(after="0", limit=1)  # paged as history is
    assert [e["id"] for e in first["events"]] == ids_in_order[:1] and first["has_more"] is True
    newest = feed(limit=2)
    assert [e["id"] for e in newest["events"]] == ids_in_order[1:] and newest["has_more"] is True
    assert feed(after=ids_in_order[-1])["events"] == []
    assert stored_total(srv) == 0


def test_a_restarted_node_replays_the_unstored_tail(server_factory):
    srv = server_factory(env=STORE_AWAY)
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    posted = [alice.api.post_message(cid, f"before the restart {i}")["id"] for i in range(3)]
    srv.check_stop()
    srv.start(port=srv.port)
    wait_tail(srv, 3)
    # the new process pushed none of it and the store has none of it: what history shows is replayed
    assert ids(history(bob, cid)) == posted
    after = alice.api.post_message(cid, "after the restart")["id"]
    wait_tail(srv, 4)  # the 202 is the broker's: the fan-out reads the message a moment later
    ws = bob.ws()
    try:
        assert ids(history(bob, cid, after=posted[0])) == posted[1:] + [after]
    finally:
        ws.close()
    assert stored_total(srv) == 0

    # the store comes back: each message is there once, from the store now
    srv.check_stop()
    del srv.env["NATTER_FAULTS"]
    srv.start(port=srv.port)
    wait_drained(srv.base)
    assert stored_total(srv) == 4
    wait_tail(srv, 0)  # stored: gone from the tail
    assert [m["id"] for m in bob.api.all_history(cid)] == posted + [after]


def test_a_post_is_in_its_nodes_reads_once_answered(server_factory):
    """Read-your-writes on the posting node: its 202 is the broker's, and its fan-out reads the record a
    moment later (here the fan-out holds each batch it read 50 ms before it pushes it and keeps it in
    the tail); a history read, a chat list or a read
    marker on that node waits until the fan-out has it (log.h, fanout_wait_own). The first read after
    each post alternates between history and the chat list, so each waits on its own."""
    srv = server_factory(env={"NATTER_FAULTS": STORE_AWAY["NATTER_FAULTS"] + ";log.fanout_poll:delay=50"})
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    posted = []
    for i in range(4):
        posted.append(alice.api.post_message(cid, f"mine {i}")["id"])
        reads = [lambda: ids(history(alice, cid)) == posted,
                 lambda: [(c["last_message"]["id"], c["unread"]) for c in chats(bob)] == [(posted[-1], len(posted))]]
        for read in reads if i % 2 == 0 else reversed(reads):
            assert read(), (i, history(alice, cid), chats(bob))
    posted.append(alice.api.post_message(cid, "marked at once")["id"])
    r = mark_read(bob, cid, posted[-1])
    assert r.status_code == 204, (r.status_code, r.text)
    assert chats(bob)[0]["unread"] == 0
    assert stored_total(srv) == 0  # all of it from the tail
    assert metric(srv, "natter_own_writes_wait_timeouts_total") == 0
