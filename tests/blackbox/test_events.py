"""Edits, deletes and reactions (events in the log), the events feed, typing,
presence and read receipts: what a client sees, on whatever log and store
the suite runs on (the black-box suite runs on each engine)."""

import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import (
    CQL,
    KAFKA,
    assert_error,
    assert_id,
    assert_message,
    assert_time,
    metric,
    register,
    settle,
    wait_for,
    ws_next_json,
    ws_quiet,
    ws_send,
    ws_wait,
)

THUMB = "\U0001F44D"
HEART = "\u2764\ufe0f"
FAMILY = "\U0001F469\u200d\U0001F469\u200d\U0001F467"


def enc(emoji):
    return urllib.parse.quote(emoji, safe="")


@pytest.fixture
def trio(server):
    """Alice and Bob share a chat; Carol is in none of theirs."""
    alice, bob, carol = register(server, "alice"), register(server, "bob"), register(server, "carol")
    chat = alice.create_chat(members=[bob])
    return alice, bob, carol, chat["id"]


def ws_event(ws, kind, pred=lambda f: True, timeout=10):
    f, _ = ws_wait(ws, lambda f: f.get("type") == kind and pred(f), timeout, what=kind)
    return f


def history(user, cid):
    return {m["id"]: m for m in user.api.all_history(cid)}


# ---------------------------------------------------------------- edits


def test_edit(trio):
    alice, bob, carol, cid = trio
    m = alice.api.post_message(cid, "helo", client_id="e-1")
    wb = bob.ws()
    try:
        r = alice.api.request("PATCH", f"/chats/{cid}/messages/{m['id']}", json_body={"content": "hello"})
        assert r.status_code == 200, r.text
        edited = r.json()
        assert_message(edited, chat_id=cid, sender_id=alice.id, content="hello", mid=m["id"], client_id="e-1")
        assert_time(edited["edited_at"])
        assert edited["created_at"] == m["created_at"]
        push = ws_event(wb, "message_edited", lambda f: f["message"]["id"] == m["id"])
        assert push["message"] == edited
        assert_id(push["event_id"])
    finally:
        wb.close()
    settle(alice.server.base)
    stored = history(bob, cid)[m["id"]]
    assert stored["content"] == "hello" and stored["edited_at"] == edited["edited_at"], stored
    assert "reactions" not in stored  # none: the message's shape is its push's
    # and again: the newest words win
    r = alice.api.request("PATCH", f"/chats/{cid}/messages/{m['id']}", json_body={"content": "hello, Bob"})
    assert r.status_code == 200, r.text
    settle(alice.server.base)
    assert history(alice, cid)[m["id"]]["content"] == "hello, Bob"


def test_edit_errors(trio):
    alice, bob, carol, cid = trio
    m = alice.api.post_message(cid, "mine")
    path = f"/chats/{cid}/messages/{m['id']}"
    patch = lambda user, body, p=path, **kw: user.api.request("PATCH", p, json_body=body, **kw)  # noqa: E731
    assert_error(patch(bob, {"content": "not yours"}), 403, "forbidden")
    assert_error(patch(carol, {"content": "not a member"}), 403, "forbidden")
    assert_error(patch(alice, {"content": "x"}, p=f"/chats/{cid}/messages/12345"), 404, "not_found")
    assert_error(patch(alice, {"content": "x"}, p=f"/chats/999999/messages/{m['id']}"), 404, "not_found")
    other = alice.create_chat()["id"]  # the message is not that chat's
    assert_error(patch(alice, {"content": "x"}, p=f"/chats/{other}/messages/{m['id']}"), 404, "not_found")
    assert_error(patch(alice, {"content": "   "}), 400, "invalid_request")
    assert_error(patch(alice, {"content": "\u00a0\u3000"}), 400, "invalid_request")
    assert_error(patch(alice, {}), 400, "invalid_request")
    assert_error(patch(alice, {"content": 5}), 400, "invalid_request")
    assert_error(patch(alice, {"content": "x" * 4001}), 400, "content_too_long")
    r = alice.api.request("PATCH", path, data=b'{"content": "\xff"}')
    assert_error(r, 400, "invalid_json")
    assert_error(alice.api.request("PATCH", path, data=b"{oops"), 400, "invalid_json")
    assert_error(patch(alice, {"content": "x"}, token="nope"), 401, "unauthorized")
    # nothing changed
    settle(alice.server.base)
    stored = history(alice, cid)[m["id"]]
    assert stored["content"] == "mine" and "edited_at" not in stored, stored


