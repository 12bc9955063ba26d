"""Shared fixtures and helpers for natter's black-box test suite.

The suite drives a real natter binary over HTTP and WebSocket.

Environment:
  NATTER_BIN        path of the server binary (default: <repo>/build/natter)
  NATTER_TEST_ARGS  extra server arguments, split with shlex, given to every
                    server start (e.g. "--threads 1") before the test's own,
                    so an option a test sets itself wins
  NATTER_TEST_KAFKA bootstrap HOST:PORT of a real Kafka broker: every server runs
                    on --log kafka with a topic and a store group of its own
                    (kept across restarts of the same server; shared between
                    servers made with the same log_id, as nodes of one cluster)
  NATTER_TEST_CQL_USER, NATTER_TEST_CQL_PASSWORD  PasswordAuthenticator credentials
  NATTER_TEST_CQL   HOST:PORT of a real Cassandra: every server runs on --store cql,
                    all of one test run on one keyspace (every row is keyed by
                    ids and names unique to its test; a keyspace per server
                    would cost Cassandra a dozen tables' memory each)
"""

import itertools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests
import websocket

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAX_BODY = 65536  # natter's default --max-body
NATTER_BIN = os.path.abspath(os.environ.get("NATTER_BIN", os.path.join(REPO, "build", "natter")))
# the optimised build, as the Dockerfile makes it (the tests' server may carry sanitizers)
NATTER_RELEASE_BIN = os.path.abspath(os.environ.get("NATTER_RELEASE_BIN", os.path.join(REPO, "build", "natter")))
EXTRA_ARGS = shlex.split(os.environ.get("NATTER_TEST_ARGS", ""))
KAFKA = os.environ.get("NATTER_TEST_KAFKA", "")
CQL = os.environ.get("NATTER_TEST_CQL", "")
CQL_USER = os.environ.get("NATTER_TEST_CQL_USER", "")
CQL_PASSWORD = os.environ.get("NATTER_TEST_CQL_PASSWORD", "")
RUN_ID = uuid.uuid4().hex[:12]

ID_RE = re.compile(r"^[0-9]+$")
TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
PASSWORD = "correct horse battery"
START_TIMEOUT = 30 if KAFKA or CQL else 10
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "ThreadSanitizer")


