"""The web client's files: served from the binary at / and /static/<name>, cached by ETag, nothing else."""

import http.client
import os

import pytest
import requests

from conftest import REPO

WEB = os.path.join(REPO, "web")


def raw_get(server, path, headers=None):
    """GET with the path sent exactly as given (requests would resolve '..' first)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def test_root_serves_the_page(server):
    r = requests.get(server.base + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    with open(os.path.join(WEB, "index.html"), "rb") as f:
        assert r.content == f.read()
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert f"connect-src 'self' ws://127.0.0.1:{server.port} wss://127.0.0.1:{server.port}" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize("name,ctype", [
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8"),
])
def test_assets_have_their_type(server, name, ctype):
    r = requests.get(f"{server.base}/static/{name}", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ctype
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    with open(os.path.join(WEB, name), "rb") as f:
        assert r.content == f.read()
    assert r.headers["Content-Length"] == str(len(r.content))


def test_every_web_file_is_served(server):
    names = sorted(n for n in os.listdir(WEB) if not n.startswith("."))
    assert names, "web/ is empty"
    for name in names:
        r = requests.get(f"{server.base}/static/{name}", timeout=10)
        assert r.status_code == 200, name


def test_etag_gives_304(server):
    s = requests.Session()
    r = s.get(server.base + "/static/app.js", timeout=10)
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 18
    assert r.headers["Cache-Control"] == "no-cache"  # revalidated: a new build's page never runs old modules
    for value in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        r2 = s.get(server.base + "/static/app.js", headers={"If-None-Match": value}, timeout=10)
        assert r2.status_code == 304, value
        assert r2.content == b""
        assert r2.headers["ETag"] == etag
    # a stale copy gets the file again; the connection stayed usable throughout
    r3 = s.get(server.base + "/static/app.js", headers={"If-None-Match": '"0000000000000000"'}, timeout=10)
    assert r3.status_code == 200 and r3.content == r.content
    # the page has its own tag
    page = s.get(server.base + "/", timeout=10)
    assert page.headers["ETag"] != etag
    assert s.get(server.base + "/", headers={"If-None-Match": page.headers["ETag"]}, timeout=10).status_code == 304


@pytest.mark.parametrize("path", [
    "/static/../x", "/static/../src/main.c", "/static/../README.md", "/static/%2e%2e/README.md",
    "/static/./app.js", "/static//app.js", "/static/nope.js", "/static/app.js/", "/static/APP.JS",
    "/static/", "/static", "/app.js", "/index.html", "/web/index.html",
])
def test_only_embedded_names_exist(server, path):
    status, headers, body = raw_get(server, path)
    assert status == 404, path
    assert headers["content-type"] == "application/json"
    assert b'"not_found"' in body


def test_other_methods(server):
    for method, path in (("POST", "/"), ("PUT", "/static/app.js"), ("DELETE", "/static/app.js")):
        r = requests.request(method, server.base + path, timeout=10)
        assert r.status_code == 405, (method, path)
        assert r.headers["Allow"] == "GET, HEAD"


def test_api_reads_are_not_cached(server, make_user):
    """A user's chats and messages are kept in no cache: a browser's would
    show them after the logout."""
    alice = make_user("alice")
    cid = alice.create_chat()["id"]
    for path in ("/me", "/chats", f"/chats/{cid}/messages"):
        r = alice.api.get(path)
        assert r.status_code == 200 and r.headers.get("Cache-Control") == "no-store", (path, r.headers)
