"""--tls-cert / --tls-key: HTTPS and WSS from natter itself, with a certificate made for the test."""

import os
import ssl
import subprocess

import pytest
import requests
import websocket

from conftest import WsReader, free_port, register, ws_send, ws_wait


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return crt, key


@pytest.fixture
def tls_server(server_factory, cert, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert[0])  # requests verifies against the test's certificate
    return server_factory(args=["--tls-cert", cert[0], "--tls-key", cert[1]])


def test_happy_path_over_tls(tls_server, cert):
    """Register, log in, make a chat, listen on wss://, post over https://, get the push, read history."""
    srv = tls_server
    assert srv.base.startswith("https://")
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    ssl_opts = {"ca_certs": cert[0], "cert_reqs": ssl.CERT_REQUIRED}
    reader = WsReader(websocket.create_connection(f"{srv.ws_base}/ws?token={bob.token}", timeout=10,
                                                  sslopt=ssl_opts))
    reader.start()
    sender = websocket.create_connection(f"{srv.ws_base}/ws", timeout=10, sslopt=ssl_opts,
                                         header=[f"Authorization: Bearer {alice.token}"])
    try:
        posted = alice.api.post_message(cid, "over TLS")["id"]
        ws_send(sender, {"type": "send", "chat_id": cid, "content": "over WSS", "client_id": "t1"})
        ack, _ = ws_wait(sender, lambda f: f.get("type") == "ack", timeout=10, what="ack")
        assert ack["type"] == "ack" and ack["client_id"] == "t1", ack
        assert reader.wait_count(2, timeout=10), f"got {len(reader.messages())} pushes over wss"
        assert [m["id"] for m in reader.messages()] == [posted, ack["id"]]
        assert [m["content"] for m in bob.api.all_history(cid)] == ["over TLS", "over WSS"]
    finally:
        reader.stop()
        reader.ws.close()
        sender.close()


def test_plain_http_to_a_tls_port_gets_nothing(tls_server):
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5)
    assert requests.get(tls_server.base + "/healthz", timeout=5).status_code == 200


def test_unknown_certificate_is_refused_by_clients(tls_server, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_server.base + "/healthz", timeout=5)


def test_bad_key_files_stop_the_start(tmp_path, cert):
    bin_ = os.environ.get("NATTER_BIN", "build/natter")
    missing = str(tmp_path / "nope.pem")
    for args in (["--tls-cert", missing, "--tls-key", cert[1]], ["--tls-cert", cert[0], "--tls-key", missing],
                 ["--tls-cert", cert[0]]):
        p = subprocess.run([bin_, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")] + args,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0, args
        assert "tls" in p.stderr.lower(), p.stderr