# ---------------------------------------------------------------- deletes


def test_delete(trio):
    alice, bob, carol, cid = trio
    keep = alice.api.post_message(cid, "kept")
    gone = alice.api.post_message(cid, "regrettable", client_id="d-1")
    last = alice.api.post_message(cid, "after")
    settle(alice.server.base)
    assert bob.api.chat_summary(cid)["unread"] == 3
    wb = bob.ws()
    try:
        r = alice.api.delete(f"/chats/{cid}/messages/{gone['id']}")
        assert r.status_code == 204 and r.content == b"", r.text
        push = ws_event(wb, "message_deleted")
        assert push["chat_id"] == cid and push["id"] == gone["id"], push
        assert set(push) == {"type", "chat_id", "id", "event_id"}, push
    finally:
        wb.close()
    settle(alice.server.base)
    page = bob.api.all_history(cid)
    assert [m["id"] for m in page] == [keep["id"], gone["id"], last["id"]]  # the slot keeps its place
    assert page[1] == {"id": gone["id"], "chat_id": cid, "sender_id": alice.id, "created_at": gone["created_at"],
                       "deleted": True}
    assert bob.api.chat_summary(cid)["unread"] == 3  # unread counts do not move
    # a deleted message is not there to edit or react to; deleting it again is done already
    r = alice.api.request("PATCH", f"/chats/{cid}/messages/{gone['id']}", json_body={"content": "back"})
    assert_error(r, 404, "not_found")
    assert_error(bob.api.put(f"/chats/{cid}/messages/{gone['id']}/reactions/{enc(THUMB)}"), 404, "not_found")
    assert alice.api.delete(f"/chats/{cid}/messages/{gone['id']}").status_code == 204
    # only its sender deletes
    assert_error(bob.api.delete(f"/chats/{cid}/messages/{keep['id']}"), 403, "forbidden")
    assert_error(carol.api.delete(f"/chats/{cid}/messages/{keep['id']}"), 403, "forbidden")
    assert_error(alice.api.delete(f"/chats/{cid}/messages/4242"), 404, "not_found")
    settle(alice.server.base)
    assert history(alice, cid)[keep["id"]]["content"] == "kept"


def test_delete_last_message_in_chat_list(trio):
    alice, bob, carol, cid = trio
    m = alice.api.post_message(cid, "only one")
    assert alice.api.delete(f"/chats/{cid}/messages/{m['id']}").status_code == 204
    settle(alice.server.base)
    last = bob.api.chat_summary(cid)["last_message"]
    assert last == {"id": m["id"], "chat_id": cid, "sender_id": alice.id, "created_at": m["created_at"],
                    "deleted": True}


# ---------------------------------------------------------------- reactions