# node ids the harness hands out; tests that pick their own use ids below 700
_node_ids = itertools.count(0)
_servers = []  # every Server started in this run: settle() finds a node's peers here


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def uniq(prefix="u"):
    """A fresh username (<= 32 chars of [A-Za-z0-9_.-])."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Server:
    """One natter process on a free loopback port with its own data dir."""

    def __init__(self, tmpdir, args=(), name="natter", env=None, log_id=None):
        self.tmpdir = str(tmpdir)
        self.log_id = log_id or uuid.uuid4().hex[:12]
        self.data_dir = os.path.join(self.tmpdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.args = list(args)
        self.name = name
        self.env = dict(os.environ)
        # freed memory is overwritten (the first 64 KiB of each block): a read of it from code
        # built without ASan, h2o's, fails loudly instead of finding the old contents there
        self.env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1:max_free_fill_size=65536:free_fill_byte=170")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            self.env.update(env)
        self.proc = None
        self.port = None
        self.starts = 0
        self.stderr_paths = []
        self.killed = False  # set when we SIGKILLed the current process on purpose
        # servers sharing a store are nodes of one cluster: each holds its own node id (a restart
        # of this server, on its data dir, takes its own back)
        self.node_id = 700 + next(_node_ids) % 324
        self.scanned = {}  # stderr path -> bytes already checked for sanitizer reports

    def log_args(self):
        args = []
        if KAFKA:
            args += ["--log", "kafka", "--kafka-brokers", KAFKA, "--kafka-topic", f"natter-test-{self.log_id}",
                     "--kafka-group", f"natter-test-{self.log_id}"]
        if CQL:
            args += ["--store", "cql", "--cql-hosts", CQL, "--cql-keyspace", f"t_{RUN_ID}"]
            if "--node-id" not in self.args + EXTRA_ARGS:
                args += ["--node-id", str(self.node_id)]
            if CQL_USER:
                args += ["--cql-user", CQL_USER, "--cql-password", CQL_PASSWORD]
        return args

    @property
    def tls(self):
        """The server speaks HTTPS and WSS (started with --tls-cert)."""
        return "--tls-cert" in self.args

    @property
    def base(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_base(self):
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def start(self, port=None):
        if not os.path.exists(NATTER_BIN):
            pytest.fail(f"server binary {NATTER_BIN} does not exist (build it or set NATTER_BIN)")
        self.port = port or free_port()
        self.starts += 1
        path = os.path.join(self.tmpdir, f"{self.name}.{self.starts}.stderr")
        self.stderr_paths.append(path)
        self.stderr_file = open(path, "wb")
        # the limits of posts and of logins per address and username are off unless a test turns them on
        cmd = [NATTER_BIN, "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir, "--rate-limit", "0",
               "--rate-limit-writes", "0", "--rate-limit-reads", "0",
               "--auth-rate-ip", "0", "--auth-rate-user", "0"]
        cmd += self.log_args() + EXTRA_ARGS + self.args
        self.cmd = cmd
        if self not in _servers:
            _servers.append(self)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr_file,
                                     stderr=self.stderr_file, env=self.env, cwd=self.tmpdir)
        self.killed = False
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} during start-up: {' '.join(cmd)}\n"
                            f"{self.stderr_text()[-4000:]}")
            try:
                r = requests.get(self.base + "/healthz", timeout=1)
                if r.status_code == 200:
                    return self
                last = f"status {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"server not healthy within {START_TIMEOUT} s ({last}): {' '.join(cmd)}\n{self.stderr_text()[-4000:]}")

    def stderr_text(self, all_runs=False):
        out = []
        for p in (self.stderr_paths if all_runs else self.stderr_paths[-1:]):
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def new_sanitizer_reports(self):
        """Sanitizer lines written to stderr since the last call (attributed to the test that just ran)."""
        found = []
        for p in self.stderr_paths:
            try:
                with open(p, "rb") as f:
                    f.seek(self.scanned.get(p, 0))
                    chunk = f.read()
            except OSError:
                continue
            # only consume whole lines, so a report being written is not split
            cut = chunk.rfind(b"\n") + 1
            self.scanned[p] = self.scanned.get(p, 0) + cut
            text = chunk[:cut].decode("utf-8", "replace")
            if any(m in text for m in SANITIZER_MARKERS):
                found.append(text[-6000:])
        return found

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.killed = True
        self.stderr_file.close()

    def stop(self):
        """SIGTERM, wait <= 10 s. Returns a list of problems (empty when clean)."""
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append("server did not exit within 10 s of SIGTERM")
                self.proc.kill()
                self.proc.wait()
            self.stderr_file.close()
            if self.proc.returncode != 0:
                problems.append(f"server exited with status {self.proc.returncode} after SIGTERM")
        elif self.proc is not None and not self.killed:
            problems.append(f"server had already exited with status {self.proc.returncode}")
        reports = self.new_sanitizer_reports()
        if reports:
            problems.append("server stderr contains a sanitizer report:\n" + "\n".join(reports))
        elif problems:
            problems.append("server stderr (tail):\n" + self.stderr_text(all_runs=True)[-6000:])
        return problems

    def check_stop(self):
        problems = self.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server per test module."""
    srv = Server(tmp_path_factory.mktemp("natter"))
    srv.start()
    yield srv
    srv.check_stop()


@pytest.fixture(autouse=True)
def _server_health(request):
    """After each test using the module server: fail that test if the server crashed or printed a
    sanitizer report meanwhile; restart a crashed server (same port and data dir) for the next tests."""
    if "server" not in request.fixturenames:
        yield
        return
    srv = request.getfixturevalue("server")
    yield
    problems = []
    if not srv.alive():
        srv.stderr_file.close()
        problems.append(f"server died during this test (status {srv.proc.returncode}); stderr tail:\n"
                        + srv.stderr_text()[-6000:])
    reports = srv.new_sanitizer_reports()
    if reports:
        problems.append("server printed a sanitizer report during this test:\n" + "\n".join(reports))
    if not srv.alive():
        srv.start(port=srv.port)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def server_factory(tmp_path_factory):
    """Start private servers: server_factory(args=[...]). All are stopped and checked at teardown."""
    servers = []

    def make(args=(), env=None, name="natter", log_id=None):
        srv = Server(tmp_path_factory.mktemp("natter"), args=args, env=env, name=name, log_id=log_id)
        servers.append(srv)
        srv.start()
        return srv

    yield make
    problems = []
    for srv in servers:
        problems += srv.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ---------------------------------------------------------------- HTTP client


