"""A stand-in for the original (Rust) design's HTTP API, so that the tests
can prove `natter-load --api seed` speaks it: users and chats in memory,
posts pushed at once to every member's WebSockets as an HTML fragment.

    POST /users                form username=…            201 JSON {user_id, username}
    POST /login                form username=…            303, Set-Cookie: user_id=<uuid>
    POST /chats                form name, members=<uuid>… 201 JSON {chat_id, name, members}
                               + cookie user_id
    POST /chats/{id}/messages  form content=… + cookie    200, empty body
    GET  /ws/connect/{user_id} WebSocket; one HTML fragment per message, its
                               element id "msg-<timeuuid>" (the message id)
    GET  /metrics              Prometheus text: consumer_lag (messages
                               accepted whose pushes are not all sent yet)

It is not the original (that needs Redpanda and ScyllaDB); it answers as
the original's API does. Message ids are version-1 UUIDs (timeuuids), made
while the chat's lock is held, with a timestamp that never repeats or goes
back: a chat's pushes go out in id order. Faults, so a test can prove the
generator sees them: `--fault drop --every N` withholds every Nth message
of a chat from its first member; `--fault swap --every N` hands that member
the Nth message after the one that follows it; `--fault dup --every N`
pushes the Nth message to that member twice.

Run: python3 seed_api_server.py PORT [--fault drop|swap|dup --every N]; it
prints "ready".
"""

import argparse
import base64
import hashlib
import html
import json
import os
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Socket:
    """One WebSocket connection: unmasked server frames, under a lock."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()
        self.open = True

    def send_text(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            head = bytes([0x81, n])
        elif n < 65536:
            head = bytes([0x81, 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x81, 127]) + n.to_bytes(8, "big")
        with self.lock:
            if not self.open:
                return
            try:
                self.conn.sendall(head + data)
            except OSError:
                self.open = False


class TimeUuids:
    """Version-1 UUIDs with a strictly increasing 60-bit timestamp (100 ns
    ticks since 1582-10-15), one clock sequence and a random node."""

    EPOCH_OFFSET = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01

    def __init__(self):
        self.lock = threading.Lock()
        self.last = 0
        self.clock_seq = int.from_bytes(os.urandom(2), "big") & 0x3FFF
        self.node = int.from_bytes(os.urandom(6), "big") | 0x010000000000  # multicast bit: not a MAC

    def next(self):
        with self.lock:
            self.last = max(time.time_ns() // 100 + self.EPOCH_OFFSET, self.last + 1)
            ts = self.last
        return uuid.UUID(fields=(ts & 0xFFFFFFFF, (ts >> 32) & 0xFFFF, (ts >> 48) & 0x0FFF | 0x1000,
                                 0x80 | self.clock_seq >> 8, self.clock_seq & 0xFF, self.node))


class State:
    def __init__(self, fault, every):
        self.lock = threading.Lock()
        self.users = {}  # user_id -> username
        self.by_name = {}
        self.chats = {}  # chat_id -> {"members": [...], "lock": Lock, "count": int}
        self.sockets = {}  # user_id -> [Socket]
        self.fault = fault
        self.every = every
        self.ids = TimeUuids()
        self.pending = 0  # accepted, pushes not all sent: the consumer lag


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body=b"", ctype="application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def form(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n).decode()
            if self.headers.get("Content-Type", "") != "application/x-www-form-urlencoded":
                return None
            return parse_qs(raw, keep_blank_values=True)

        def cookie_user(self):
            for part in self.headers.get("Cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == "user_id" and v in state.users:
                    return v
            return None

        def do_POST(self):
            f = self.form()
            if f is None:
                return self.answer(415, b'{"error":"form bodies only"}')
            path = self.path
            if path == "/users":
                name = f.get("username", [""])[0]
                with state.lock:
                    if not name or name in state.by_name:
                        return self.answer(409, b'{"error":"taken"}')
                    uid = str(uuid.uuid4())
                    state.users[uid] = name
                    state.by_name[name] = uid
                return self.answer(201, json.dumps({"user_id": uid, "username": name}).encode())
            if path == "/login":
                uid = state.by_name.get(f.get("username", [""])[0])
                if uid is None:
                    return self.answer(500, b"Internal Server Error", "text/plain")
                return self.answer(303, headers=[("Location", "/"), ("Set-Cookie", f"user_id={uid}; Path=/")])
            user = self.cookie_user()
            if user is None:
                return self.answer(500, b"Internal Server Error", "text/plain")
            if path == "/chats":
                members = [m for m in f.get("members", []) if m in state.users]
                if user not in members:
                    members.append(user)
                cid = str(uuid.uuid4())
                with state.lock:
                    state.chats[cid] = {"members": members, "lock": threading.Lock(), "count": 0, "held": None}
                body = {"chat_id": cid, "name": f.get("name", [""])[0], "members": members}
                return self.answer(201, json.dumps(body).encode())
            parts = path.split("/")
            if len(parts) == 4 and parts[1] == "chats" and parts[3] == "messages" and parts[2] in state.chats:
                chat = state.chats[parts[2]]
                content = html.escape(f.get("content", [""])[0])
                sender = html.escape(state.users[user])
                with state.lock:
                    state.pending += 1
                with chat["lock"]:  # one order per chat, the same on every socket
                    mid = state.ids.next()
                    frag = (f'<div id="messages" hx-swap-oob="beforeend"><div id="msg-{mid}" class="message" '
                            f'data-chat="{parts[2]}"><span class="sender">{sender}</span> '
                            f'<p class="content">{content}</p></div></div>')
                    chat["count"] += 1
                    faulty = state.fault and chat["count"] % state.every == 0
                    victim = chat["members"][0]
                    for m in chat["members"]:
                        frags = [frag]
                        if m == victim and faulty:
                            frags = [frag, frag] if state.fault == "dup" else []
                            if state.fault == "swap":
                                chat["held"] = frag
                        elif m == victim and chat["held"] is not None:
                            frags.append(chat["held"])
                            chat["held"] = None
                        for s in list(state.sockets.get(m, [])):
                            for fr in frags:
                                s.send_text(fr)
                with state.lock:
                    state.pending -= 1
                return self.answer(200, b"", "text/plain")
            return self.answer(404, b'{"error":"not found"}')

        def do_GET(self):
            if self.path == "/metrics":
                with state.lock:
                    lag = state.pending
                body = f"# HELP consumer_lag Messages accepted, not yet pushed.\n# TYPE consumer_lag gauge\nconsumer_lag {lag}\n"
                return self.answer(200, body.encode(), "text/plain; version=0.0.4")
            parts = self.path.split("/")
            key = self.headers.get("Sec-WebSocket-Key")
            if len(parts) != 4 or parts[1:3] != ["ws", "connect"] or parts[3] not in state.users or not key:
                return self.answer(404, b'{"error":"not found"}')
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            sock = Socket(self.connection)
            with state.lock:
                state.sockets.setdefault(parts[3], []).append(sock)
            try:
                while self.connection.recv(4096):
                    pass  # the generator never sends; a close or EOF ends the socket
            except OSError:
                pass
            with state.lock:
                state.sockets[parts[3]].remove(sock)
            sock.open = False
            self.close_connection = True

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--fault", choices=["drop", "swap", "dup"])
    ap.add_argument("--every", type=int, default=50)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(State(a.fault, a.every)))
    srv.daemon_threads = True
    srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print("ready", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
