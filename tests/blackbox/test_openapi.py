"""docs/openapi.yaml is valid and describes what a live server answers on every route."""

import json
import os

import pytest
import referencing
import referencing.jsonschema
import requests
import websocket
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec

from conftest import MAX_BODY, PASSWORD, REPO, register, settle, uniq, wait_for, ws_send, ws_wait

SPEC_PATH = os.path.join(REPO, "docs", "openapi.yaml")
SPEC_URI = "urn:natter-openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

with open(SPEC_PATH) as f:
    SPEC = yaml.safe_load(f)
REGISTRY = referencing.Registry().with_resource(
    SPEC_URI, referencing.Resource(contents=SPEC, specification=referencing.jsonschema.DRAFT4))

# (path template, method) -> set of statuses seen
COVERAGE = {}


def _rewrite_refs(node):
    if isinstance(node, dict):
        return {k: (SPEC_URI + v if k == "$ref" and v.startswith("#") else _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _deref(node):
    while isinstance(node, dict) and "$ref" in node:
        ptr = node["$ref"]
        assert ptr.startswith("#/"), ptr
        node = SPEC
        for part in ptr[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def schema_errors(schema, instance):
    v = OAS30Validator(_rewrite_refs(schema), registry=REGISTRY, format_checker=oas30_format_checker)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(instance)]


def component_errors(name, instance):
    return schema_errors({"$ref": f"#/components/schemas/{name}"}, instance)


def check_response(template, method, r):
    """Assert the response is documented for template+method and matches its schema; record coverage."""
    method = method.lower()
    assert template in SPEC["paths"], f"{template} not in the spec"
    op = SPEC["paths"][template].get(method)
    assert op is not None, f"{method.upper()} {template} not in the spec"
    status = str(r.status_code)
    responses = op["responses"]
    assert status in responses, (f"{method.upper()} {template} answered {status}, which the spec does not "
                                 f"document ({sorted(responses)}): {r.text[:300]}")
    COVERAGE.setdefault((template, method), set()).add(status)
    return check_against(_deref(responses[status]), r, f"{method.upper()} {template} {status}")


def check_against(resp, r, what):
    """Check headers and body of r against one OpenAPI response object."""
    status = str(r.status_code)
    for hname, h in resp.get("headers", {}).items():
        h = _deref(h)
        val = r.headers.get(hname)
        if h.get("required"):
            assert val is not None, f"{status} lacks header {hname}"
        if val is not None:
            sch = _deref(h["schema"])
            inst = int(val) if sch.get("type") == "integer" and val.strip().isdigit() else val
            errs = schema_errors(h["schema"], inst)
            assert not errs, f"header {hname}: {val!r}: {errs}"
    content = resp.get("content")
    if not content:
        assert r.content == b"", f"{status} should have no body, got {r.content[:200]!r}"
        return None
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    assert ctype in content, f"{what}: Content-Type {ctype!r} not in {list(content)}"
    schema = content[ctype].get("schema", {})
    if ctype == "application/json":
        body = r.json()
    else:
        body = r.text
    errs = schema_errors(schema, body)
    assert not errs, f"{what} body does not match the spec: {errs}\n{body}"
    return body


class SpecClient:
    """Calls a route by its template and checks the answer against the spec."""

    def __init__(self, server, token=None):
        self.server = server
        self.token = token
        self.s = requests.Session()

    def call(self, method, template, path_params=None, body=None, data=None, params=None, token=None,
             headers=None, expect=None):
        path = template
        for k, v in (path_params or {}).items():
            path = path.replace("{" + k + "}", str(v))
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        r = self.s.request(method, self.server.base + path, data=data, params=params, headers=h, timeout=10)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: expected {expect}, got {r.status_code} {r.text[:300]}"
        return check_response(template, method, r), r


def test_spec_is_valid():
    validate_spec(SPEC)
    assert SPEC["openapi"] == "3.0.3"
    assert "bearerAuth" in SPEC["components"]["securitySchemes"]
    assert SPEC["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert _deref(SPEC["components"]["schemas"]["Id"])["pattern"] == "^[0-9]+$"
    # every error answer shares the one Error schema; 429 documents Retry-After
    for template, item in SPEC["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            for status, resp in item[method]["responses"].items():
                if int(status) >= 400:
                    resp = _deref(resp)
                    assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
                        (template, method, status)
                if status == "429":
                    assert "Retry-After" in _deref(resp)["headers"]


def test_routes_match_spec(server):
    anon = SpecClient(server)
    # users
    alice_name, bob_name, carol_name = uniq("alice"), uniq("bob"), uniq("carol")
    user, _ = anon.call("POST", "/users", body={"username": alice_name, "password": PASSWORD}, expect=201)
    anon.call("POST", "/users", body={"username": bob_name, "password": PASSWORD}, expect=201)
    anon.call("POST", "/users", body={"username": carol_name, "password": PASSWORD}, expect=201)
    anon.call("POST", "/users", body={"username": alice_name, "password": PASSWORD}, expect=409)
    anon.call("POST", "/users", data=b"{oops", expect=400)
    anon.call("POST", "/users", body={"username": "bad name", "password": PASSWORD}, expect=400)
    anon.call("POST", "/users", body={"username": uniq("big"), "password": PASSWORD, "pad": "x" * (MAX_BODY + 600)},
              expect=413)
    # sessions
    sess, _ = anon.call("POST", "/sessions", body={"username": alice_name, "password": PASSWORD}, expect=201)
    assert sess["user_id"] == user["id"]
    anon.call("POST", "/sessions", body={"username": alice_name, "password": "wrong password"}, expect=401)
    anon.call("POST", "/sessions", body={"username": alice_name}, expect=400)
    bob_tok = anon.call("POST", "/sessions", body={"username": bob_name, "password": PASSWORD}, expect=201)[0]["token"]
    carol_tok = anon.call("POST", "/sessions", body={"username": carol_name, "password": PASSWORD},
                          expect=201)[0]["token"]
    alice = SpecClient(server, sess["token"])
    bob = SpecClient(server, bob_tok)
    carol = SpecClient(server, carol_tok)
    # me
    alice.call("GET", "/me", expect=200)
    anon.call("GET", "/me", expect=401)
    # users, by id
    alice.call("GET", "/users/{user_id}", {"user_id": sess["user_id"]}, expect=200)
    alice.call("GET", "/users/{user_id}", {"user_id": "1"}, expect=404)
    anon.call("GET", "/users/{user_id}", {"user_id": sess["user_id"]}, expect=401)
    # chats
    chat, _ = alice.call("POST", "/chats", body={"name": "spec", "members": [bob_name]}, expect=201)
    cid = chat["id"]
    alice.call("POST", "/chats", body={"name": "", "members": []}, expect=400)
    alice.call("POST", "/chats", body={"name": "x", "members": [uniq("ghost")]}, expect=404)
    anon.call("POST", "/chats", body={"name": "x", "members": []}, expect=401)
    listed, _ = alice.call("GET", "/chats", expect=200)
    assert any(c["id"] == cid and c["last_message"] is None for c in listed["chats"])
    anon.call("GET", "/chats", expect=401)
    alice.call("GET", "/chats/{chat_id}", {"chat_id": cid}, expect=200)
    carol.call("GET", "/chats/{chat_id}", {"chat_id": cid}, expect=403)
    alice.call("GET", "/chats/{chat_id}", {"chat_id": "999999999"}, expect=404)
    anon.call("GET", "/chats/{chat_id}", {"chat_id": cid}, expect=401)
    # members
    p = {"chat_id": cid, "username": carol_name}
    carol.call("PUT", "/chats/{chat_id}/members/{username}", p, expect=403)
    alice.call("PUT", "/chats/{chat_id}/members/{username}", p, expect=204)
    alice.call("PUT", "/chats/{chat_id}/members/{username}", {"chat_id": cid, "username": uniq("ghost")}, expect=404)
    alice.call("DELETE", "/chats/{chat_id}/members/{username}", p, expect=204)
    alice.call("DELETE", "/chats/{chat_id}/members/{username}", p, expect=404)
    carol.call("DELETE", "/chats/{chat_id}/members/{username}", {"chat_id": cid, "username": bob_name}, expect=403)
    anon.call("DELETE", "/chats/{chat_id}/members/{username}", p, expect=401)
    # messages
    m1, _ = alice.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid}, body={"content": "hi"}, expect=202)
    m2, _ = alice.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid},
                       body={"content": "hi again", "client_id": "spec-1"}, expect=202)
    assert m2["client_id"] == "spec-1"
    alice.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid}, body={"content": "a" * 4001}, expect=400)
    alice.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid}, data=b'{"content":"\xff"}', expect=400)
    alice.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid},
               body={"content": "x", "pad": "p" * (MAX_BODY + 600)}, expect=413)
    carol.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid}, body={"content": "no"}, expect=403)
    alice.call("POST", "/chats/{chat_id}/messages", {"chat_id": "999999999"}, body={"content": "no"}, expect=404)
    anon.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid}, body={"content": "no"}, expect=401)
    # on Kafka a 202 is the broker's: the node's history has the message once its fan-out
    # read it, a moment later (bounded poll)
    want = [m1["id"], m2["id"]]

    def history_ids():
        page, _ = bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, expect=200)
        return [m["id"] for m in page["messages"]]

    assert wait_for(lambda: history_ids() == want, timeout=10), history_ids()
    bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, params={"after": "0", "limit": "1"}, expect=200)
    bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, params={"before": m2["id"]}, expect=200)
    bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, params={"limit": "0"}, expect=400)
    carol.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, expect=403)
    bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": "999999999"}, expect=404)
    anon.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, expect=401)
    settle(server.base)  # both stored: the list's count does not fall between the store and the tail
    listed, _ = bob.call("GET", "/chats", expect=200)
    mine = [c for c in listed["chats"] if c["id"] == cid][0]
    assert mine["unread"] == 2 and mine["last_message"]["id"] == m2["id"]
    # edits, reactions, deletes and the events feed
    msg, react = "/chats/{chat_id}/messages/{message_id}", "/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"
    p1, p2, ghost = ({"chat_id": cid, "message_id": m1["id"]}, {"chat_id": cid, "message_id": m2["id"]},
                     {"chat_id": cid, "message_id": "999999"})
    settle(server.base)
    edited, _ = alice.call("PATCH", msg, p1, body={"content": "hi, edited"}, expect=200)
    assert edited["content"] == "hi, edited" and edited["id"] == m1["id"]
    bob.call("PATCH", msg, p1, body={"content": "not mine"}, expect=403)
    alice.call("PATCH", msg, p1, body={"content": " "}, expect=400)
    alice.call("PATCH", msg, p1, body={"content": "x", "pad": "p" * (MAX_BODY + 600)}, expect=413)
    alice.call("PATCH", msg, ghost, body={"content": "x"}, expect=404)
    anon.call("PATCH", msg, p1, body={"content": "x"}, expect=401)
    thumb = dict(p1, emoji="%F0%9F%91%8D")
    bob.call("PUT", react, thumb, expect=204)
    bob.call("PUT", react, dict(p1, emoji="abc"), expect=400)
    carol.call("PUT", react, thumb, expect=403)
    bob.call("PUT", react, dict(ghost, emoji="%F0%9F%91%8D"), expect=404)
    anon.call("PUT", react, thumb, expect=401)
    settle(server.base)
    page, _ = bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, expect=200)
    assert page["messages"][0]["reactions"][0]["count"] == 1 and page["messages"][0]["edited_at"]
    bob.call("DELETE", react, thumb, expect=204)
    bob.call("DELETE", react, dict(p1, emoji="%ZZ"), expect=400)
    carol.call("DELETE", react, thumb, expect=403)
    bob.call("DELETE", react, dict(ghost, emoji="%F0%9F%91%8D"), expect=404)
    anon.call("DELETE", react, thumb, expect=401)
    bob.call("DELETE", msg, p2, expect=403)
    alice.call("DELETE", msg, p2, expect=204)
    alice.call("DELETE", msg, ghost, expect=404)
    carol.call("DELETE", msg, p2, expect=403)
    anon.call("DELETE", msg, p2, expect=401)
    settle(server.base)
    page, _ = bob.call("GET", "/chats/{chat_id}/messages", {"chat_id": cid}, expect=200)
    assert page["messages"][1] == {"id": m2["id"], "chat_id": cid, "sender_id": m2["sender_id"],
                                   "created_at": m2["created_at"], "deleted": True}
    listed, _ = bob.call("GET", "/chats", expect=200)
    assert [c for c in listed["chats"] if c["id"] == cid][0]["last_message"]["deleted"] is True
    feed, _ = bob.call("GET", "/chats/{chat_id}/events", {"chat_id": cid}, params={"after": "0"}, expect=200)
    assert [e["type"] for e in feed["events"]] == ["message_edited", "reaction", "reaction", "message_deleted"]
    bob.call("GET", "/chats/{chat_id}/events", {"chat_id": cid}, params={"limit": "1"}, expect=200)
    bob.call("GET", "/chats/{chat_id}/events", {"chat_id": cid}, params={"limit": "0"}, expect=400)
    carol.call("GET", "/chats/{chat_id}/events", {"chat_id": cid}, expect=403)
    bob.call("GET", "/chats/{chat_id}/events", {"chat_id": "999999999"}, expect=404)
    anon.call("GET", "/chats/{chat_id}/events", {"chat_id": cid}, expect=401)
    # read marker
    bob.call("PUT", "/chats/{chat_id}/read", {"chat_id": cid}, body={"message_id": m2["id"]}, expect=204)
    bob.call("PUT", "/chats/{chat_id}/read", {"chat_id": cid}, body={"message_id": "999999999999"}, expect=404)
    bob.call("PUT", "/chats/{chat_id}/read", {"chat_id": cid}, body={}, expect=400)
    carol.call("PUT", "/chats/{chat_id}/read", {"chat_id": cid}, body={"message_id": m2["id"]}, expect=403)
    anon.call("PUT", "/chats/{chat_id}/read", {"chat_id": cid}, body={"message_id": m2["id"]}, expect=401)
    # the web client
    _, r = anon.call("GET", "/", expect=200)
    anon.call("GET", "/", headers={"If-None-Match": r.headers["ETag"]}, expect=304)
    _, r = anon.call("GET", "/dashboard", expect=200)
    anon.call("GET", "/dashboard", headers={"If-None-Match": r.headers["ETag"]}, expect=304)
    _, r = anon.call("GET", "/static/{file}", {"file": "app.js"}, expect=200)
    anon.call("GET", "/static/{file}", {"file": "app.js"}, headers={"If-None-Match": r.headers["ETag"]}, expect=304)
    anon.call("GET", "/static/{file}", {"file": "no-such-file.js"}, expect=404)
    # operations
    anon.call("GET", "/healthz", expect=200)
    anon.call("GET", "/readyz", expect=200)
    body, _ = anon.call("GET", "/metrics", expect=200)
    assert "natter_messages_posted_total" in body
    # websocket: 401 as plain HTTP, 101 on upgrade
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    anon.call("GET", "/ws", headers=upgrade, params={"token": "nope"}, expect=401)
    ws = websocket.create_connection(f"{server.ws_base}/ws?token={bob_tok}", timeout=5)
    assert ws.getstatus() == 101
    COVERAGE.setdefault(("/ws", "get"), set()).add("101")
    ws.close()
    # a ticket instead of the token in the URL, once
    ticket, _ = bob.call("POST", "/ws/tickets", expect=201)
    anon.call("POST", "/ws/tickets", expect=401)
    ws = websocket.create_connection(f"{server.ws_base}/ws?ticket={ticket['ticket']}", timeout=5)
    assert ws.getstatus() == 101
    ws.close()
    anon.call("GET", "/ws", headers=upgrade, params={"ticket": ticket["ticket"]}, expect=401)
    # wrong method and unknown route: the shared responses
    for method, path in (("DELETE", "/me"), ("GET", "/users"), ("POST", f"/chats/{cid}")):
        r = requests.request(method, server.base + path, headers={"Authorization": f"Bearer {sess['token']}"},
                             timeout=10)
        assert r.status_code == 405, (method, path, r.status_code)
        check_against(_deref(SPEC["components"]["responses"]["MethodNotAllowed"]), r, f"{method} {path}")
    r = requests.get(server.base + "/no/such/route", timeout=10)
    assert r.status_code == 404
    check_against(_deref(SPEC["components"]["responses"]["NotFound"]), r, "GET /no/such/route")
    # logout last
    alice.call("DELETE", "/sessions", expect=204)
    alice.call("DELETE", "/sessions", expect=401)


