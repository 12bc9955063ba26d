"""Every error case of docs/api-decisions.md: exact status, error body, and no side effect."""

import json

import pytest
import requests
import websocket

from conftest import (
    MAX_BODY,
    PASSWORD,
    Client,
    assert_error,
    register,
    uniq,
    ws_send,
    ws_wait,
)


# ---------------------------------------------------------------- helpers


def user_exists(server, username, password=PASSWORD):
    """True when `username` can log in with `password`; False on 401 invalid_credentials."""
    r = Client(server.base).post("/sessions", {"username": username, "password": password})
    if r.status_code == 201:
        return True
    assert_error(r, 401, "invalid_credentials")
    return False


def assert_not_registered(server, username):
    """Nobody holds `username`: it cannot log in, and registering it now succeeds."""
    assert not user_exists(server, username)
    r = Client(server.base).post("/users", {"username": username, "password": PASSWORD})
    assert r.status_code == 201, f"{username} was taken after a rejected request: {r.status_code} {r.text}"


def raw(server, method, path, data, token=None, ctype="application/json"):
    h = {"Content-Type": ctype}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return requests.request(method, server.base + path, data=data, headers=h, timeout=10)


@pytest.fixture(scope="module")
def world(server):
    """alice and bob share a chat holding one message from alice; carol is an outsider."""
    alice = register(server, "alice")
    bob = register(server, "bob")
    carol = register(server, "carol")
    chat = alice.create_chat(name="errors", members=[bob])
    mid = alice.api.post_message(chat["id"], "first")["id"]
    other_chat = carol.create_chat(name="carols")
    other_mid = carol.api.post_message(other_chat["id"], "carol's")["id"]
    return dict(alice=alice, bob=bob, carol=carol, cid=chat["id"], mid=mid,
                other_cid=other_chat["id"], other_mid=other_mid)


def history_ids(user, cid):
    return [m["id"] for m in user.api.all_history(cid)]


def member_names(user, cid):
    return sorted(m["username"] for m in user.api.get_chat(cid)["members"])


def chat_ids(user):
    return sorted(c["id"] for c in user.api.chats())


# ---------------------------------------------------------------- bad bodies on POST /users


BAD_JSON_BODIES = [
    pytest.param(b'{"username": "x", "password": ', id="truncated"),
    pytest.param(b"{username: 'x'}", id="not-json"),
    pytest.param(b'{"username":"NAME","password":"correct horse"} trailing', id="trailing-garbage"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"a string"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"true", id="bool"),
    pytest.param(b'{"username":"NAME\xff\xfe","password":"correct horse"}', id="invalid-utf8"),
    pytest.param(b'{"username":"NAME","password":"correct \xc3\x28horse"}', id="invalid-utf8-seq"),
    pytest.param(b'{"username":"NAME","password":"correct horse\xed\xa0\x80"}', id="utf8-surrogate"),
    pytest.param(b'{"username":"NAME","password":"correct horse\xc0\xaf"}', id="overlong-utf8"),
]


@pytest.mark.parametrize("body", BAD_JSON_BODIES)
def test_users_invalid_json(server, body):
    name = uniq("bj")
    r = raw(server, "POST", "/users", body.replace(b"NAME", name.encode()))
    assert_error(r, 400, "invalid_json")
    assert_not_registered(server, name)