def _metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def metric(base, name):
    """The value of an unlabelled series of the node at base (0 when it has none)."""
    return _metric(requests.get(base + "/metrics", timeout=5).text, name)


def _nodes_sharing_the_log(base):
    """The bases of the running servers that share the log of the one at base
    (the nodes of one cluster, itself included); [base] when it is none of
    this run's servers."""
    for srv in _servers:
        if srv.alive() and srv.base == base:
            return [p.base for p in _servers if p.log_id == srv.log_id and p.alive()]
    return [base]


def settle(base, timeout=10):
    """On the Kafka log a 202 means the broker has the message; the store has
    it one batch later. Before reading history, wait until everything posted
    on this node and on the nodes sharing its log is stored or dead-lettered
    (each node's store consumer stores only its share of the partitions, so
    one node's counts alone may never meet). A record whose produce failed
    (answered 503) counts as done: it may never be stored, or (a produce
    that timed out after all reached the broker) be stored too, so after an
    outage a test waits for the lag to drain (wait_drained) as well. Fails
    the test when the counts have not met within timeout seconds."""
    if not KAFKA:
        return
    bases = _nodes_sharing_the_log(base)
    deadline = time.monotonic() + timeout
    while True:
        posted = done = 0
        for b in bases:
            text = requests.get(b + "/metrics", timeout=2).text
            posted += _metric(text, "natter_messages_posted_total")
            done += sum(_metric(text, m) for m in ("natter_messages_stored_total", "natter_dead_letters_total",
                                                   "natter_messages_failed_total"))
        if done >= posted:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"settle: after {timeout} s the nodes {bases} have stored or dead-lettered "
                                 f"{done:.0f} of the {posted:.0f} messages they accepted")
        time.sleep(0.01)


def consumer_lag(text):
    """The consumer lag in a scrape: the sum over every partition's series
    (the embedded log has one unlabelled series); None when there is none."""
    values = [float(line.split()[-1]) for line in text.splitlines()
              if re.match(r"natter_consumer_lag[{ ]", line)]
    return sum(values) if values else None


def node_with_a_batch_given_up(server_factory):
    """A node whose first store batch fails its four tries (an outage, by a fault), alice's post in it
    answered 503: (server, alice, her chat's id). The embedded log: on Kafka the broker answers posts."""
    srv = server_factory(env={"NATTER_FAULTS": "store.messages_insert:nth=1,count=4,rc=unavail"})
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    assert alice.api.post(f"/chats/{cid}/messages", {"content": "given up"}).status_code == 503
    return srv, alice, cid