def test_ws_frames_match_spec(server):
    alice = register(server, "alice")
    bob = register(server, "bob")
    outsider = register(server, "carol")
    cid = alice.create_chat(members=[bob])["id"]
    wa, wb, wc = alice.ws(), bob.ws(), outsider.ws()
    try:
        frame = {"type": "send", "chat_id": cid, "content": "spec frame", "client_id": "wf-1"}
        assert not component_errors("WsSend", frame)
        ws_send(wa, frame)
        ack, _ = ws_wait(wa, lambda f: f.get("type") == "ack", what="ack")
        assert not component_errors("WsAck", ack), component_errors("WsAck", ack)
        push, _ = ws_wait(wb, lambda f: f.get("type") == "message", what="push")
        assert not component_errors("WsMessageEvent", push), component_errors("WsMessageEvent", push)
        assert push["message"]["id"] == ack["id"]
        ws_send(wc, dict(frame, client_id="wf-2"))
        err, _ = ws_wait(wc, lambda f: f.get("type") == "error", what="error")
        assert not component_errors("WsError", err), component_errors("WsError", err)
        # the chat's events, pushed
        mid = ack["id"]
        settle(server.base)
        assert alice.api.request("PATCH", f"/chats/{cid}/messages/{mid}", json_body={"content": "edited"}).ok
        assert bob.api.put(f"/chats/{cid}/messages/{mid}/reactions/%F0%9F%91%8D").status_code == 204
        assert alice.api.delete(f"/chats/{cid}/messages/{mid}").status_code == 204
        for kind, schema in (("message_edited", "WsMessageEditedEvent"), ("reaction", "WsReactionEvent"),
                             ("message_deleted", "WsMessageDeletedEvent")):
            f, _ = ws_wait(wb if kind != "reaction" else wa, lambda f, k=kind: f.get("type") == k, what=kind)
            assert not component_errors(schema, f), (kind, component_errors(schema, f))
        # the ephemeral ones: typing, presence, read
        typing = {"type": "typing", "chat_id": cid}
        assert not component_errors("WsTyping", typing)
        ws_send(wb, typing)
        f, _ = ws_wait(wa, lambda f: f.get("type") == "typing", what="typing")
        assert not component_errors("WsTypingEvent", f), component_errors("WsTypingEvent", f)
        wb.close()  # Bob goes: offline after the grace
        f, _ = ws_wait(wa, lambda f: f.get("type") == "presence" and not f["online"], timeout=20, what="presence")
        assert not component_errors("WsPresenceEvent", f), component_errors("WsPresenceEvent", f)
        assert bob.api.put(f"/chats/{cid}/read", {"message_id": mid}).status_code == 204
        f, _ = ws_wait(wa, lambda f: f.get("type") == "read", what="read")
        assert not component_errors("WsReadEvent", f), component_errors("WsReadEvent", f)
        assert alice.api.delete(f"/chats/{cid}/members/{bob.username}").status_code == 204
        f, _ = ws_wait(wa, lambda f: f.get("type") == "membership", what="membership")
        assert not component_errors("WsMembershipEvent", f), component_errors("WsMembershipEvent", f)
    finally:
        for w in (wa, wb, wc):
            w.close()


