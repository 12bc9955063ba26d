"""Events, typing, presence and read receipts across nodes on the Kafka log,
a node that dies, and every event redelivered to the store. Runs when
NATTER_TEST_KAFKA names a real broker (scripts/test-engines starts one)."""

import time
import urllib.parse

import pytest
import websocket

from conftest import (KAFKA, PASSWORD, Client, Server, User, login, register, wait_drained, ws_closed, ws_quiet,
                      ws_send, ws_wait)
from test_events import wait_online
from test_kafka import user_on

pytestmark = pytest.mark.skipif(not KAFKA, reason="needs a real Kafka broker: set NATTER_TEST_KAFKA")

THUMB = urllib.parse.quote("\U0001F44D", safe="")
# a node's presence claims hold for --ws-ping-timeout: short here, so a dead node's users go offline soon
PING_TIMEOUT = "2"


@pytest.fixture
def cluster(tmp_path_factory):
    """Two nodes (ids 1 and 2) on one broker, one topic, one store group and one store."""
    a = Server(tmp_path_factory.mktemp("node1"), args=["--node-id", "1", "--ws-ping-timeout", PING_TIMEOUT],
               name="node1")
    b = Server(tmp_path_factory.mktemp("node2"), args=["--node-id", "2", "--ws-ping-timeout", PING_TIMEOUT],
               name="node2", log_id=a.log_id)
    b.data_dir = a.data_dir
    a.start()
    b.start()
    yield a, b
    problems = a.stop() + b.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def frame(ws, kind, pred=lambda f: True, timeout=15):
    f, _ = ws_wait(ws, lambda f: f.get("type") == kind and pred(f), timeout, what=kind)
    return f


def test_a_logout_closes_the_sessions_sockets_on_the_other_node(cluster):
    n1, n2 = cluster
    alice = register(n1, "alice")
    ticket = Client(n1.base, alice.token).post("/ws/tickets")
    assert ticket.status_code == 201, ticket.text
    on_2 = websocket.create_connection(f"{n2.ws_base}/ws?ticket={ticket.json()['ticket']}", timeout=10)
    try:
        assert Client(n2.base, alice.token).get("/me").status_code == 200  # node 2's session cache has it now
        assert Client(n1.base, alice.token).delete("/sessions").status_code == 204
        assert ws_closed(on_2, timeout=15) == (4001, "session ended")
        # a new socket on node 2 by the token: its cache still knows the session, the store does not
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(f"{n2.ws_base}/ws?token={alice.token}", timeout=10)
        assert e.value.status_code == 401
    finally:
        on_2.close()


def test_events_reach_the_other_node(cluster):
    n1, n2 = cluster
    alice = register(n1, "alice")
    bob = user_on(n2, register(n1, "bob"))
    cid = alice.create_chat(members=[bob.username])["id"]
    wb = bob.ws(timeout=10)  # Bob on node 2, Alice posts and changes things on node 1
    try:
        m = alice.api.post_message(cid, "from node 1")
        assert frame(wb, "message")["message"]["id"] == m["id"]
        r = alice.api.request("PATCH", f"/chats/{cid}/messages/{m['id']}", json_body={"content": "edited on 1"})
        assert r.status_code == 200, r.text
        assert frame(wb, "message_edited")["message"]["content"] == "edited on 1"
        assert bob.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{THUMB}").status_code == 204
        wa = alice.ws(timeout=10)
        try:
            assert bob.api.delete(f"/chats/{cid}/messages/{m['id']}/reactions/{THUMB}").status_code == 204
            assert frame(wa, "reaction", lambda f: f["op"] == "remove")["user_id"] == bob.id  # from node 2
        finally:
            wa.close()
        assert alice.api.delete(f"/chats/{cid}/messages/{m['id']}").status_code == 204
        assert frame(wb, "message_deleted")["id"] == m["id"]
    finally:
        wb.close()
    wait_drained(n1.base)
    slot = bob.api.all_history(cid)[0]
    assert slot == {"id": m["id"], "chat_id": cid, "sender_id": alice.id, "created_at": m["created_at"],
                    "deleted": True}


def test_typing_and_reads_across_nodes(cluster):
    n1, n2 = cluster
    alice = register(n1, "alice")
    bob = user_on(n2, register(n1, "bob"))
    cid = alice.create_chat(members=[bob.username])["id"]
    m = alice.api.post_message(cid, "read me")
    wa, wb = alice.ws(timeout=10), bob.ws(timeout=10)
    try:
        time.sleep(0.3)
        ws_send(wb, {"type": "typing", "chat_id": cid})
        assert frame(wa, "typing") == {"type": "typing", "chat_id": cid, "user_id": bob.id}
        ws_quiet(wb, lambda f: f.get("type") == "typing", wait=0.5)  # never back to the typist, on any node
        wait_drained(n1.base)
        assert bob.api.put(f"/chats/{cid}/read", {"message_id": m["id"]}).status_code == 204
        assert frame(wa, "read") == {"type": "read", "chat_id": cid, "user_id": bob.id, "message_id": m["id"]}
        members = {u["id"]: u for u in alice.api.get_chat(cid)["members"]}
        assert members[bob.id]["last_read_id"] == m["id"]
    finally:
        wa.close()
        wb.close()