def wait_for(cond, timeout=20, step=0.05):
    """Polls cond until it is true or timeout seconds passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def wait_drained(base, timeout=60):
    """Kafka log: wait until the store group has committed everything in the
    topic (consumer lag 0 on two readings a lag period apart): after a
    restart the store consumer first has to rejoin its group."""
    if not KAFKA:
        return
    deadline = time.monotonic() + timeout
    zero_since = None
    while time.monotonic() < deadline:
        lag = consumer_lag(requests.get(base + "/metrics", timeout=2).text)
        if lag == 0:
            zero_since = zero_since or time.monotonic()
            if time.monotonic() - zero_since > 1.2:
                return
        else:
            zero_since = None
        time.sleep(0.1)
    pytest.fail(f"consumer lag did not drain within {timeout} s")


class Client:
    """A thin HTTP client for one server, optionally authenticated."""

    def __init__(self, base, token=None):
        self.base = base
        self.token = token
        self.s = requests.Session()

    def headers(self, extra=None, token=None):
        h = {}
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if extra:
            h.update(extra)
        return h

    def request(self, method, path, json_body=None, data=None, headers=None, token=None, params=None, timeout=10):
        if method == "GET" or not path.endswith("/messages"):
            settle(self.base)
        h = self.headers(headers, token)
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        return self.s.request(method, self.base + path, data=data, headers=h, params=params, timeout=timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, json_body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # convenience wrappers asserting success
    def post_message(self, chat_id, content, client_id=None):
        body = {"content": content}
        if client_id is not None:
            body["client_id"] = client_id
        r = self.post(f"/chats/{chat_id}/messages", body)
        assert r.status_code == 202, (r.status_code, r.text)
        return r.json()

    def history(self, chat_id, **params):
        r = self.get(f"/chats/{chat_id}/messages", params=params)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def all_history(self, chat_id, limit=200, after="0"):
        """Every message of a chat after the id given (every one: after=0), paging forward."""
        out = []
        while True:
            page = self.history(chat_id, after=after, limit=limit)
            out += page["messages"]
            if not page["has_more"]:
                return out
            assert page["messages"], "has_more true on an empty page"
            after = page["messages"][-1]["id"]

    def chats(self):
        """Every chat of the caller, page by page."""
        out, before = [], None
        while True:
            r = self.get("/chats" + (f"?before={before}" if before else ""))
            assert r.status_code == 200, (r.status_code, r.text)
            page = r.json()
            assert page["has_more"] == (page["next_before"] is not None), page
            out += page["chats"]
            if not page["has_more"]:
                return out
            assert page["chats"], "has_more true on an empty page"
            before = page["next_before"]

    def chat_summary(self, chat_id):
        for c in self.chats():
            if c["id"] == chat_id:
                return c
        return None

    def get_chat(self, chat_id):
        r = self.get(f"/chats/{chat_id}")
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()


class User:
    def __init__(self, server, username, password, uid, token):
        self.server = server
        self.username = username
        self.password = password
        self.id = uid
        self.token = token
        self.api = Client(server.base, token)

    def ws(self, timeout=5, **kw):
        return open_ws(self.server, self.token, timeout=timeout, **kw)

    def create_chat(self, name=None, members=()):
        r = self.api.post("/chats", {"name": name or uniq("chat"), "members": [m.username if isinstance(m, User) else m
                                                                              for m in members]})
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()


def register(server, prefix="u", password=PASSWORD):
    c = Client(server.base)
    name = uniq(prefix)
    r = c.post("/users", {"username": name, "password": password})
    assert r.status_code == 201, (r.status_code, r.text)
    uid = r.json()["id"]
    r = c.post("/sessions", {"username": name, "password": password})
    assert r.status_code == 201, (r.status_code, r.text)
    return User(server, name, password, uid, r.json()["token"])


def login(server, username, password=PASSWORD):
    r = Client(server.base).post("/sessions", {"username": username, "password": password})
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()["token"]


@pytest.fixture
def make_user(server):
    """make_user(prefix) -> a registered, logged-in User on the module server."""
    return lambda prefix="u": register(server, prefix)


# ---------------------------------------------------------------- assertions


def assert_error(r, status, code):
    """The response is `status` with the JSON error body {"error":{"code":code,"message":...}}."""
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text[:500]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/json", f"error Content-Type is {ctype!r}"
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, body
    assert err["code"] == code, f"expected code {code}, got {err['code']} ({body})"
    assert isinstance(err["message"], str) and err["message"], body
    return body


def assert_id(v):
    assert isinstance(v, str) and ID_RE.match(v), f"not an id string: {v!r}"
    assert int(v) < 2 ** 64, v


def assert_time(v):
    assert isinstance(v, str) and TIME_RE.match(v), f"not an RFC 3339 UTC ms time: {v!r}"


def assert_message(m, chat_id=None, sender_id=None, content=None, mid=None, client_id=None):
    assert isinstance(m, dict), m
    for k in ("id", "chat_id", "sender_id", "content", "created_at"):
        assert k in m, f"message lacks {k}: {m}"
    assert_id(m["id"])
    assert_id(m["chat_id"])
    assert_id(m["sender_id"])
    assert_time(m["created_at"])
    if chat_id is not None:
        assert m["chat_id"] == chat_id, m
    if sender_id is not None:
        assert m["sender_id"] == sender_id, m
    if content is not None:
        assert m["content"] == content, m
    if mid is not None:
        assert m["id"] == mid, m
    if client_id is not None:
        assert m.get("client_id") == client_id, m


# ---------------------------------------------------------------- WebSocket


def open_ws(server, token, timeout=5, via="query", **kw):
    if via == "query":
        return websocket.create_connection(f"{server.ws_base}/ws?token={token}", timeout=timeout, **kw)
    return websocket.create_connection(f"{server.ws_base}/ws", timeout=timeout,
                                       header=[f"Authorization: Bearer {token}"], **kw)


def ws_next_json(ws, timeout=5):
    """The next JSON text frame (skipping pings), or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ws.settimeout(left)
        try:
            op, data = ws.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            return None
        if op == websocket.ABNF.OPCODE_TEXT:
            return json.loads(data.decode("utf-8"))
        if op == websocket.ABNF.OPCODE_CLOSE:
            raise AssertionError(f"websocket closed by server: {data!r}")