BAD_FIELDS = [
    pytest.param({}, id="empty-object"),
    pytest.param({"username": "NAME"}, id="no-password"),
    pytest.param({"password": PASSWORD}, id="no-username"),
    pytest.param({"username": 123, "password": PASSWORD}, id="username-number"),
    pytest.param({"username": None, "password": PASSWORD}, id="username-null"),
    pytest.param({"username": ["NAME"], "password": PASSWORD}, id="username-array"),
    pytest.param({"username": "NAME", "password": 12345678}, id="password-number"),
    pytest.param({"username": "NAME", "password": None}, id="password-null"),
    pytest.param({"username": "NAME", "password": {"p": PASSWORD}}, id="password-object"),
    pytest.param({"username": "", "password": PASSWORD}, id="username-empty"),
    pytest.param({"username": "NAME" + "x" * 33, "password": PASSWORD}, id="username-too-long"),
    pytest.param({"username": "NAME with space", "password": PASSWORD}, id="username-space"),
    pytest.param({"username": "NAME/slash", "password": PASSWORD}, id="username-slash"),
    pytest.param({"username": "NAME@at", "password": PASSWORD}, id="username-at"),
    pytest.param({"username": "NAMEé", "password": PASSWORD}, id="username-non-ascii"),
    pytest.param({"username": "NAME\n", "password": PASSWORD}, id="username-newline"),
    pytest.param({"username": ".", "password": PASSWORD}, id="username-dot"),
    pytest.param({"username": "..", "password": PASSWORD}, id="username-dot-dot"),
    pytest.param({"username": "NAME", "password": "1234567"}, id="password-7-bytes"),
    pytest.param({"username": "NAME", "password": ""}, id="password-empty"),
    pytest.param({"username": "NAME", "password": "p" * 257}, id="password-257-bytes"),
    pytest.param({"username": "NAME", "password": "é" * 129}, id="password-258-bytes-129-chars"),
]


@pytest.mark.parametrize("body", BAD_FIELDS)
def test_users_invalid_request(server, body):
    name = uniq("bf")[:20]
    body = {k: (v.replace("NAME", name) if isinstance(v, str) else v) for k, v in body.items()}
    r = Client(server.base).post("/users", body)
    assert_error(r, 400, "invalid_request")
    assert_not_registered(server, name)


