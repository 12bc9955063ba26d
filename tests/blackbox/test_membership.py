"""Membership pushes: a chat's members and the user added or removed hear of it at once, on every
socket, as {"type":"membership"}; the other nodes drop their cached members of the chat then too
(the cross-node half is test_events_cluster.py's)."""

from conftest import Client, assert_error, register, ws_quiet, ws_wait


def membership(ws, chat_id, op, timeout=10):
    f, _ = ws_wait(ws, lambda f: f.get("type") == "membership" and f.get("chat_id") == chat_id and f.get("op") == op,
                   timeout, what=f"membership {op}")
    return f


def test_members_hear_of_a_chat_and_of_who_comes_and_goes(server):
    alice, bob, carol = register(server, "alice"), register(server, "bob"), register(server, "carol")
    wa, wb, wb2, wc = alice.ws(), bob.ws(), bob.ws(), carol.ws()
    try:
        cid = alice.create_chat(members=[bob])["id"]
        # a new chat: its members hear of it before any message, on every socket; others do not
        for ws in (wa, wb, wb2):
            assert membership(ws, cid, "created") == {"type": "membership", "chat_id": cid, "user_id": alice.id,
                                                       "by": alice.id, "op": "created"}
        ws_quiet(wc, lambda f: f.get("type") == "membership" and f.get("chat_id") == cid, wait=0.5)
        # carol is added by bob: she, alice and bob hear it
        assert bob.api.put(f"/chats/{cid}/members/{carol.username}").status_code == 204
        for ws in (wa, wb, wc):
            f = membership(ws, cid, "added")
            assert (f["user_id"], f["by"]) == (carol.id, bob.id), f
        # bob is removed by alice: he hears it on both his sockets (no longer a member), and so do the rest
        assert alice.api.delete(f"/chats/{cid}/members/{bob.username}").status_code == 204
        for ws in (wa, wb, wb2, wc):
            f = membership(ws, cid, "removed")
            assert (f["user_id"], f["by"]) == (bob.id, alice.id), f
        # after that, what happens in the chat no longer reaches him
        assert alice.api.put(f"/chats/{cid}/members/{bob.username}x").status_code == 404  # no such user: no push
        dave = register(server, "dave")
        assert alice.api.put(f"/chats/{cid}/members/{dave.username}").status_code == 204
        membership(wc, cid, "added")
        ws_quiet(wb, lambda f: f.get("type") == "membership", wait=0.5)
        ws_quiet(wb2, lambda f: f.get("type") == "membership", wait=0.2)
    finally:
        for ws in (wa, wb, wb2, wc):
            ws.close()


def test_adding_a_member_again_changes_nothing_and_tells_nobody(server):
    alice, bob = register(server, "alice"), register(server, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    wa = alice.ws()
    try:
        for _ in range(3):
            assert alice.api.put(f"/chats/{cid}/members/{bob.username}").status_code == 204
        # (the chat's "created" may still arrive: on Kafka it can come after the socket opened)
        ws_quiet(wa, lambda f: f.get("type") == "membership" and f.get("op") == "added", wait=0.5)
        assert [m["id"] for m in alice.api.get_chat(cid)["members"]].count(bob.id) == 1
    finally:
        wa.close()


def test_a_new_chat_lists_its_members_as_reading_it_does(server):
    users = [register(server, name) for name in ("zed", "amy", "mo")]
    created = users[0].create_chat(members=users[1:])
    listed = users[0].api.get_chat(created["id"])
    assert [m["username"] for m in created["members"]] == [m["username"] for m in listed["members"]]
    assert [m["username"] for m in listed["members"]] == sorted(m["username"] for m in listed["members"])


def test_a_former_member_is_named_by_id(server):
    alice, bob = register(server, "alice"), register(server, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    bob.api.post_message(cid, "before I go")
    assert alice.api.delete(f"/chats/{cid}/members/{bob.username}").status_code == 204
    sender = alice.api.history(cid)["messages"][-1]["sender_id"]
    assert sender not in [m["id"] for m in alice.api.get_chat(cid)["members"]]
    r = alice.api.get(f"/users/{sender}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": bob.id, "username": bob.username}
    assert alice.api.get("/users/1234567").status_code == 404
    assert alice.api.get("/users/abc").status_code == 404
    assert Client(server.base).get(f"/users/{sender}").status_code == 401


def test_a_chat_has_at_most_max_members(server_factory):
    """--max-members 3: a chat made with three others is refused (400), one with two is full;
    adding a fourth is 409 chat_full and changes nothing, adding a member again is still 204,
    and once one leaves there is room again."""
    srv = server_factory(args=["--max-members", "3"])
    alice, bob, carol, dave = (register(srv, n) for n in ("alice", "bob", "carol", "dave"))
    assert_error(alice.api.post("/chats", {"name": "four", "members": [bob.username, carol.username,
                                                                         dave.username]}),
                 400, "invalid_request")
    cid = alice.create_chat(members=[bob, carol])["id"]
    assert_error(bob.api.put(f"/chats/{cid}/members/{dave.username}"), 409, "chat_full")
    assert [m["id"] for m in alice.api.get_chat(cid)["members"]].count(dave.id) == 0
    assert bob.api.put(f"/chats/{cid}/members/{carol.username}").status_code == 204
    assert alice.api.delete(f"/chats/{cid}/members/{carol.username}").status_code == 204
    assert bob.api.put(f"/chats/{cid}/members/{dave.username}").status_code == 204
    assert dave.id in [m["id"] for m in alice.api.get_chat(cid)["members"]]