def ws_wait(ws, pred, timeout=5, what="frame"):
    """Read frames until pred(frame) is true; returns (frame, skipped frames)."""
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        left = deadline - time.monotonic()
        f = ws_next_json(ws, timeout=max(left, 0.001)) if left > 0 else None
        if f is None:
            raise AssertionError(f"no {what} within {timeout} s; got instead: {skipped[-5:]}")
        if pred(f):
            return f, skipped
        skipped.append(f)


def ws_wait_message(ws, mid, timeout=5):
    f, _ = ws_wait(ws, lambda f: f.get("type") == "message" and f.get("message", {}).get("id") == mid,
                   timeout, what=f"message {mid}")
    return f["message"]


def ws_collect(ws, n, timeout=10, chat_id=None):
    """Collect n pushed messages (optionally only of chat_id)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        f = ws_next_json(ws, timeout=left) if left > 0 else None
        if f is None:
            raise AssertionError(f"only {len(out)} of {n} messages within {timeout} s")
        if f.get("type") == "message" and (chat_id is None or f["message"]["chat_id"] == chat_id):
            out.append(f["message"])
    return out


def ws_quiet(ws, pred, wait=1.0):
    """Assert no frame matching pred arrives within `wait` seconds. Returns frames seen."""
    seen = []
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return seen
        f = ws_next_json(ws, timeout=left)
        if f is None:
            return seen
        assert not pred(f), f"unexpected frame: {f}"
        seen.append(f)


def ws_closed(ws, timeout=10):
    """Reads frames until the server's close; returns (code, reason)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no close within {timeout} s")
        ws.settimeout(left)
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        if op == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return code, data[2:].decode("utf-8", "replace")


def ws_send(ws, obj):
    ws.send(json.dumps(obj, ensure_ascii=False))


class WsReader(threading.Thread):
    """Reads a WebSocket in the background, keeping every JSON frame and the close code."""

    def __init__(self, ws):
        super().__init__(daemon=True)
        self.ws = ws
        self.frames = []
        self.close = None
        self.error = None
        self.stop_flag = False
        self.lock = threading.Lock()

    def run(self):
        self.ws.settimeout(0.5)
        while not self.stop_flag:
            try:
                op, data = self.ws.recv_data(control_frame=False)
            except websocket.WebSocketTimeoutException:
                continue
            except Exception as e:  # connection closed or broken
                self.error = e
                return
            if op == websocket.ABNF.OPCODE_TEXT:
                with self.lock:
                    self.frames.append(json.loads(data.decode("utf-8")))
            elif op == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                self.close = (code, data[2:].decode("utf-8", "replace"))
                return

    def messages(self):
        with self.lock:
            return [f["message"] for f in self.frames if f.get("type") == "message"]

    def wait_count(self, n, timeout=10, pred=lambda m: True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len([m for m in self.messages() if pred(m)]) >= n:
                return True
            if self.close or self.error:
                return False
            time.sleep(0.02)
        return False

    def stop(self):
        self.stop_flag = True
        if self.is_alive():
            self.join(timeout=2)