@pytest.mark.parametrize("username", [
    pytest.param("A.b-C_9", id="all-classes"),
    pytest.param("32", id="32-chars"),
])
def test_users_username_accepted(server, username):
    username = (uniq(username) + "z" * 32)[:32] if username == "32" else uniq(username)
    r = Client(server.base).post("/users", {"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["username"] == username
    assert user_exists(server, username)


@pytest.mark.parametrize("password", [
    pytest.param("p" * 8, id="8-bytes"),
    pytest.param("p" * 256, id="256-bytes"),
    pytest.param("é" * 4, id="8-bytes-4-chars"),
    pytest.param("é" * 128, id="256-bytes-128-chars"),
])
def test_users_password_accepted(server, password):
    name = uniq("pw")
    r = Client(server.base).post("/users", {"username": name, "password": password})
    assert r.status_code == 201, r.text
    assert user_exists(server, name, password)


def test_single_char_username(server):
    # a 1-char username may already exist from an earlier run of the same server; only check the rule
    for ch in "Zq7":
        r = Client(server.base).post("/users", {"username": ch, "password": PASSWORD})
        assert r.status_code in (201, 409), r.text
        if r.status_code == 201:
            assert r.json()["username"] == ch
            return
    pytest.fail("could not register any 1-char username")


def test_username_case_sensitive(server):
    base = uniq("case")
    r1 = Client(server.base).post("/users", {"username": base.lower(), "password": PASSWORD})
    r2 = Client(server.base).post("/users", {"username": base.upper(), "password": "another password"})
    assert r1.status_code == 201 and r2.status_code == 201, (r1.text, r2.text)
    assert r1.json()["id"] != r2.json()["id"]
    assert user_exists(server, base.upper(), "another password")
    assert not user_exists(server, base.lower(), "another password")


def test_unknown_fields_ignored(server):
    name = uniq("uf")
    r = Client(server.base).post("/users", {"username": name, "password": PASSWORD, "admin": True, "x": [1, {}]})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id", "username"}


def test_username_taken(server):
    name = uniq("dup")
    c = Client(server.base)
    r = c.post("/users", {"username": name, "password": PASSWORD})
    assert r.status_code == 201
    uid = r.json()["id"]
    r = c.post("/users", {"username": name, "password": "a different password"})
    assert_error(r, 409, "username_taken")
    # the original account is untouched
    assert user_exists(server, name, PASSWORD)
    assert not user_exists(server, name, "a different password")
    tok = c.post("/sessions", {"username": name, "password": PASSWORD}).json()
    assert tok["user_id"] == uid


def test_body_too_large(server):
    name = uniq("big")
    body = json.dumps({"username": name, "password": PASSWORD, "pad": "x" * (MAX_BODY + 100)}).encode()
    assert len(body) > MAX_BODY
    r = raw(server, "POST", "/users", body)
    assert_error(r, 413, "payload_too_large")
    assert_not_registered(server, name)


def test_body_far_over_limit(server):
    """Past 1 MiB h2o refuses the body before reading it (documented in
    api-decisions.md): still 413 and nothing created, but h2o's plain text."""
    name = uniq("huge")
    body = json.dumps({"username": name, "password": PASSWORD, "pad": "x" * (1024 * 1024 + 10)}).encode()
    r = raw(server, "POST", "/users", body)
    assert r.status_code == 413, r.text
    assert_not_registered(server, name)


def _chunks(data, n=1000):
    for i in range(0, len(data), n):
        yield data[i:i + n]


def test_chunked_bodies(server):
    name = uniq("chunk")
    r = raw(server, "POST", "/users", _chunks(json.dumps({"username": name, "password": PASSWORD}).encode()))
    assert r.status_code == 201, r.text
    big = uniq("chunkbig")
    r = raw(server, "POST", "/users",
            _chunks(json.dumps({"username": big, "password": PASSWORD, "pad": "x" * (MAX_BODY + 600)}).encode()))
    assert_error(r, 413, "payload_too_large")
    assert_not_registered(server, big)


def test_concurrent_registration_one_winner(server):
    import threading

    name = uniq("race")
    results = []

    def reg(i):
        r = Client(server.base).post("/users", {"username": name, "password": f"password-{i}"})
        results.append((r.status_code, i, r))

    threads = [threading.Thread(target=reg, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for st, i, _ in results if st == 201]
    assert len(winners) == 1, sorted(st for st, _, _ in results)
    for st, _, r in results:
        if st != 201:
            assert_error(r, 409, "username_taken")
    assert user_exists(server, name, f"password-{winners[0]}")


def test_body_exactly_max_accepted(server):
    name = uniq("max")
    body = {"username": name, "password": PASSWORD, "pad": ""}
    n = len(json.dumps(body).encode())
    body["pad"] = "x" * (MAX_BODY - n)
    data = json.dumps(body).encode()
    assert len(data) == MAX_BODY
    r = raw(server, "POST", "/users", data)
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------- sessions


def test_login_wrong_password(server):
    u = register(server, "lw")
    r = Client(server.base).post("/sessions", {"username": u.username, "password": PASSWORD + "x"})
    assert_error(r, 401, "invalid_credentials")


def test_login_unknown_user(server):
    r = Client(server.base).post("/sessions", {"username": uniq("nobody"), "password": PASSWORD})
    assert_error(r, 401, "invalid_credentials")


def test_login_bad_bodies(server):
    c = Client(server.base)
    assert_error(raw(server, "POST", "/sessions", b"{nope"), 400, "invalid_json")
    assert_error(raw(server, "POST", "/sessions", b"[1]"), 400, "invalid_json")
    assert_error(raw(server, "POST", "/sessions", b'{"username":"a\xff","password":"12345678"}'), 400,
                 "invalid_json")
    assert_error(c.post("/sessions", {"username": "x"}), 400, "invalid_request")
    assert_error(c.post("/sessions", {"username": 5, "password": PASSWORD}), 400, "invalid_request")


# ---------------------------------------------------------------- 401


def protected_calls(w):
    cid, mid = w["cid"], w["mid"]
    return [
        ("GET", "/me", None),
        ("DELETE", "/sessions", None),
        ("GET", "/chats", None),
        ("POST", "/chats", {"name": "x", "members": []}),
        ("GET", f"/chats/{cid}", None),
        ("PUT", f"/chats/{cid}/members/{w['carol'].username}", None),
        ("DELETE", f"/chats/{cid}/members/{w['bob'].username}", None),
        ("POST", f"/chats/{cid}/messages", {"content": "sneaky"}),
        ("GET", f"/chats/{cid}/messages", None),
        ("PUT", f"/chats/{cid}/read", {"message_id": mid}),
    ]


def _snapshot(w):
    a = w["alice"]
    return (history_ids(a, w["cid"]), member_names(a, w["cid"]), chat_ids(a), a.api.chat_summary(w["cid"]),
            w["bob"].api.chat_summary(w["cid"]))


@pytest.mark.parametrize("auth", ["missing", "garbage", "empty-bearer", "wrong-scheme", "token-in-query",
                                  "logged-out"])
def test_unauthorized_everywhere(server, world, auth):
    before = _snapshot(world)
    if auth == "logged-out":
        tok = Client(server.base).post("/sessions", {"username": world["alice"].username,
                                                     "password": PASSWORD}).json()["token"]
        assert Client(server.base, tok).delete("/sessions").status_code == 204
    for method, path, body in protected_calls(world):
        h = {}
        params = None
        if auth == "garbage":
            h["Authorization"] = "Bearer " + "A" * 43
        elif auth == "empty-bearer":
            h["Authorization"] = "Bearer "
        elif auth == "wrong-scheme":
            h["Authorization"] = "Basic " + world["alice"].token
        elif auth == "token-in-query":
            params = {"token": world["alice"].token}  # only /ws accepts ?token=
        elif auth == "logged-out":
            h["Authorization"] = "Bearer " + tok
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            h["Content-Type"] = "application/json"
        r = requests.request(method, server.base + path, data=data, headers=h, params=params, timeout=10)
        assert_error(r, 401, "unauthorized")
    assert _snapshot(world) == before
    # alice's own session still works
    assert world["alice"].api.get("/me").status_code == 200


def test_ws_unauthorized(server):
    gone = register(server, "gone")
    assert gone.api.delete("/sessions").status_code == 204
    for url in ("/ws", "/ws?token=", "/ws?token=" + "B" * 43, "/ws?token=" + gone.token):
        r = requests.get(server.base + url, headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, timeout=10)
        assert_error(r, 401, "unauthorized")
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(server.ws_base + "/ws?token=nope", timeout=5)
    assert ei.value.status_code == 401


# ---------------------------------------------------------------- 403


def test_forbidden_every_chat_route(server, world):
    carol, cid, mid = world["carol"], world["cid"], world["mid"]
    before = _snapshot(world)
    carol_chats = chat_ids(carol)
    carol_summary = carol.api.chat_summary(world["other_cid"])
    calls = [
        ("GET", f"/chats/{cid}", None),
        ("PUT", f"/chats/{cid}/members/{carol.username}", None),
        ("PUT", f"/chats/{cid}/members/{world['alice'].username}", None),
        ("DELETE", f"/chats/{cid}/members/{world['bob'].username}", None),
        ("DELETE", f"/chats/{cid}/members/{carol.username}", None),
        ("POST", f"/chats/{cid}/messages", {"content": "let me in"}),
        ("GET", f"/chats/{cid}/messages", None),
        ("GET", f"/chats/{cid}/messages?after=0&limit=5", None),
        ("PUT", f"/chats/{cid}/read", {"message_id": mid}),
    ]
    for method, path, body in calls:
        r = carol.api.request(method, path, json_body=body)
        assert_error(r, 403, "forbidden")
    assert _snapshot(world) == before
    assert chat_ids(carol) == carol_chats
    assert carol.api.chat_summary(world["other_cid"]) == carol_summary


def test_ws_send_forbidden(server, world):
    carol, cid = world["carol"], world["cid"]
    before = history_ids(world["alice"], cid)
    ws = carol.ws()
    try:
        ws_send(ws, {"type": "send", "chat_id": cid, "content": "ws sneaky", "client_id": "f1"})
        f, _ = ws_wait(ws, lambda f: f.get("type") in ("error", "ack"), timeout=5)
        assert f["type"] == "error", f
        assert f.get("client_id") == "f1", f
        assert f["error"]["code"] == "forbidden", f
        assert isinstance(f["error"]["message"], str) and f["error"]["message"]
    finally:
        ws.close()
    assert history_ids(world["alice"], cid) == before


@pytest.mark.parametrize("frame,code", [
    pytest.param("{not json", "invalid_json", id="malformed"),
    pytest.param('["send"]', "invalid_json", id="not-object"),
    pytest.param({"type": "send", "chat_id": "CID", "client_id": "e1"}, "invalid_request", id="no-content"),
    pytest.param({"type": "send", "chat_id": "CID", "content": 5, "client_id": "e1"}, "invalid_request",
                 id="content-number"),
    pytest.param({"type": "send", "chat_id": "CID", "content": "   ", "client_id": "e1"}, "invalid_request",
                 id="content-blank"),
    pytest.param({"type": "send", "chat_id": "CID", "content": "\u2003\u00a0", "client_id": "e1"}, "invalid_request",
                 id="content-unicode-blank"),
    pytest.param({"type": "send", "chat_id": "CID", "content": "a" * 4001, "client_id": "e1"}, "content_too_long",
                 id="content-4001"),
    pytest.param({"type": "send", "chat_id": "999999999", "content": "x", "client_id": "e1"}, "not_found",
                 id="unknown-chat"),
    # its ack names a send by its client_id: a send without one could not be told apart
    pytest.param({"type": "send", "chat_id": "CID", "content": "x"}, "invalid_request", id="no-client-id"),
    pytest.param({"type": "send", "chat_id": "CID", "content": "x", "client_id": ""}, "invalid_request",
                 id="empty-client-id"),
])
def test_ws_send_errors(server, world, frame, code):
    alice, cid = world["alice"], world["cid"]
    before = history_ids(alice, cid)
    ws = alice.ws()
    try:
        if isinstance(frame, dict):
            frame = json.dumps({k: (cid if v == "CID" else v) for k, v in frame.items()})
        ws.send(frame)
        f, _ = ws_wait(ws, lambda f: f.get("type") in ("error", "ack"), timeout=5)
        assert f["type"] == "error", f
        assert f["error"]["code"] == code, f
        if code not in ("invalid_json",) and '"e1"' in frame:
            assert f.get("client_id") == "e1", f
        # the socket stays usable after an error (a client_id of its own: a repeated one is the same message)
        ok = uniq("ok")
        ws_send(ws, {"type": "send", "chat_id": cid, "content": "still fine", "client_id": ok})
        ack, _ = ws_wait(ws, lambda f: f.get("type") == "ack", timeout=5)
        assert ack["client_id"] == ok
    finally:
        ws.close()
    after = history_ids(alice, cid)
    assert after[:-1] == before and len(after) == len(before) + 1


# ---------------------------------------------------------------- 404


def test_unknown_chat(server, world):
    alice = world["alice"]
    before = _snapshot(world)
    unknown = "999999999"
    for method, path, body in [
        ("GET", f"/chats/{unknown}", None),
        ("PUT", f"/chats/{unknown}/members/{world['bob'].username}", None),
        ("DELETE", f"/chats/{unknown}/members/{world['bob'].username}", None),
        ("POST", f"/chats/{unknown}/messages", {"content": "into the void"}),
        ("GET", f"/chats/{unknown}/messages", None),
        ("PUT", f"/chats/{unknown}/read", {"message_id": world["mid"]}),
    ]:
        assert_error(alice.api.request(method, path, json_body=body), 404, "not_found")
    assert _snapshot(world) == before


@pytest.mark.parametrize("path", ["/index.html", "/static", "/nope", "/users/1", "/chats/1/nope", "/chats/1/members", "/me/x",
                                  "/chatsx", "/v1/users"])
def test_unknown_route(server, world, path):
    r = world["alice"].api.get(path)
    assert_error(r, 404, "not_found")


def test_create_chat_unknown_member(server, world):
    alice = world["alice"]
    before = chat_ids(alice)
    r = alice.api.post("/chats", {"name": "ghosts", "members": [world["bob"].username, uniq("ghost")]})
    assert_error(r, 404, "not_found")
    assert chat_ids(alice) == before
    assert all(c["name"] != "ghosts" for c in world["bob"].api.chats())


def test_add_unknown_member(server, world):
    alice, cid = world["alice"], world["cid"]
    before = member_names(alice, cid)
    assert_error(alice.api.put(f"/chats/{cid}/members/{uniq('ghost')}"), 404, "not_found")
    assert_error(alice.api.delete(f"/chats/{cid}/members/{uniq('ghost')}"), 404, "not_found")
    # carol exists but is not a member -> DELETE is 404
    assert_error(alice.api.delete(f"/chats/{cid}/members/{world['carol'].username}"), 404, "not_found")
    assert member_names(alice, cid) == before


def test_read_unknown_message(server, world):
    bob, cid = world["bob"], world["cid"]
    before = bob.api.chat_summary(cid)["unread"]
    assert before >= 1
    for mid in ("999999999999", world["other_mid"], "0"):
        assert_error(bob.api.put(f"/chats/{cid}/read", {"message_id": mid}), 404, "not_found")
    assert bob.api.chat_summary(cid)["unread"] == before


def test_read_bad_bodies(server, world):
    bob, cid = world["bob"], world["cid"]
    before = bob.api.chat_summary(cid)["unread"]
    assert_error(raw(server, "PUT", f"/chats/{cid}/read", b"{", bob.token), 400, "invalid_json")
    assert_error(raw(server, "PUT", f"/chats/{cid}/read", b"[]", bob.token), 400, "invalid_json")
    assert_error(bob.api.put(f"/chats/{cid}/read", {}), 400, "invalid_request")
    assert_error(bob.api.put(f"/chats/{cid}/read", {"message_id": None}), 400, "invalid_request")
    assert_error(bob.api.put(f"/chats/{cid}/read", {"message_id": int(world["mid"])}), 400, "invalid_request")
    assert_error(bob.api.put(f"/chats/{cid}/read", {"message_id": "12ab"}), 400, "invalid_request")
    assert bob.api.chat_summary(cid)["unread"] == before


# ---------------------------------------------------------------- 405


@pytest.mark.parametrize("method,path,allow", [
    ("DELETE", "/me", {"GET"}),
    ("POST", "/me", {"GET"}),
    ("GET", "/users", {"POST"}),
    ("DELETE", "/users", {"POST"}),
    ("GET", "/sessions", {"POST", "DELETE"}),
    ("PUT", "/sessions", {"POST", "DELETE"}),
    ("DELETE", "/chats", {"GET", "POST"}),
    ("PATCH", "/chats", {"GET", "POST"}),
    ("DELETE", "/chats/CID", {"GET"}),
    ("PUT", "/chats/CID", {"GET"}),
    ("GET", "/chats/CID/members/BOB", {"PUT", "DELETE"}),
    ("POST", "/chats/CID/members/BOB", {"PUT", "DELETE"}),
    ("DELETE", "/chats/CID/messages", {"GET", "POST"}),
    ("GET", "/chats/CID/read", {"PUT"}),
    ("POST", "/chats/CID/read", {"PUT"}),
    ("POST", "/healthz", {"GET"}),
    ("POST", "/readyz", {"GET"}),
    ("DELETE", "/metrics", {"GET"}),
    ("POST", "/ws", {"GET"}),
])
def test_method_not_allowed(server, world, method, path, allow):
    path = path.replace("CID", world["cid"]).replace("BOB", world["bob"].username)
    before = _snapshot(world)
    r = world["alice"].api.request(method, path, data=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    assert_error(r, 405, "method_not_allowed")
    got = {m.strip().upper() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    got.discard("HEAD")
    got.discard("OPTIONS")
    assert got == allow, f"Allow: {r.headers.get('Allow')!r}"
    assert _snapshot(world) == before


# ---------------------------------------------------------------- chats


@pytest.mark.parametrize("body,code", [
    pytest.param(b"{", "invalid_json", id="malformed"),
    pytest.param(b'"chat"', "invalid_json", id="string"),
    pytest.param(b'{"name":"caf\xe9","members":[]}', "invalid_json", id="latin1"),
    pytest.param({}, "invalid_request", id="no-name"),
    pytest.param({"name": "", "members": []}, "invalid_request", id="name-empty"),
    pytest.param({"name": " \t\n ", "members": []}, "invalid_request", id="name-blank"),
    pytest.param({"name": "\u00a0\u2003\u3000", "members": []}, "invalid_request", id="name-unicode-blank"),
    pytest.param({"name": "n" * 101, "members": []}, "invalid_request", id="name-101"),
    pytest.param({"name": 7, "members": []}, "invalid_request", id="name-number"),
    pytest.param({"name": "ok", "members": "BOB"}, "invalid_request", id="members-string"),
    pytest.param({"name": "ok", "members": [1]}, "invalid_request", id="members-number"),
    pytest.param({"name": "ok", "members": [None]}, "invalid_request", id="members-null"),
])
def test_create_chat_invalid(server, world, body, code):
    alice = world["alice"]
    before = chat_ids(alice)
    bob_before = chat_ids(world["bob"])
    if isinstance(body, dict):
        body = json.dumps({k: (world["bob"].username if v == "BOB" else v) for k, v in body.items()}).encode()
    r = raw(server, "POST", "/chats", body, alice.token)
    assert_error(r, 400, code)
    assert chat_ids(alice) == before
    assert chat_ids(world["bob"]) == bob_before


def test_create_chat_limits_accepted(server, world):
    alice, bob = world["alice"], world["bob"]
    r = alice.api.post("/chats", {"name": "é" * 100, "members": [bob.username, bob.username, alice.username]})
    assert r.status_code == 201, r.text
    chat = r.json()
    assert chat["name"] == "é" * 100
    assert sorted(m["username"] for m in chat["members"]) == sorted([alice.username, bob.username])
    r = alice.api.post("/chats", {"name": "solo", "members": []})
    assert r.status_code == 201, r.text
    assert [m["username"] for m in r.json()["members"]] == [alice.username]


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize("body,status,code", [
    pytest.param(b'{"content":', 400, "invalid_json", id="malformed"),
    pytest.param(b'{"content":"bad \xff utf8"}', 400, "invalid_json", id="invalid-utf8"),
    pytest.param(b'{"content":"bad \xf0\x9f\x98"}', 400, "invalid_json", id="truncated-utf8"),
    pytest.param(b"[]", 400, "invalid_json", id="array"),
    pytest.param(b"null", 400, "invalid_json", id="null"),
    pytest.param({}, 400, "invalid_request", id="no-content"),
    pytest.param({"content": ""}, 400, "invalid_request", id="content-empty"),
    pytest.param({"content": " \n\t "}, 400, "invalid_request", id="content-blank"),
    pytest.param({"content": "\u00a0\u3000\ufeff"}, 400, "invalid_request", id="content-unicode-blank"),
    pytest.param({"content": 42}, 400, "invalid_request", id="content-number"),
    pytest.param({"content": None}, 400, "invalid_request", id="content-null"),
    pytest.param({"content": ["x"]}, 400, "invalid_request", id="content-array"),
    pytest.param({"content": "ok", "client_id": ""}, 400, "invalid_request", id="client-id-empty"),
    pytest.param({"content": "ok", "client_id": "c" * 65}, 400, "invalid_request", id="client-id-65"),
    pytest.param({"content": "ok", "client_id": "\u00e9" * 33}, 400, "invalid_request", id="client-id-66-bytes"),
    pytest.param({"content": "ok", "client_id": 5}, 400, "invalid_request", id="client-id-number"),
    pytest.param({"content": "a" * 4001}, 400, "content_too_long", id="content-4001"),
    pytest.param({"content": "é" * 4001}, 400, "content_too_long", id="content-4001-2byte"),
    pytest.param({"content": "x", "pad": "p" * MAX_BODY}, 413, "payload_too_large", id="body-over-max"),
])
def test_post_message_invalid(server, world, body, status, code):
    alice, cid = world["alice"], world["cid"]
    before = history_ids(alice, cid)
    summary = world["bob"].api.chat_summary(cid)
    if isinstance(body, dict):
        body = json.dumps(body, ensure_ascii=False).encode()
    r = raw(server, "POST", f"/chats/{cid}/messages", body, alice.token)
    assert_error(r, status, code)
    assert history_ids(alice, cid) == before
    assert world["bob"].api.chat_summary(cid) == summary


@pytest.mark.parametrize("content", [
    pytest.param("a" * 4000, id="4000-ascii"),
    pytest.param("é" * 4000, id="4000-2byte"),
    pytest.param("€" * 4000, id="4000-3byte"),
    pytest.param("😀" * 4000, id="4000-4byte"),
    pytest.param("x", id="1-char"),
    pytest.param("  padded\n", id="whitespace-kept"),
    pytest.param('quote " backslash \\ nul-free \u0001 tab\t', id="escapes"),
])
def test_post_message_limits_accepted(server, world, content):
    alice, cid = world["alice"], world["cid"]
    r = raw(server, "POST", f"/chats/{cid}/messages", json.dumps({"content": content}, ensure_ascii=False).encode(),
            alice.token)
    assert r.status_code == 202, r.text[:300]
    mid = r.json()["id"]
    page = alice.api.history(cid, limit=1)
    assert page["messages"][-1]["id"] == mid
    assert page["messages"][-1]["content"] == content


def test_post_message_body_exactly_max(server, world):
    alice, cid = world["alice"], world["cid"]
    body = {"content": "exact", "pad": ""}
    body["pad"] = "p" * (MAX_BODY - len(json.dumps(body).encode()))
    data = json.dumps(body).encode()
    assert len(data) == MAX_BODY
    r = raw(server, "POST", f"/chats/{cid}/messages", data, alice.token)
    assert r.status_code == 202, r.text


def test_the_longest_message_escaped_fits(server, world):
    """4,000 characters sent as \\uXXXX escapes, as many JSON encoders write anything past ASCII (an
    emoji is a pair of them, 12 bytes): ~48 KiB of JSON, within the default --max-body."""
    alice, cid = world["alice"], world["cid"]
    data = json.dumps({"content": "\U0001F600" * 4000}).encode()  # ensure_ascii: every emoji escaped
    assert len(data) > 48000
    r = raw(server, "POST", f"/chats/{cid}/messages", data, alice.token)
    assert r.status_code == 202, r.text


def test_escaped_json_content(server, world):
    alice, cid = world["alice"], world["cid"]
    # \u escapes, including a surrogate pair, decode to the same characters
    r = raw(server, "POST", f"/chats/{cid}/messages", b'{"content":"caf\\u00e9 \\ud83d\\ude00"}', alice.token)
    assert r.status_code == 202, r.text
    assert alice.api.history(cid, limit=1)["messages"][-1]["content"] == "café 😀"


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=201", "limit=-1", "limit=1.5",
                                   "after=abc", "before=xyz", "after=-5", "before=0",
                                   "after=9223372036854775808", "after=18446744073709551615",
                                   "before=18446744073709551615", "after=18446744073709551616"])
def test_history_bad_query(server, world, query):
    for what in ("messages", "events"):
        r = world["alice"].api.get(f"/chats/{world['cid']}/{what}?{query}")
        assert_error(r, 400, "invalid_request")
        # the message names what was wrong: a count, or an id of what is listed
        message = r.json()["error"]["message"]
        assert query.split("=")[0] in message, message
        if query.startswith("limit"):
            assert "1-200" in message, message
        else:
            assert f"{what[:-1]} id" in message, message


@pytest.mark.parametrize("query", ["limit=1", "limit=200"])
def test_history_limit_bounds_ok(server, world, query):
    r = world["alice"].api.get(f"/chats/{world['cid']}/messages?{query}")
    assert r.status_code == 200, r.text
    assert len(r.json()["messages"]) >= 1


def test_a_post_the_log_refuses_says_when_to_retry(server_factory):
    # the message log refuses an append (its queue full, its broker away):
    # 503 with Retry-After, as a full worker queue answers
    srv = server_factory(env={"NATTER_FAULTS": "log.append:nth=1,count=1,rc=unavail"})
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    r = alice.api.post(f"/chats/{cid}/messages", {"content": "refused"})
    assert_error(r, 503, "unavailable")
    assert r.headers.get("Retry-After") == "1", r.headers
    r = alice.api.post(f"/chats/{cid}/messages", {"content": "taken"})
    assert r.status_code == 202, r.text
    assert "Retry-After" not in r.headers
