"""RFC 6455, sections 5 and 7, case by case against the real server: every frame a client may send is
handled, and every violation fails the connection with a close frame carrying the right code
(1002 protocol error, 1007 bad UTF-8, 1009 too big) before the TCP connection closes."""

import json
import socket
import struct
import time

import pytest

from conftest import MAX_BODY, register
from rawws import RawWs, client_frame, upgrade


@pytest.fixture(scope="module")
def bob(server):
    return register(server, "bob")


def connect(server, bob):
    return RawWs(server.port, bob.token)


def expect_failed(ws, code):
    """The server's next frame is a close with code and a reason; then it closes TCP."""
    op, data = ws.read_frame(10)
    assert op == 0x8, (op, data)
    got = struct.unpack(">H", data[:2])[0]
    assert got == code, f"close code {got}, reason {data[2:]!r}"
    assert data[2:], "a close frame without a reason"
    assert ws.read_eof(10), "the server did not close TCP after its close frame"


def fails_with(server, bob, data, code):
    """A fresh socket sends data; the server fails the connection with code."""
    ws = connect(server, bob)
    try:
        ws.send(data)
        expect_failed(ws, code)
    finally:
        ws.close()


def send_json(ws, obj):
    ws.send(client_frame(0x1, json.dumps(obj).encode()))


def expect_error_frame(ws):
    op, data = ws.read_frame(10)
    assert op == 0x1, (op, data)
    return json.loads(data)


def raw_header(b0, b1, ext=b""):
    """A frame header only: masked, with a mask key."""
    return bytes([b0, b1]) + ext + b"\x00\x00\x00\x00"


# --- 5.1, 5.2: framing, masking, reserved bits, opcodes ------------------------------------------------

@pytest.mark.parametrize("frame, code", [
    pytest.param(bytes([0x81, 0x02]) + b"hi", 1002, id="unmasked"),
    pytest.param(bytes([0xC1]) + client_frame(0x1, b"x")[1:], 1002, id="rsv1"),
    pytest.param(bytes([0xA1]) + client_frame(0x1, b"x")[1:], 1002, id="rsv2"),
    pytest.param(bytes([0x91]) + client_frame(0x1, b"x")[1:], 1002, id="rsv3"),
    pytest.param(client_frame(0x3, b"x"), 1002, id="opcode-3"),
    pytest.param(client_frame(0x7, b""), 1002, id="opcode-7"),
    pytest.param(client_frame(0xB, b""), 1002, id="opcode-B"),
    pytest.param(client_frame(0xF, b""), 1002, id="opcode-F"),
    pytest.param(raw_header(0x81, 0x80 | 126, b"\x00\x05"), 1002, id="length-not-shortest-16"),
    pytest.param(raw_header(0x81, 0x80 | 127, b"\x00" * 7 + b"\x05"), 1002, id="length-not-shortest-64"),
    pytest.param(raw_header(0x81, 0x80 | 127, b"\x80" + b"\x00" * 7), 1002, id="length-top-bit"),
])
def test_framing_violations(server, bob, frame, code):
    fails_with(server, bob, frame, code)


def test_a_huge_length_is_refused_at_the_header(server, bob):
    """A header announcing 2^62 bytes is answered at once with 1009: nothing of the payload is awaited."""
    fails_with(server, bob, raw_header(0x81, 0x80 | 127, struct.pack(">Q", 1 << 62)), 1009)


def test_a_message_over_the_limit_is_refused(server, bob):
    ws = connect(server, bob)
    try:
        ws.send(client_frame(0x1, b"x" * (MAX_BODY + 1))[:14])  # the header alone: it is enough
        expect_failed(ws, 1009)
    finally:
        ws.close()


