"""Per-user token bucket on message posts (HTTP and WebSocket). The rate is
1 a second with a burst of 5, so 20 posts one after another meet the limit
unless they take 15 s or more: not this machine's speed."""

import time

import pytest

from conftest import assert_error, register, ws_send, ws_wait


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from conftest import Server

    srv = Server(tmp_path_factory.mktemp("natter-rl"), args=["--rate-limit", "1", "--rate-burst", "5"])
    srv.start()  # the later --rate-limit wins over the fixture's default --rate-limit 0
    yield srv
    srv.check_stop()


def test_rate_limited_posts(limited):
    alice = register(limited, "alice")
    bob = register(limited, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    accepted, rejected = {}, []
    t0 = time.monotonic()
    for i in range(20):
        r = alice.api.post(f"/chats/{cid}/messages", {"content": f"rl-{i}"})
        if r.status_code == 202:
            accepted[r.json()["id"]] = f"rl-{i}"
            continue
        assert_error(r, 429, "rate_limited")
        ra = r.headers.get("Retry-After")
        assert ra is not None, "429 without Retry-After"
        assert ra.strip().isdigit() and int(ra) >= 1, f"Retry-After {ra!r}"
        rejected.append(f"rl-{i}")
    elapsed = time.monotonic() - t0
    assert rejected, f"20 posts at --rate-limit 1 --rate-burst 5 were all accepted in {elapsed:.2f} s"
    # the burst of 5, plus what refilled at 1/s while posting
    assert 5 <= len(accepted) <= 5 + int(elapsed) + 1, f"{len(accepted)} accepted in {elapsed:.2f} s"
    hist = alice.api.all_history(cid)
    assert {m["id"]: m["content"] for m in hist} == accepted
    assert not set(rejected) & {m["content"] for m in hist}

    # the limit is per user: bob is not affected by alice's burst
    r = bob.api.post(f"/chats/{cid}/messages", {"content": "bob is fine"})
    assert r.status_code == 202, r.text

    # after waiting Retry-After, alice may post again
    time.sleep(1.2)
    r = alice.api.post(f"/chats/{cid}/messages", {"content": "after the wait"})
    assert r.status_code == 202, r.text


def test_rate_limited_ws_sends(limited):
    alice = register(limited, "alice")
    cid = alice.create_chat()["id"]
    ws = alice.ws()
    t0 = time.monotonic()
    try:
        for i in range(20):
            ws_send(ws, {"type": "send", "chat_id": cid, "content": f"ws-{i}", "client_id": f"c{i}"})
        acks, errors = {}, {}
        while len(acks) + len(errors) < 20:
            f, _ = ws_wait(ws, lambda f: f.get("type") in ("ack", "error"), timeout=5, what="ack/error")
            if f["type"] == "ack":
                acks[f["client_id"]] = f["id"]
            else:
                assert f["error"]["code"] == "rate_limited", f
                assert isinstance(f.get("retry_after"), int) and f["retry_after"] >= 1, f  # HTTP's Retry-After
                errors[f["client_id"]] = f
    finally:
        ws.close()
    elapsed = time.monotonic() - t0
    assert errors, f"20 WebSocket sends at --rate-limit 1 were all acked in {elapsed:.2f} s"
    assert 5 <= len(acks) <= 5 + int(elapsed) + 1, f"{len(acks)} acked in {elapsed:.2f} s"
    hist = alice.api.all_history(cid)
    assert sorted(m["id"] for m in hist) == sorted(acks.values())
    assert {m["content"] for m in hist} == {f"ws-{c[1:]}" for c in acks}


def test_rate_limited_writes(server_factory):
    """WebSocket tickets, chats made and member changes each cost the store a write: a user has
    --rate-limit-writes of them a minute (here 1, so the next comes a minute later: not this
    machine's speed). Past it 429 with Retry-After, and nothing is made; another user's budget is
    their own."""
    srv = server_factory(args=["--rate-limit-writes", "1"])
    alice, bob, carol, dave = (register(srv, n) for n in ("alice", "bob", "carol", "dave"))
    cid = alice.create_chat(members=[carol])["id"]
    r = alice.api.post("/chats", {"name": "one more", "members": []})
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    assert [c["id"] for c in alice.api.get("/chats").json()["chats"]] == [cid]

    assert bob.api.post("/ws/tickets", {}).status_code == 201
    assert_error(bob.api.post("/ws/tickets", {}), 429, "rate_limited")

    assert carol.api.put(f"/chats/{cid}/members/{bob.username}").status_code == 204
    assert_error(carol.api.put(f"/chats/{cid}/members/{dave.username}"), 429, "rate_limited")
    assert_error(carol.api.delete(f"/chats/{cid}/members/{bob.username}"), 429, "rate_limited")
    members = {m["username"] for m in alice.api.get_chat(cid)["members"]}
    assert members == {alice.username, bob.username, carol.username}
    # posts have a limit of their own
    assert carol.api.post(f"/chats/{cid}/messages", {"content": "still posting"}).status_code == 202


def test_rate_limited_reads(server_factory):
    """Each read is a store query on a worker, and the workers are everyone's: a user has
    --rate-limit-reads a second, with a burst of four seconds' worth (here 1 and 4). Past it every
    read route answers 429 with Retry-After. Fifty tries of a route without one would be fifty
    seconds of refills, so the check does not lean on this machine's speed. Another user's budget
    is their own, and posting is not a read."""
    srv = server_factory(args=["--rate-limit-reads", "1"])
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob.username])["id"]
    routes = ["/me", f"/users/{bob.id}", "/chats", f"/chats/{cid}", f"/chats/{cid}/messages",
              f"/chats/{cid}/events"]
    for path in routes:
        for _ in range(50):
            r = alice.api.get(path)
            if r.status_code != 200:
                break
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1, path
    assert alice.api.post(f"/chats/{cid}/messages", {"content": "reads are limited, posts are not"}).status_code == 202
    assert bob.api.get("/me").status_code == 200