def test_rate_limited_matches_spec(server_factory):
    srv = server_factory(args=["--rate-limit", "1", "--rate-burst", "1"])
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    c = SpecClient(srv, alice.token)
    statuses = [c.call("POST", "/chats/{chat_id}/messages", {"chat_id": cid}, body={"content": f"r{i}"})[1].status_code
                for i in range(5)]
    assert 429 in statuses and 202 in statuses, statuses


def test_auth_rate_limited_matches_spec(server_factory):
    srv = server_factory(args=["--auth-rate-ip", "2"])
    c = SpecClient(srv)
    statuses = [c.call("POST", "/sessions", body={"username": uniq("nobody"), "password": "wrong password"})[1]
                .status_code for _ in range(3)]
    assert statuses == [401, 401, 429], statuses
    c.call("POST", "/users", body={"username": uniq("late"), "password": PASSWORD}, expect=429)


def test_every_operation_exercised():
    """Runs last in this module: every path+method of the spec was called and answered a 1xx/2xx."""
    if not COVERAGE:
        pytest.skip("run together with test_routes_match_spec")
    missing = []
    for template, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                seen = COVERAGE.get((template, method), set())
                if not any(s.startswith(("1", "2")) for s in seen):
                    missing.append(f"{method.upper()} {template} (seen {sorted(seen)})")
    assert not missing, "operations never exercised successfully: " + ", ".join(missing)
