"""A minimal RFC 6455 client on a plain socket, for tests that must control every byte:
clients that never read, raw frames, floods."""

import base64
import hashlib
import os
import socket
import struct
import time


def upgrade(port, token, rcvbuf=4096, host="127.0.0.1", version="13"):
    """Sends /ws's upgrade request with token and this Sec-WebSocket-Version (None: without one) and
    reads the answer's head: (socket, key, head as text, the bytes after it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Sec-WebSocket-Version: {version}\r\n" if version is not None else ""
    s.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"connection closed during handshake: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return s, key, head.decode("latin-1"), rest


class RawWs:
    """Opens /ws with token; frames are read only when a test asks (read_frame)."""

    def __init__(self, port, token, rcvbuf=4096, host="127.0.0.1"):
        s, key, head, self.buf = upgrade(port, token, rcvbuf, host)
        lines = head.split("\r\n")
        assert lines[0].split(" ")[1] == "101", lines[0]
        hdrs = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip() for ln in lines[1:] if ":" in ln}
        expect = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert hdrs.get("sec-websocket-accept") == expect.decode(), hdrs
        self.s = s
        self.eof = False

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                raise TimeoutError
            if not chunk:
                self.eof = True
                raise EOFError
            self.buf += chunk

    def read_frame(self, timeout, pings=False):
        """(opcode, payload) of the next complete message (pings too with pings=True);
        raises TimeoutError / EOFError."""
        deadline = time.monotonic() + timeout
        payload, opcode = b"", None
        while True:
            self._fill(2, deadline)
            b0, b1 = self.buf[0], self.buf[1]
            assert not b1 & 0x80, "server frames must not be masked"
            n, off = b1 & 0x7F, 2
            if n == 126:
                self._fill(4, deadline)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._fill(10, deadline)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            self._fill(off + n, deadline)
            data, self.buf = self.buf[off:off + n], self.buf[off + n:]
            op = b0 & 0x0F
            if op >= 8:  # control frames may interleave with fragments
                if op == 0x9 and not pings:
                    continue  # ping: we are a lazy client, ignore
                return op, data
            if op != 0:
                opcode = op
            payload += data
            if b0 & 0x80:
                return opcode, payload

    def send(self, data):
        self.s.sendall(data)

    def read_eof(self, timeout=10):
        """True once the server closed TCP (after whatever frames remain); False on timeout."""
        try:
            while True:
                self.read_frame(timeout, pings=True)
        except (EOFError, ConnectionResetError):
            return True
        except TimeoutError:
            return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def client_frame(opcode, payload=b"", fin=True):
    """One masked client frame."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        length = bytes([0x80 | 127]) + struct.pack(">Q", n)
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + body


def read_close(ws, timeout=10):
    """Reads frames until the server's close; returns (code, reason)."""
    deadline = time.monotonic() + timeout
    while True:
        op, data = ws.read_frame(max(0.1, deadline - time.monotonic()))
        if op == 0x8:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
            return code, data[2:].decode("utf-8", "replace")


def read_close_code(ws, timeout=10):
    """Reads frames until the server's close; returns its code."""
    return read_close(ws, timeout)[0]
