"""One user with several WebSockets (browser tabs) gets every message on each."""

from conftest import WsReader, register


def test_two_tabs(server):
    alice = register(server, "alice")
    bob = register(server, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    t1, t2 = WsReader(bob.ws()), WsReader(bob.ws())
    t1.start()
    t2.start()
    try:
        sent = [alice.api.post_message(cid, f"tab-{i}")["id"] for i in range(30)]
        assert t1.wait_count(30, timeout=10), f"tab 1 got {len(t1.messages())}/30 (close={t1.close})"
        assert t2.wait_count(30, timeout=10), f"tab 2 got {len(t2.messages())}/30 (close={t2.close})"
        assert [m["id"] for m in t1.messages()] == sent
        assert [m["id"] for m in t2.messages()] == sent
        assert t1.messages() == t2.messages()

        # close tab 1; tab 2 keeps receiving
        t1.stop()
        t1.ws.close()
        more = [alice.api.post_message(cid, f"after-close-{i}")["id"] for i in range(5)]
        assert t2.wait_count(35, timeout=10), f"tab 2 got {len(t2.messages())}/35 (close={t2.close})"
        assert [m["id"] for m in t2.messages()] == sent + more
        assert t2.close is None and t2.error is None
    finally:
        t1.stop()
        t2.stop()
        t2.ws.close()


def test_tab_closed_abruptly(server):
    """A tab whose TCP connection just drops (no close frame) does not disturb the other."""
    alice = register(server, "alice")
    bob = register(server, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    t1, t2 = bob.ws(), WsReader(bob.ws())
    t2.start()
    try:
        t1.sock.close()  # no close handshake
        sent = [alice.api.post_message(cid, f"x-{i}")["id"] for i in range(10)]
        assert t2.wait_count(10, timeout=10)
        assert [m["id"] for m in t2.messages()] == sent
    finally:
        t2.stop()
        t2.ws.close()


def test_fan_out_many_members_concurrent_posters(server):
    """10 members each with a socket; 3 members post concurrently; everyone gets every message once,
    in id order, matching history."""
    import threading

    users = [register(server, f"fan{i}") for i in range(10)]
    cid = users[0].create_chat(members=users[1:])["id"]
    readers = [WsReader(u.ws(timeout=10)) for u in users]
    for r in readers:
        r.start()
    errors = []

    def post(u, k):
        try:
            for i in range(60):
                u.api.post_message(cid, f"{k}-{i}")
        except AssertionError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=post, args=(users[k], k)) for k in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        hist = [m["id"] for m in users[0].api.all_history(cid)]
        assert len(hist) == 180
        for u, r in zip(users, readers):
            assert r.wait_count(180, timeout=15), f"{u.username} got {len(r.messages())}/180 (close={r.close})"
            got = [m["id"] for m in r.messages()]
            assert got == hist, f"{u.username}: pushed ids differ from history (order, gaps or duplicates)"
    finally:
        for r in readers:
            r.stop()
            r.ws.close()