def test_fragments_over_the_limit_are_refused(server, bob):
    ws = connect(server, bob)
    try:
        ws.send(client_frame(0x1, b"x" * (MAX_BODY // 2 + 1000), fin=False))
        ws.send(client_frame(0x0, b"x" * (MAX_BODY // 2 + 1000), fin=False)[:8])
        expect_failed(ws, 1009)
    finally:
        ws.close()


# --- 4.2: the opening handshake ------------------------------------------------------------------------

def handshake(server, token, version):
    """The server's answer (status line and headers) to an upgrade with this Sec-WebSocket-Version
    (None: without one)."""
    s, _, head, _ = upgrade(server.port, token, version=version)
    s.close()
    return head + "\r\n"


@pytest.mark.parametrize("version", ["8", "14", "13, 8", "", None])
def test_a_version_other_than_13_is_refused_with_426(server, bob, version):
    """§4.2.2: the server answers 426 and names the version it speaks; no WebSocket is opened."""
    head = handshake(server, bob.token, version)
    assert head.startswith("HTTP/1.1 426 "), head
    assert "\r\nsec-websocket-version: 13\r\n" in head.lower(), head
    assert handshake(server, bob.token, "13").startswith("HTTP/1.1 101 "), "version 13 opens"


# --- 5.4: fragmentation ---------------------------------------------------------------------------------

def test_fragmented_send_with_interleaved_ping(server, bob):
    """A text message in three fragments, a ping between them: the ping is answered at once with
    its payload, the message is one send (answered with an error frame: the chat does not exist)."""
    ws = connect(server, bob)
    try:
        body = json.dumps({"type": "send", "chat_id": "1", "content": "fragmented", "client_id": "frag-1"}).encode()
        ws.send(client_frame(0x1, body[:10], fin=False))
        ws.send(client_frame(0x9, b"mid-message"))
        ws.send(client_frame(0x0, body[10:20], fin=False))
        ws.send(client_frame(0x0, body[20:], fin=True))
        op, data = ws.read_frame(10, pings=True)
        assert (op, data) == (0xA, b"mid-message")
        f = expect_error_frame(ws)
        assert f["type"] == "error" and f["client_id"] == "frag-1" and f["error"]["code"] == "not_found", f
    finally:
        ws.close()


@pytest.mark.parametrize("op, code", [(0x1, "invalid_json"), (0x2, "invalid_request")], ids=["text", "binary"])
def test_a_message_of_empty_fragments(server, bob, op, code):
    """Two empty fragments make an empty message: a send that is not JSON, answered with an error
    frame, on a socket that stays open (the parser handed its empty buffer on as NULL; UBSan aborted
    the server on the text one)."""
    ws = connect(server, bob)
    try:
        ws.send(client_frame(op, b"", fin=False) + client_frame(0x0, b"", fin=True))
        f = expect_error_frame(ws)
        assert f["error"]["code"] == code, f
        ws.send(client_frame(0x9, b"still there"))
        assert ws.read_frame(10, pings=True) == (0xA, b"still there")
    finally:
        ws.close()
    assert server.alive()


@pytest.mark.parametrize("frames, code", [
    pytest.param([client_frame(0x0, b"x")], 1002, id="continuation-first"),
    pytest.param([client_frame(0x1, b"a", fin=False), client_frame(0x1, b"b")], 1002, id="text-inside-text"),
    pytest.param([client_frame(0x1, b"a", fin=False), client_frame(0x2, b"b")], 1002, id="binary-inside-text"),
])
def test_fragmentation_violations(server, bob, frames, code):
    fails_with(server, bob, b"".join(frames), code)


# --- 5.5: control frames --------------------------------------------------------------------------------

def test_ping_is_answered_with_its_payload(server, bob):
    ws = connect(server, bob)
    try:
        ws.send(client_frame(0x9, b"x" * 125))
        assert ws.read_frame(10, pings=True) == (0xA, b"x" * 125)
        ws.send(client_frame(0x9, b""))
        assert ws.read_frame(10, pings=True) == (0xA, b"")
        ws.send(client_frame(0xA, b"unsolicited"))  # a pong nobody asked for is fine (5.5.3)
        ws.send(client_frame(0x9, b"still here"))
        assert ws.read_frame(10, pings=True) == (0xA, b"still here")
    finally:
        ws.close()


@pytest.mark.parametrize("frame, code", [
    pytest.param(raw_header(0x89, 0x80 | 126, b"\x00\x7e") + b"x" * 126, 1002, id="ping-126"),
    pytest.param(bytes([0x09]) + client_frame(0x9, b"p")[1:], 1002, id="fragmented-ping"),
    pytest.param(bytes([0x0A]) + client_frame(0xA, b"p")[1:], 1002, id="fragmented-pong"),
    pytest.param(raw_header(0x88, 0x80 | 126, b"\x00\x80") + b"x" * 128, 1002, id="close-128"),
])
def test_control_frame_violations(server, bob, frame, code):
    fails_with(server, bob, frame, code)


# --- 5.6, 8.1: text is UTF-8 ----------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    pytest.param(b"\xff", id="ff"),
    pytest.param(b"\xc0\xaf", id="overlong"),
    pytest.param(b"\xed\xa0\x80", id="surrogate"),
    pytest.param(b"\xf4\x90\x80\x80", id="past-10ffff"),
    pytest.param(b"abc\xe2\x82", id="ends-mid-character"),
])
def test_text_that_is_not_utf8(server, bob, payload):
    fails_with(server, bob, client_frame(0x1, payload), 1007)


def test_utf8_split_across_fragments_is_fine(server, bob):
    ws = connect(server, bob)
    try:
        body = json.dumps({"type": "send", "chat_id": "1", "content": "€ and 😀", "client_id": "u8"},
                          ensure_ascii=False).encode()
        cut = body.index("€".encode()) + 1  # inside the euro sign
        ws.send(client_frame(0x1, body[:cut], fin=False) + client_frame(0x0, body[cut:]))
        f = expect_error_frame(ws)
        assert f["client_id"] == "u8" and f["error"]["code"] == "not_found", f
    finally:
        ws.close()


def test_invalid_utf8_in_a_later_fragment_fails_there(server, bob):
    ws = connect(server, bob)
    try:
        ws.send(client_frame(0x1, b'{"type":', fin=False))
        ws.send(client_frame(0x0, b"\xff", fin=False))
        expect_failed(ws, 1007)
    finally:
        ws.close()


# --- 7: closing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, echo", [
    pytest.param(b"", b"", id="no-code"),
    pytest.param(struct.pack(">H", 1000) + b"done", struct.pack(">H", 1000), id="1000"),
    pytest.param(struct.pack(">H", 1001), struct.pack(">H", 1001), id="1001"),
    pytest.param(struct.pack(">H", 3000), struct.pack(">H", 3000), id="3000"),
    pytest.param(struct.pack(">H", 4999) + "é".encode(), struct.pack(">H", 4999), id="4999-utf8-reason"),
])
def test_close_is_answered_then_tcp_closes(server, bob, payload, echo):
    """The client closes: the server answers with a close frame echoing the code (§5.5.1), then closes TCP."""
    ws = connect(server, bob)
    try:
        ws.send(client_frame(0x8, payload))
        op, data = ws.read_frame(10)
        assert op == 0x8 and data[:2] == echo, (op, data)
        assert ws.read_eof(10)
    finally:
        ws.close()


@pytest.mark.parametrize("payload, code", [
    pytest.param(b"\x03", 1002, id="one-byte"),
    pytest.param(struct.pack(">H", 999), 1002, id="999"),
    pytest.param(struct.pack(">H", 1004), 1002, id="1004"),
    pytest.param(struct.pack(">H", 1005), 1002, id="1005"),
    pytest.param(struct.pack(">H", 1006), 1002, id="1006"),
    pytest.param(struct.pack(">H", 1015), 1002, id="1015"),
    pytest.param(struct.pack(">H", 2999), 1002, id="2999"),
    pytest.param(struct.pack(">H", 5000), 1002, id="5000"),
    pytest.param(struct.pack(">H", 1000) + b"\xff", 1007, id="reason-not-utf8"),
])
def test_invalid_close_frames(server, bob, payload, code):
    fails_with(server, bob, client_frame(0x8, payload), code)


def test_nothing_is_read_after_a_violation(server, bob):
    """After a violation the server reads nothing more: a send right behind it is never answered."""
    ws = connect(server, bob)
    try:
        ws.send(client_frame(0x3, b"") + client_frame(0x1, json.dumps({"type": "send", "chat_id": "1",
                                                                         "content": "x", "client_id": "x"}).encode()))
        expect_failed(ws, 1002)
    finally:
        ws.close()


def test_typing_from_a_socket_that_resets_at_once(server_factory):
    """A typing frame whose membership check goes to a worker (the chat's
    members are not cached) answers nothing; when its socket is gone by then,
    the answer is dropped. It once took the node down (a NULL frame unref'd)."""
    srv = server_factory(args=["--members-ttl", "200"])
    alice = register(srv, "alice")
    chats = [alice.create_chat()["id"] for _ in range(100)]
    time.sleep(0.5)  # past --members-ttl: every chat's member list is loaded again on its first use
    for cid in chats:
        ws = RawWs(srv.port, alice.token)
        ws.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.s.sendall(client_frame(0x1, json.dumps({"type": "typing", "chat_id": cid}).encode()))
        ws.s.close()  # a reset, before the worker's answer
    ws = RawWs(srv.port, alice.token)  # the node still serves
    ws.s.close()
    assert alice.api.get("/me").status_code == 200


def test_one_sockets_sends_are_stored_in_the_order_sent(server):
    """Sends written back to back on one socket, to a chat whose members are
    not cached yet (the first goes to a worker, which loads them), are
    stored in the order they were sent: the ones behind wait for it rather
    than overtake it on the loop or on other workers."""
    alice = register(server, "alice")
    for _ in range(5):
        cid = alice.create_chat()["id"]  # new: its members are not cached
        ws = RawWs(server.port, alice.token)
        names = [f"m{i}" for i in range(8)]
        ws.send(b"".join(client_frame(0x1, json.dumps({"type": "send", "chat_id": cid, "content": n,
                                                       "client_id": n}).encode()) for n in names))
        acked = set()
        while len(acked) < len(names):
            op, payload = ws.read_frame(timeout=10)
            frame = json.loads(payload)
            if frame["type"] in ("message", "membership"):  # her own, pushed to her sockets too; the new chat
                continue
            assert frame["type"] == "ack", frame
            acked.add(frame["client_id"])
        ws.close()
        assert [m["content"] for m in alice.api.history(cid)["messages"]] == names