def test_reactions(trio):
    alice, bob, carol, cid = trio
    m = alice.api.post_message(cid, "react to me")
    base = f"/chats/{cid}/messages/{m['id']}/reactions"
    wa = alice.ws()
    try:
        assert bob.api.put(f"{base}/{enc(THUMB)}").status_code == 204
        push = ws_event(wa, "reaction")
        assert push == {"type": "reaction", "chat_id": cid, "message_id": m["id"], "emoji": THUMB,
                        "user_id": bob.id, "op": "add", "event_id": push["event_id"]}, push
        assert bob.api.put(f"{base}/{enc(THUMB)}").status_code == 204  # idempotent: no second reaction
        assert alice.api.put(f"{base}/{enc(THUMB)}").status_code == 204
        assert alice.api.put(f"{base}/{enc(HEART)}").status_code == 204
        assert alice.api.put(f"{base}/{enc(FAMILY)}").status_code == 204
        adds = [ws_event(wa, "reaction", lambda f: f["user_id"] == alice.id) for _ in range(3)]
        assert [(f["user_id"], f["emoji"]) for f in adds] == [(alice.id, THUMB), (alice.id, HEART),
                                                               (alice.id, FAMILY)]
        if not KAFKA:  # on Kafka the store may lag the broker: a repeated PUT is logged (and pushed) again
            ws_quiet(wa, lambda f: f.get("type") == "reaction", wait=0.5)
        settle(alice.server.base)
        got = history(bob, cid)[m["id"]]["reactions"]
        by = {r["emoji"]: r for r in got}
        assert by[THUMB]["count"] == 2 and by[HEART]["count"] == 1 and by[FAMILY]["count"] == 1, got
        assert by[THUMB]["user_ids"] == [bob.id, alice.id], "the viewer's own id comes first"
        assert history(alice, cid)[m["id"]]["reactions"][[r["emoji"] for r in got].index(THUMB)]["user_ids"] == \
            [alice.id, bob.id]
        assert [r["emoji"] for r in got] == sorted([THUMB, HEART, FAMILY], key=lambda e: e.encode())

        assert bob.api.delete(f"{base}/{enc(THUMB)}").status_code == 204
        push = ws_event(wa, "reaction", lambda f: f["op"] == "remove")
        assert push["user_id"] == bob.id and push["emoji"] == THUMB
        assert bob.api.delete(f"{base}/{enc(THUMB)}").status_code == 204  # gone already: still 204
        settle(alice.server.base)
        by = {r["emoji"]: r for r in history(bob, cid)[m["id"]]["reactions"]}
        assert by[THUMB] == {"emoji": THUMB, "count": 1, "user_ids": [alice.id]}
    finally:
        wa.close()


@pytest.mark.parametrize("segment", ["abc", "%F0%9F%91", "%ZZ", "%20", "a%20b", "%F0%9F%91%8D%20", "%00",
                                     "%E2%80%8D", enc(THUMB * 9), "%E2%80%8B", "%EF%BB%BF", "%E2%80%AE",
                                     enc(THUMB) + "%E2%80%AE", "%CC%81", "%EF%BF%BF"])