def test_presence_across_nodes_and_a_dead_node(cluster):
    n1, n2 = cluster
    alice = register(n1, "alice")
    bob = user_on(n2, register(n1, "bob"))
    cid = alice.create_chat(members=[bob.username])["id"]
    wa = alice.ws(timeout=10)
    try:
        wait_online(bob, cid, alice, True)  # node 2 learned that Alice is on node 1
        wb = bob.ws(timeout=10)
        assert frame(wa, "presence", lambda f: f["user_id"] == bob.id)["online"] is True
        wait_online(alice, cid, bob, True)
        wb.close()
        assert frame(wa, "presence", lambda f: f["user_id"] == bob.id, timeout=20)["online"] is False
        # Bob comes back on node 2, and node 2 dies: node 1 stops hearing its heartbeats
        wb = bob.ws(timeout=10)
        assert frame(wa, "presence", lambda f: f["user_id"] == bob.id)["online"] is True
        n2.kill9()
        f = frame(wa, "presence", lambda f: f["user_id"] == bob.id, timeout=30)
        assert f["online"] is False
        wait_online(alice, cid, bob, False)
        wb.close()
    finally:
        wa.close()


def test_redelivered_events_change_nothing(tmp_path_factory):
    """Every record of the topic read again by a new store group, into the same store: the same history."""
    first = Server(tmp_path_factory.mktemp("first"), name="first").start()
    try:
        before, alice, cid = changes_then_snapshot(first)
    finally:
        problems = first.stop()
    assert not problems, problems
    again = Server(tmp_path_factory.mktemp("again"), args=["--kafka-group", f"replay-{first.log_id}"], name="again",
                   log_id=first.log_id)
    again.data_dir = first.data_dir  # the same store, every record of the topic once more
    again.start()
    try:
        wait_drained(again.base, timeout=120)
        alice = User(again, alice.username, PASSWORD, alice.id, login(again, alice.username))
        after = (alice.api.all_history(cid), alice.api.get(f"/chats/{cid}/events", params={"after": "0"}).json())
    finally:
        problems = again.stop()
    assert not problems, problems
    assert after == before


def changes_then_snapshot(node):
    """Messages, edits, reactions and a delete; once stored, the chat's history and events feed."""
    alice = register(node, "alice")
    bob = register(node, "bob")
    cid = alice.create_chat(members=[bob.username])["id"]
    kept = alice.api.post_message(cid, "kept")
    gone = alice.api.post_message(cid, "secret words")
    for content in ("edited once", "edited twice"):
        assert alice.api.request("PATCH", f"/chats/{cid}/messages/{kept['id']}", json_body={"content": content}).ok
    for who in (alice, bob):
        assert who.api.put(f"/chats/{cid}/messages/{kept['id']}/reactions/{THUMB}").status_code == 204
    assert bob.api.delete(f"/chats/{cid}/messages/{kept['id']}/reactions/{THUMB}").status_code == 204
    assert alice.api.request("PATCH", f"/chats/{cid}/messages/{gone['id']}", json_body={"content": "more secret"}).ok
    assert alice.api.delete(f"/chats/{cid}/messages/{gone['id']}").status_code == 204
    wait_drained(node.base)
    history = alice.api.all_history(cid)
    assert history[0]["content"] == "edited twice" and history[1]["deleted"] is True
    assert history[0]["reactions"] == [{"emoji": "\U0001F44D", "count": 1, "user_ids": [alice.id]}]
    return (history, alice.api.get(f"/chats/{cid}/events", params={"after": "0"}).json()), alice, cid


def test_a_removal_on_one_node_reaches_the_other_nodes_cache_and_sockets(tmp_path_factory):
    """Node 2 trusts its cached members for a minute here (--members-ttl 60000): a member removed on
    node 1 is refused on node 2 as soon as its membership record comes, not a minute later, and his
    socket on node 2 hears of it; one added there may post at once."""
    ttl = ["--members-ttl", "60000"]
    a = Server(tmp_path_factory.mktemp("node1"), args=["--node-id", "1", *ttl], name="node1")
    b = Server(tmp_path_factory.mktemp("node2"), args=["--node-id", "2", *ttl], name="node2", log_id=a.log_id)
    b.data_dir = a.data_dir
    a.start()
    b.start()
    try:
        alice, bob, carol = register(a, "alice"), register(a, "bob"), register(a, "carol")
        cid = alice.create_chat(members=[bob])["id"]
        bob_2, carol_2 = user_on(b, bob), user_on(b, carol)
        ws = bob_2.ws()
        try:
            assert bob_2.api.post_message(cid, "from node 2")  # node 2 caches the chat's members now
            assert carol_2.api.post("/chats/" + cid + "/messages", {"content": "not yet"}).status_code == 403
            assert alice.api.delete(f"/chats/{cid}/members/{bob.username}").status_code == 204
            assert alice.api.put(f"/chats/{cid}/members/{carol.username}").status_code == 204
            f = frame(ws, "membership", lambda f: f.get("op") == "removed")
            assert (f["chat_id"], f["user_id"], f["by"]) == (cid, bob.id, alice.id), f
            deadline = time.monotonic() + 15
            while True:
                refused = bob_2.api.post(f"/chats/{cid}/messages", {"content": "after"}).status_code == 403
                taken = carol_2.api.post(f"/chats/{cid}/messages", {"content": "in"}).status_code == 202
                if refused and taken:
                    break
                assert time.monotonic() < deadline, "node 2 still trusts the members it had cached"
                time.sleep(0.1)
        finally:
            ws.close()
    finally:
        problems = a.stop() + b.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
