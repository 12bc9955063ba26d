"""A WebSocket ends with the session it was opened with: a logout closes
the sockets opened with that session, by ticket or by token, with 4001
"session ended" (from any node: tests/blackbox/test_events_cluster.py);
the same user's sockets of other sessions go on. The logout's record is
ephemeral; when it is lost, each node's --ws-session-check finds the
session gone from the store and ends its sockets the same way."""

import pytest
import websocket

from conftest import Client, login, metric, open_ws, register, ws_closed, ws_wait_message


def ticket_socket(server, token):
    r = Client(server.base, token).post("/ws/tickets")
    assert r.status_code == 201, r.text
    return websocket.create_connection(f"{server.ws_base}/ws?ticket={r.json()['ticket']}", timeout=5)


def logout_ends_its_sockets(server, alice, bob, cid, ended, stays, timeout=10):
    """alice's sockets `ended` (of the session alice.token) and `stays` (of another session) each get
    bob's message; after alice logs out, `ended` close with 4001 "session ended" and `stays` still
    gets pushes. Every socket is closed at the end."""
    try:
        m = bob.api.post_message(cid, "before the logout")
        for ws in ended + [stays]:
            ws_wait_message(ws, m["id"])
        assert Client(server.base, alice.token).delete("/sessions").status_code == 204
        for ws in ended:
            assert ws_closed(ws, timeout=timeout) == (4001, "session ended")
        m = bob.api.post_message(cid, "after the logout")
        ws_wait_message(stays, m["id"])  # the other session's socket still gets pushes
    finally:
        for ws in ended + [stays]:
            ws.close()


def test_logout_closes_that_sessions_sockets_only(server, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    cid = alice.create_chat(members=[bob.username])["id"]
    other = login(server, alice.username)  # a second session, another device
    closed_before = metric(server.base, "natter_websockets_session_closed_total")
    by_ticket = ticket_socket(server, alice.token)
    by_token = open_ws(server, alice.token, via="header")
    logout_ends_its_sockets(server, alice, bob, cid, [by_ticket, by_token], open_ws(server, other))
    assert metric(server.base, "natter_websockets_session_closed_total") == closed_before + 2


def test_a_ticket_ends_with_its_session(server, make_user):
    alice = make_user("alice")
    r = Client(server.base, alice.token).post("/ws/tickets")
    assert r.status_code == 201, r.text
    assert Client(server.base, alice.token).delete("/sessions").status_code == 204
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"{server.ws_base}/ws?ticket={r.json()['ticket']}", timeout=5)
    assert e.value.status_code == 401


def test_a_lost_logout_record_still_ends_its_sockets(server_factory):
    # every ephemeral record is lost here: the logout's never reaches the loops
    srv = server_factory(args=["--ws-session-check", "1"], env={"NATTER_FAULTS": "log.publish:rc=unavail"})
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob.username])["id"]
    other = login(srv, alice.username)
    ended = [open_ws(srv, alice.token), ticket_socket(srv, alice.token)]
    logout_ends_its_sockets(srv, alice, bob, cid, ended, open_ws(srv, other), timeout=20)