def test_reaction_bad_emoji(trio, segment):
    alice, bob, carol, cid = trio
    m = alice.api.post_message(cid, "x")
    assert_error(bob.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{segment}"), 400, "invalid_request")
    assert_error(bob.api.delete(f"/chats/{cid}/messages/{m['id']}/reactions/{segment}"), 400, "invalid_request")
    settle(alice.server.base)
    assert "reactions" not in history(bob, cid)[m["id"]]


def test_reaction_errors(trio):
    alice, bob, carol, cid = trio
    m = alice.api.post_message(cid, "x")
    assert_error(carol.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{enc(THUMB)}"), 403, "forbidden")
    assert_error(bob.api.put(f"/chats/{cid}/messages/777/reactions/{enc(THUMB)}"), 404, "not_found")
    assert_error(bob.api.put(f"/chats/1234567/messages/{m['id']}/reactions/{enc(THUMB)}"), 404, "not_found")
    assert_error(bob.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{enc(THUMB)}", token="x"), 401,
                 "unauthorized")
    # at most 20 different reactions of one user on one message
    for i in range(20):
        assert bob.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{enc(chr(0x1F600 + i))}").status_code == 204
    assert_error(bob.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{enc(THUMB)}"), 400, "invalid_request")
    settle(alice.server.base)
    assert len(history(alice, cid)[m["id"]]["reactions"]) == 20


# ---------------------------------------------------------------- the feed


def test_events_feed(trio):
    alice, bob, carol, cid = trio
    m1 = alice.api.post_message(cid, "one", client_id="f-1")
    m2 = alice.api.post_message(cid, "two")
    start = alice.api.get(f"/chats/{cid}/events", params={"after": "0"}).json()
    assert start == {"events": [], "has_more": False}
    assert alice.api.request("PATCH", f"/chats/{cid}/messages/{m1['id']}",
                             json_body={"content": "one!"}).status_code == 200
    assert bob.api.put(f"/chats/{cid}/messages/{m2['id']}/reactions/{enc(THUMB)}").status_code == 204
    assert alice.api.request("PATCH", f"/chats/{cid}/messages/{m2['id']}",
                             json_body={"content": "two!"}).status_code == 200
    assert bob.api.delete(f"/chats/{cid}/messages/{m2['id']}/reactions/{enc(THUMB)}").status_code == 204
    assert alice.api.delete(f"/chats/{cid}/messages/{m2['id']}").status_code == 204
    settle(alice.server.base)
    r = bob.api.get(f"/chats/{cid}/events", params={"after": "0"})
    assert r.status_code == 200, r.text
    feed = r.json()
    assert feed["has_more"] is False
    events = feed["events"]
    assert [e["type"] for e in events] == ["message_edited", "reaction", "message_edited", "reaction",
                                           "message_deleted"]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 5
    for e in events:
        assert e["chat_id"] == cid
        assert_time(e["created_at"])
    e0, e1, e2, e3, e4 = events
    assert e0["message_id"] == m1["id"] and e0["user_id"] == alice.id
    assert e0["message"]["content"] == "one!" and e0["message"]["client_id"] == "f-1"
    assert e1["emoji"] == THUMB and e1["op"] == "add" and e1["user_id"] == bob.id
    assert e3["op"] == "remove"
    # the edit of a message deleted since carries no words: only the slot
    assert e2["message"] == {"id": m2["id"], "chat_id": cid, "sender_id": alice.id, "created_at": m2["created_at"],
                             "deleted": True}
    assert e4["message_id"] == m2["id"] and "message" not in e4
    # paged like history
    p1 = bob.api.get(f"/chats/{cid}/events", params={"after": "0", "limit": "2"}).json()
    assert [e["id"] for e in p1["events"]] == [e0["id"], e1["id"]] and p1["has_more"] is True
    p2 = bob.api.get(f"/chats/{cid}/events", params={"after": e1["id"], "limit": "2"}).json()
    assert [e["id"] for e in p2["events"]] == [e2["id"], e3["id"]] and p2["has_more"] is True
    p3 = bob.api.get(f"/chats/{cid}/events", params={"after": e3["id"], "limit": "2"}).json()
    assert [e["id"] for e in p3["events"]] == [e4["id"]] and p3["has_more"] is False
    newest = bob.api.get(f"/chats/{cid}/events", params={"limit": "2"}).json()
    assert [e["id"] for e in newest["events"]] == [e3["id"], e4["id"]] and newest["has_more"] is True
    # errors
    assert_error(carol.api.get(f"/chats/{cid}/events"), 403, "forbidden")
    assert_error(bob.api.get("/chats/999999/events"), 404, "not_found")
    assert_error(bob.api.get(f"/chats/{cid}/events", params={"after": "x"}), 400, "invalid_request")
    assert_error(bob.api.get(f"/chats/{cid}/events", params={"limit": "0"}), 400, "invalid_request")
    assert_error(bob.api.get(f"/chats/{cid}/events", token="x"), 401, "unauthorized")


# ---------------------------------------------------------------- typing


def counter(server, name):
    for line in requests.get(server.base + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_typing(trio):
    alice, bob, carol, cid = trio
    dropped, delivered = (counter(alice.server, "natter_typing_dropped_total"),
                          counter(alice.server, "natter_ephemeral_delivered_total"))
    wa, wb, wc = alice.ws(), bob.ws(), carol.ws()
    try:
        time.sleep(0.2)
        ws_send(wa, {"type": "typing", "chat_id": cid})
        f = ws_event(wb, "typing")
        assert f == {"type": "typing", "chat_id": cid, "user_id": alice.id}
        # more within 2 s: dropped; never back to the typist
        for _ in range(5):
            ws_send(wa, {"type": "typing", "chat_id": cid})
        ws_quiet(wb, lambda f: f.get("type") == "typing", wait=1.0)
        ws_quiet(wa, lambda f: f.get("type") == "typing", wait=0.2)
        assert counter(alice.server, "natter_typing_dropped_total") >= dropped + 5
        assert counter(alice.server, "natter_ephemeral_delivered_total") >= delivered + 1
        # Bob types too: Alice sees him
        ws_send(wb, {"type": "typing", "chat_id": cid})
        assert ws_event(wa, "typing")["user_id"] == bob.id
        # after the window, Alice's next one gets through
        time.sleep(1.2)
        ws_send(wa, {"type": "typing", "chat_id": cid})
        assert ws_event(wb, "typing", timeout=5)["user_id"] == alice.id
        # not a member, not a chat id: an error frame, nothing pushed
        ws_send(wc, {"type": "typing", "chat_id": cid})
        err = ws_event(wc, "error")
        assert err["error"]["code"] == "forbidden", err
        unknown = str(int(cid) + 1)  # no chat has it: not_found, as over HTTP, twice (the second not from a cache)
        for _ in range(2):
            time.sleep(2.1)  # past the throttle of one frame per chat every 2 s
            ws_send(wc, {"type": "typing", "chat_id": unknown})
            err = ws_event(wc, "error")
            assert err["error"]["code"] == "not_found", err
        ws_send(wc, {"type": "typing", "chat_id": "nope"})
        assert ws_event(wc, "error")["error"]["code"] == "invalid_request"
        ws_send(wc, {"type": "typing"})
        assert ws_event(wc, "error")["error"]["code"] == "invalid_request"
        ws_quiet(wb, lambda f: f.get("type") == "typing", wait=0.5)
        # sends on the same socket still work
        ws_send(wa, {"type": "send", "chat_id": cid, "content": "typed", "client_id": "t-1"})
        assert ws_event(wa, "ack")["client_id"] == "t-1"
    finally:
        for w in (wa, wb, wc):
            w.close()


# ---------------------------------------------------------------- presence


def online_of(user, cid, who):
    members = user.api.get_chat(cid)["members"]
    return [m for m in members if m["id"] == who.id][0]["online"]


def wait_online(user, cid, who, want, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if online_of(user, cid, who) == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{who.username} not online={want} within {timeout} s")


def test_presence(trio):
    alice, bob, carol, cid = trio
    chat = alice.api.get_chat(cid)
    for m in chat["members"]:
        assert m["online"] is False and m["last_read_id"] is None, m
    wa = alice.ws()
    try:
        wait_online(bob, cid, alice, True)
        wb = bob.ws()
        f = ws_event(wa, "presence", lambda f: f["user_id"] == bob.id)
        assert f == {"type": "presence", "user_id": bob.id, "online": True}
        wait_online(alice, cid, bob, True)
        # a reload: closed and opened again within the grace, no flicker
        wb.close()
        time.sleep(0.5)
        wb = bob.ws()
        ws_quiet(wa, lambda f: f.get("type") == "presence", wait=6)
        assert online_of(alice, cid, bob) is True
        # gone for good: offline after the grace
        closed = time.monotonic()
        wb.close()
        f = ws_event(wa, "presence", lambda f: f["user_id"] == bob.id, timeout=20)
        assert f["online"] is False
        assert time.monotonic() - closed >= 4.5, "offline before the grace was over"
        assert online_of(alice, cid, bob) is False
        # Carol shares no chat with Bob: she is told nothing about him
        wc = carol.ws()
        wb = bob.ws()
        ws_event(wa, "presence", lambda f: f["user_id"] == bob.id and f["online"])
        ws_quiet(wc, lambda f: f.get("type") == "presence" and f["user_id"] == bob.id, wait=0.5)
        wb.close()
        wc.close()
    finally:
        wa.close()


# ---------------------------------------------------------------- read receipts


def test_read_receipts(trio):
    alice, bob, carol, cid = trio
    m1 = alice.api.post_message(cid, "one")
    m2 = alice.api.post_message(cid, "two")
    wa, wb, wc = alice.ws(), bob.ws(), carol.ws()
    try:
        assert bob.api.put(f"/chats/{cid}/read", {"message_id": m2["id"]}).status_code == 204
        f = ws_event(wa, "read")
        assert f == {"type": "read", "chat_id": cid, "user_id": bob.id, "message_id": m2["id"]}
        # the reader's own sockets too: another tab's unread count follows
        assert ws_event(wb, "read") == f
        ws_quiet(wc, lambda f: f.get("type") == "read", wait=0.5)  # not to who is not a member
        members = {m["id"]: m for m in alice.api.get_chat(cid)["members"]}
        assert members[bob.id]["last_read_id"] == m2["id"]
        assert members[alice.id]["last_read_id"] is None
        # the marker never moves back, whatever is sent; a marker that did not move is
        # answered alike and told to nobody (a loop of repeats pushed a frame to every member each)
        for mid in (m1["id"], m2["id"], m2["id"]):
            assert bob.api.put(f"/chats/{cid}/read", {"message_id": mid}).status_code == 204
        members = {m["id"]: m for m in alice.api.get_chat(cid)["members"]}
        assert members[bob.id]["last_read_id"] == m2["id"]
        ws_quiet(wa, lambda f: f.get("type") == "read", wait=0.5)
        m3 = alice.api.post_message(cid, "three")
        assert bob.api.put(f"/chats/{cid}/read", {"message_id": m3["id"]}).status_code == 204
        assert ws_event(wa, "read")["message_id"] == m3["id"]
    finally:
        wa.close()
        wb.close()
        wc.close()


def test_ws_frames_in_order_with_messages(trio):
    """A message, its edit, a reaction and its delete reach another member in that order."""
    alice, bob, carol, cid = trio
    wb = bob.ws()
    try:
        m = alice.api.post_message(cid, "short-lived")
        alice.api.request("PATCH", f"/chats/{cid}/messages/{m['id']}", json_body={"content": "edited"})
        bob.api.put(f"/chats/{cid}/messages/{m['id']}/reactions/{enc(THUMB)}")
        alice.api.delete(f"/chats/{cid}/messages/{m['id']}")
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 4 and time.monotonic() < deadline:
            f = ws_next_json(wb, timeout=max(0.01, deadline - time.monotonic()))
            if f and f.get("type") in ("message", "message_edited", "reaction", "message_deleted"):
                seen.append(f["type"])
        assert seen == ["message", "message_edited", "reaction", "message_deleted"], seen
    finally:
        wb.close()


@pytest.mark.skipif(bool(KAFKA or CQL), reason="the embedded log answers a change once the SQLite store has applied "
                    "it (Kafka answers at the broker's ack; Cassandra writes blind)")
def test_changes_overtaken_by_a_delete_are_refused_and_not_pushed(server_factory):
    """An edit, a reaction and a second delete checked while the delete
    before them is in the log but not stored (each store batch takes a
    second here): the store applies them without effect, so the edit and the
    reaction are answered 404 as if checked after the delete, the second
    delete 204, and none of them is pushed or listed."""
    srv = server_factory(env={"NATTER_FAULTS": "store.messages_insert:delay=1000"})
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    m = alice.api.post_message(cid, "soon gone")
    path = f"/chats/{cid}/messages/{m['id']}"
    wb = bob.ws(timeout=10)
    try:
        posted = metric(srv.base, "natter_messages_posted_total")
        with ThreadPoolExecutor(4) as ex:
            deleting = ex.submit(alice.api.delete, path)
            assert wait_for(lambda: metric(srv.base, "natter_messages_posted_total") > posted, timeout=10)
            editing = ex.submit(alice.api.request, "PATCH", path, json_body={"content": "too late"})
            reacting = ex.submit(bob.api.put, f"{path}/reactions/{enc(THUMB)}")
            deleting_again = ex.submit(alice.api.delete, path)
            assert deleting.result().status_code == 204
            assert_error(editing.result(), 404, "not_found")
            assert_error(reacting.result(), 404, "not_found")
            assert deleting_again.result().status_code == 204
        last = alice.api.post_message(cid, "sentinel")
        f, skipped = ws_wait(wb, lambda f: f.get("type") == "message" and f["message"]["id"] == last["id"],
                             timeout=10)
        assert [x["type"] for x in skipped] == ["message_deleted"], skipped
    finally:
        wb.close()
    events = alice.api.get(f"/chats/{cid}/events").json()["events"]
    assert [e["type"] for e in events] == ["message_deleted"], events
