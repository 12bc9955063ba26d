"""Logins and registrations under abuse: limited per client address and per
username from that address (429 with Retry-After), hashed on a bounded pool of their own so a
flood of them does not hold up message posts, and an unknown user answered
exactly as a wrong password is."""

import http.client
import json
import threading
import time

import pytest
import requests

from conftest import PASSWORD, Client, assert_error, register, uniq


def login(base, username, password, timeout=60, session=None):
    return (session or requests).post(f"{base}/sessions", json={"username": username, "password": password},
                                      timeout=timeout)


def test_logins_limited_per_address(server_factory):
    srv = server_factory(args=["--auth-rate-ip", "5"])
    answers = [login(srv.base, uniq("nobody"), "wrong password") for _ in range(8)]
    statuses = [r.status_code for r in answers]
    assert statuses[:5] == [401] * 5, statuses
    assert set(statuses[5:]) == {429}, statuses
    r = answers[-1]
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    # registrations share the address's budget
    r = Client(srv.base).post("/users", {"username": uniq("reg"), "password": PASSWORD})
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1


def test_failed_logins_limited_per_username(server_factory):
    srv = server_factory(args=["--auth-rate-user", "3"])
    victim = register(srv, "victim")
    other = register(srv, "other")
    statuses = [login(srv.base, victim.username, "not the password").status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429], statuses  # its registration took the third attempt
    r = login(srv.base, victim.username, PASSWORD)
    assert_error(r, 429, "rate_limited")  # the name is held back a while; its sessions still work
    assert Client(srv.base, victim.token).get("/me").status_code == 200
    # successful logins give their attempt back: another user logs in as often as they like
    for _ in range(5):
        assert login(srv.base, other.username, PASSWORD).status_code == 201


def test_one_address_cannot_lock_a_user_out_from_another(server_factory):
    """The username's attempts are counted per client address: failures from
    one address (an attacker guessing) hold the name back there only."""
    srv = server_factory(args=["--auth-rate-user", "3"])
    victim = register(srv, "victim")
    statuses = [login(srv.base, victim.username, "not the password").status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429], statuses
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60, source_address=("127.0.0.2", 0))
    try:
        conn.request("POST", "/sessions", body=json.dumps({"username": victim.username, "password": PASSWORD}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 201, (r.status, r.read())
    finally:
        conn.close()


def test_a_refused_registration_takes_no_attempt(server_factory):
    """A registration refused for its password's length is answered 400
    before the username's attempts are counted: a client that retries with
    a short password is told why, and the name can still be registered."""
    srv = server_factory(args=["--auth-rate-user", "3"])
    name = uniq("short")
    for _ in range(5):
        r = requests.post(f"{srv.base}/users", json={"username": name, "password": "short"}, timeout=60)
        assert_error(r, 400, "invalid_request")
    r = requests.post(f"{srv.base}/users", json={"username": name, "password": PASSWORD}, timeout=60)
    assert r.status_code == 201, r.text


def test_unknown_user_and_wrong_password_answer_alike(server):
    user = register(server, "known")
    wrong = login(server.base, user.username, "not the password")
    unknown = login(server.base, uniq("ghost"), "not the password")
    for r in (wrong, unknown):
        assert_error(r, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()
    assert {k: v for k, v in wrong.headers.items() if k.lower() not in ("date", "content-length")} == \
           {k: v for k, v in unknown.headers.items() if k.lower() not in ("date", "content-length")}


def test_login_flood_does_not_hold_up_posts(server_factory):
    """A flood of wrong-password logins from 16 connections, on one hashing
    thread with a short queue and a dear hash, while a poster whose every
    post misses the session cache (so each needs an API worker) posts 20
    messages. Every login is answered 401 or 503 busy, none hangs; every
    post is accepted while the flood still overflows the hashing pool: the
    posts do not wait for the hashes."""
    srv = server_factory(args=["--auth-workers", "1", "--auth-queue", "4", "--auth-rate-ip", "0",
                               "--argon2-memory", "65536", "--argon2-passes", "3", "--session-cache-ttl", "0"])
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    answered, lock, stop = [], threading.Lock(), threading.Event()

    def busy():
        with lock:
            return answered.count(503)

    def flooder(k):
        s = requests.Session()
        i = 0
        while not stop.is_set():
            r = login(srv.base, f"flood{k}_{i % 5}", "wrong password", session=s)
            with lock:
                answered.append(r.status_code)
            i += 1

    threads = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while busy() == 0 and time.monotonic() < deadline:  # the pool is full
        time.sleep(0.01)
    assert busy() > 0, "the hashing pool never filled: the test proves nothing"
    h = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
    statuses = []
    for i in range(20):
        r = requests.post(f"{srv.base}/chats/{cid}/messages", headers=h, timeout=60,
                          data=json.dumps({"content": f"during the flood {i}"}))
        statuses.append(r.status_code)
    busy_when_posted = busy()
    deadline = time.monotonic() + 60
    while busy() == busy_when_posted and time.monotonic() < deadline:
        time.sleep(0.01)
    still_overflowing = busy() > busy_when_posted
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a login of the flood was never answered"
    assert statuses == [202] * 20, statuses
    assert still_overflowing, "the flood had stopped overflowing the pool before the posts were done"
    assert set(answered) <= {401, 503}, sorted(set(answered))
    assert alice.api.post_message(cid, "after the flood")["id"]
