"""natter-load against a real natter: a short seed run at a low rate must
deliver every accepted message to every listener exactly once, in order.
Listener sockets spread over child processes (forced on small numbers
with --sockets-per-process) must reach the same verdict; listeners whose
sockets a server restart closes must reconnect and catch up from history
with nothing lost; the conns scenario spreads users, tabs and rooms over
two targets. With --api seed against a stand-in for the original design's
API (seed_api_server.py), the same run must measure the same things —
message ids included — and must see the loss, reordering and duplicates
that stand-in can inject. Against a natter serving HTTPS with a test
certificate, the same checks hold over https:// and wss:// (listeners in
this process or in child processes, sends over HTTP or the WebSocket),
every listener socket resumes a TLS session, and a certificate the
generator does not trust stops the run with status 2 and says so.

Environment: NATTER_LOAD_BIN, the generator (default <repo>/build/natter-load).
"""

import json
import math
import os
import subprocess
import sys
import time
import types

import pytest
import requests

from conftest import CQL, KAFKA, REPO, Server, _metric, free_port
from test_tls import cert  # noqa: F401 (the test certificate, a module fixture)

LOAD_BIN = os.path.abspath(os.environ.get("NATTER_LOAD_BIN", os.path.join(REPO, "build", "natter-load")))


# A server for runs that register many users: the cheapest Argon2id natter allows.
CHEAP_HASHES = ["--argon2-memory", "8", "--argon2-passes", "1"]


def load_cmd(targets, out, *args):
    if not os.path.exists(LOAD_BIN):
        pytest.fail(f"load generator {LOAD_BIN} does not exist (build it or set NATTER_LOAD_BIN)")
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=0")
    cmd = [LOAD_BIN, "--json", str(out), *args]
    for t in targets:
        cmd += ["--target", t.base]
    return cmd, env


def finished(cmd, p, stdout, stderr, out):
    report = f"{' '.join(cmd)}\nexit {p.returncode}\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}"
    doc = json.loads(out.read_text()) if out.exists() else None
    return p, doc, report


def run_load(server, tmp_path, *args, timeout=120, targets=None):
    out = tmp_path / "load.json"
    cmd, env = load_cmd(targets or [server], out, *args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return finished(cmd, p, p.stdout, p.stderr, out)


def assert_exactly_once(s, report):
    assert s["accepted"] > 0 and s["expected_deliveries"] > 0, report
    assert s["delivered"] == s["expected_deliveries"], report
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["reordered"] == 0, report
    assert s["id_mismatch"] == 0 and s["listeners_closed"] == 0, report


@pytest.mark.parametrize("send", ["http", "ws"])
def test_seed_run_delivers_everything_once_in_order(server_factory, tmp_path, send):
    srv = server_factory()
    plot = tmp_path / "run.png"
    p, doc, report = run_load(srv, tmp_path, "--scenario", "seed", "--listeners", "3",
                              "--stages", "200:1s,200:2s", "--send", send, "--plot", str(plot))
    assert p.returncode == 0, report
    assert doc is not None, report
    s = doc["summary"]
    assert s["accepted"] > 400, report  # ~500 offered: 100 in the ramp, 400 held
    assert s["expected_deliveries"] == s["accepted"] * 3, report
    assert s["delivered"] == s["expected_deliveries"], report
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["reordered"] == 0, report
    assert s["errors"] == 0 and s["rejected_total"] == 0, report
    lat = s["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], report
    # an HTTP ack splits into waiting for a free connection and the answer; a WebSocket send has no such split
    parts = s["ack_parts_ms"]
    if send == "http":
        assert 0 <= parts["wait_p99"] <= s["ack_latency_ms"]["p99"] * 1.01, report
        assert 0 < parts["answer_p50"] <= parts["answer_p99"] <= s["ack_latency_ms"]["p99"] * 1.01, report
    else:
        assert parts == {"wait_p99": None, "answer_p50": None, "answer_p99": None}, report
    assert len(doc["series"]) >= 3, report
    assert sum(pt["offered"] for pt in doc["series"]) == s["offered"], report
    # the generator's own CPU, to tell whether it set a rate's limit
    assert s["generator_cpu_s"]["own"] > 0 and s["generator_cpu_s"]["listener_processes"] >= 0, report
    # natter's /metrics is scraped each second for the lag panel
    lags = [pt["consumer_lag"] for pt in doc["series"] if pt["consumer_lag"] is not None]
    assert len(lags) >= 2 and all(v >= 0 for v in lags), report
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", report
    # one process, every socket open at once, the server's memory read around them
    assert s["listener_processes"] == 0 and s["sockets_open"] == 3 and s["reconnects"] == 0, report
    assert s["connect_rate"] > 0 and s["server_rss_per_socket_bytes"] is not None, report
    assert [t["target"] for t in s["targets"]] == [srv.base], report
    assert any(pt["server_rss_bytes"] is not None for pt in doc["series"]), report
    assert s["server_rss_peak_bytes"] == max(pt["server_rss_bytes"] for pt in doc["series"]
                                             if pt["server_rss_bytes"] is not None), report
    # the last reading of the server's CPU came once the store had caught up (on Kafka it trails the pushes)
    assert s["store_lag_end"] == 0 and s["store_drain_s"] >= 0, report


def test_ws_sends_keep_within_the_servers_pending_bound(server_factory, tmp_path):
    """--send ws keeps at most --ws-window sends unanswered per socket: against a natter that closes a
    socket past two pending sends, a window of two is never closed, however long the store takes."""
    srv = server_factory(args=["--ws-pending", "2"])
    p, doc, report = run_load(srv, tmp_path, "--scenario", "seed", "--listeners", "2", "--send", "ws",
                              "--ws-window", "2", "--stages", "200:1s,200:1s")
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["errors"] == 0 and s["rejected_total"] == 0 and s["accepted"] == s["offered"], report
    assert_exactly_once(s, report)
    text = requests.get(srv.base + "/metrics", timeout=5).text
    assert "\nnatter_websockets_flood_closed_total " in text
    assert _metric(text, "natter_websockets_flood_closed_total") == 0, report


def test_a_run_without_listeners_leaves_the_servers_metrics_unknown(server_factory, tmp_path):
    """sendonly opens no listener, so no milestone reads the target's /metrics: its CPU and memory
    must say unknown (null), not 0 — scripts/bench-load then takes the server's CPU from /proc (the
    anchor's CPU per message read 0.0 while they were 0)."""
    srv = server_factory()
    p, doc, report = run_load(srv, tmp_path, "--scenario", "sendonly", "--stages", "50:1s")
    assert doc is not None, report
    (t,) = doc["summary"]["targets"]
    for key in ("cpu_before_s", "cpu_open_s", "cpu_end_s", "rss_before_bytes", "rss_open_bytes", "rss_end_bytes"):
        assert t[key] is None, (key, report)
    s = doc["summary"]
    assert s["store_drain_s"] is None and s["store_lag_end"] is None, report


def test_listeners_in_child_processes_reach_the_same_verdict(server_factory, tmp_path):
    """300 sockets (150 users with 2 tabs, rooms of 5) with at most 100 per process: three listener
    processes, whose records merge into one exactly-once, in-order verdict (after a second held idle)."""
    srv = server_factory(args=CHEAP_HASHES)
    p, doc, report = run_load(srv, tmp_path, "--scenario", "conns", "--conns", "300", "--tabs", "2",
                              "--sockets-per-process", "100", "--idle", "1s", "--stages", "100:1s,100:2s")
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["listener_processes"] == 3 and s["listeners"] == 300 and s["users"] == 150, report
    assert s["idle_s"] >= 1 and s["idle_server_cpu_s"] is not None, report
    assert s["chats"] == 30 and s["sockets_open"] == 300, report
    assert_exactly_once(s, report)
    assert s["expected_deliveries"] == s["accepted"] * 10, report  # 5 members × 2 tabs
    assert s["latency_ms"]["p50"] > 0 and s["connect_rate"] > 0, report


def test_listeners_reconnect_and_catch_up_after_a_restart(server_factory, tmp_path):
    """natter restarts mid-run (every socket closed with 1001, posts refused meanwhile): each listener,
    in two child processes, reconnects, reads what it missed from history, and every accepted message
    still arrives exactly once at every listener."""
    srv = server_factory(args=CHEAP_HASHES)
    out = tmp_path / "load.json"
    cmd, env = load_cmd([srv], out, "--scenario", "seed", "--listeners", "4", "--sockets-per-process", "2",
                        "--stages", "100:1s,100:9s", "--drain", "30s", "--quiet")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while _metric(requests.get(srv.base + "/metrics", timeout=2).text, "natter_messages_posted_total") < 100:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        srv.check_stop()
        srv.start(port=srv.port)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    p, doc, report = finished(cmd, proc, stdout, stderr, out)
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["listener_processes"] == 2, report
    assert s["reconnects"] >= 4, report
    assert_exactly_once(s, report)
    assert s["catchup_failed"] == 0, report


def test_conns_spreads_over_two_targets(server_factory, tmp_path):
    """conns over two targets: users, their tabs and rooms' members spread over both. On Kafka +
    Cassandra the targets are two nodes of one cluster; elsewhere (nodes that share nothing) one
    server is given twice, which exercises the same spreading."""
    if KAFKA and CQL:
        a = server_factory(args=CHEAP_HASHES + ["--node-id", "1"], name="node1")
        b = server_factory(args=CHEAP_HASHES + ["--node-id", "2"], name="node2", log_id=a.log_id)
    else:
        a = b = server_factory(args=CHEAP_HASHES)
    p, doc, report = run_load(a, tmp_path, "--scenario", "conns", "--conns", "120", "--tabs", "2",
                              "--room-size", "3", "--stages", "60:1s,60:2s", "--drain", "10s", targets=[a, b])
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["listeners"] == 120 and s["users"] == 60 and s["chats"] == 20, report
    assert [t["target"] for t in s["targets"]] == [a.base, b.base], report
    assert_exactly_once(s, report)
    assert s["expected_deliveries"] == s["accepted"] * 6, report  # 3 members × 2 tabs


def test_conns_usage_errors(server_factory, tmp_path):
    srv = server_factory()
    p, _, report = run_load(srv, tmp_path, "--scenario", "conns", "--conns", "7", "--tabs", "2")
    assert p.returncode == 2 and "multiple of --tabs" in p.stderr, report
    p, _, report = run_load(srv, tmp_path, "--scenario", "seed", "--conns", "64")
    assert p.returncode == 2 and "--http-conns" in p.stderr, report


def test_bad_stages_is_a_usage_error(server_factory, tmp_path):
    srv = server_factory()
    p, doc, report = run_load(srv, tmp_path, "--scenario", "seed", "--stages", "200:1x")
    assert p.returncode == 2, report
    assert "stage 1" in p.stderr, report


@pytest.fixture
def seed_api(request):
    """Starts seed_api_server.py with the given extra arguments."""
    procs = []

    def start(*args):
        port = free_port()
        script = os.path.join(os.path.dirname(__file__), "seed_api_server.py")
        p = subprocess.Popen([sys.executable, script, str(port), *args], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return types.SimpleNamespace(base=f"http://127.0.0.1:{port}")

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)
        p.stdout.close()


def test_seed_api_run_measures_the_original_api(seed_api, tmp_path):
    p, doc, report = run_load(seed_api(), tmp_path, "--api", "seed", "--scenario", "seed", "--listeners", "3",
                              "--stages", "200:1s,200:2s")
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["accepted"] > 400 and s["rejected_total"] == 0 and s["errors"] == 0, report
    assert s["delivered"] == s["expected_deliveries"] == s["accepted"] * 3, report
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["reordered"] == 0, report
    assert s["foreign"] == 0 and s["id_mismatch"] == 0, report  # every push carried a timeuuid we read
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["max"], report
    # its lag is consumer_lag; it has no process metrics
    assert any(pt["consumer_lag"] is not None for pt in doc["series"]), report
    assert s["server_rss_per_socket_bytes"] is None, report


@pytest.mark.parametrize("fault,field", [("drop", "lost"), ("swap", "reordered"), ("dup", "duplicated")])
def test_seed_api_faults_are_seen(seed_api, tmp_path, fault, field):
    p, doc, report = run_load(seed_api("--fault", fault, "--every", "25"), tmp_path, "--api", "seed",
                              "--scenario", "seed", "--listeners", "2", "--stages", "200:1s,200:1s")
    assert p.returncode == 1, report
    s = doc["summary"]
    assert s[field] >= s["accepted"] // 25 - 1 > 0, report
    assert "FAILED" in p.stderr, report


def test_seed_api_refuses_ws_sends(seed_api, tmp_path):
    p, _, report = run_load(seed_api(), tmp_path, "--api", "seed", "--scenario", "seed", "--send", "ws")
    assert p.returncode == 2 and "--send ws" in p.stderr, report


def test_sendmax_steps_until_answers_fail(server_factory, tmp_path):
    """sendmax (the anchor's max) judges a step by the answers: natter refuses the dummy token, so
    not one step holds, the first rate's nor its run again."""
    srv = server_factory()
    p, doc, report = run_load(srv, tmp_path, "--scenario", "sendmax", "--stages", "100:1s", "--drain", "0.2s")
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["max_rate_held"] == 0 and [st["rate"] for st in s["steps"]] == [100, 100], report
    assert [st.get("again", False) for st in s["steps"]] == [False, True], report
    assert not any(st["held"] for st in s["steps"]) and s["rejected"] == {"401": s["offered"]}, report


def test_max_climbs_then_splits_the_gap(server_factory, tmp_path):
    """max climbs by x1.25 until a rate does not hold twice in a row (a missed step runs once more at
    its rate, marked "again", and the climb goes on if that one holds), then splits the gap between
    the last rate held and the rate missed twice at its geometric middle twice, keeping the half each
    middle's step decides. natter's rate limit (60 posts a second for the one sender, no burst)
    makes the climb miss a rate soon, twice; which step misses first (the limit, or a stall of the
    machine's) does not matter here, but stalls in both runs of the very first rate (p99 over 100 ms
    at 20 posts a second) leave no climb to check: such a run is made again, three runs at most."""
    srv = server_factory(args=["--rate-limit", "60", "--rate-burst", "1"])

    def c_round(x):
        return math.floor(x + 0.5)

    for _ in range(3):
        p, doc, report = run_load(srv, tmp_path, "--scenario", "max", "--stages", "20:1s", "--listeners", "2",
                                  "--drain", "0.5s")
        assert p.returncode == 0, report
        s = doc["summary"]
        steps = s["steps"]
        # walk the climb: each step's rate follows from the one before and whether it held
        rate, held, end = 20, None, None
        for i, st in enumerate(steps):
            assert st["rate"] == rate, report
            again = i > 0 and not steps[i - 1]["held"] and not steps[i - 1].get("again", False)
            assert st.get("again", False) == again, report
            if st["held"]:
                held, rate = rate, c_round(rate * 1.25)
            elif again:
                end = i  # missed twice: the climb ends here
                break
        if held is not None:
            break

    assert held is not None and end is not None, report  # 20/s holds, and the limit stops the climb
    missed = steps[end]["rate"]
    splits = steps[end + 1:]
    assert len(splits) == 2, report
    for st in splits:
        assert st["rate"] == c_round(math.sqrt(held * missed)), report
        if st["held"]:
            held = st["rate"]
        else:
            missed = st["rate"]
    assert s["max_rate_held"] == held, report


# --- over TLS -----------------------------------------------------------------


@pytest.fixture
def tls_natter(server_factory, cert, monkeypatch):  # noqa: F811
    """natter serving HTTPS and WSS with the test certificate (cheap hashes: the runs register users)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert[0])  # the fixture's own health checks verify it
    return server_factory(args=CHEAP_HASHES + ["--tls-cert", cert[0], "--tls-key", cert[1]])


def assert_every_listener_resumed(s, report):
    """natter issues session tickets, and the generator has one before any listener opens (from its
    TLS check of the target; a listener process from the parent's, saved before the fork)."""
    assert s["tls"] == {"listener_opens": s["listeners"], "listener_resumed": s["listeners"]}, report


@pytest.mark.parametrize("send,trust", [("http", "ca"), ("ws", "insecure")])
def test_seed_over_https_with_wss_listeners(tls_natter, cert, tmp_path, send, trust):  # noqa: F811
    """seed against https://: setup and posts over HTTPS (or sends over wss://), listeners on wss://,
    the certificate trusted with --ca, or not checked with --insecure."""
    assert tls_natter.base.startswith("https://")
    trust_args = ["--ca", cert[0]] if trust == "ca" else ["--insecure"]
    p, doc, report = run_load(tls_natter, tmp_path, "--scenario", "seed", "--listeners", "3", "--send", send,
                              "--stages", "100:1s,100:1s", *trust_args)
    assert p.returncode == 0, report
    s = doc["summary"]
    assert_exactly_once(s, report)
    assert s["expected_deliveries"] == s["accepted"] * 3 and s["errors"] == 0, report
    assert s["targets"][0]["target"] == tls_natter.base, report
    # the per-second scrape of /metrics goes over HTTPS too
    assert any(pt["consumer_lag"] is not None for pt in doc["series"]), report
    assert_every_listener_resumed(s, report)


def test_listener_processes_over_wss(tls_natter, cert, tmp_path):  # noqa: F811
    """60 wss:// sockets, at most 20 a process: three listener processes, each with its own TLS context."""
    p, doc, report = run_load(tls_natter, tmp_path, "--scenario", "conns", "--conns", "60", "--tabs", "2",
                              "--sockets-per-process", "20", "--stages", "50:1s,50:1s", "--ca", cert[0])
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["listener_processes"] == 3 and s["sockets_open"] == 60, report
    assert_exactly_once(s, report)
    assert_every_listener_resumed(s, report)


def test_untrusted_certificate_stops_the_run(tls_natter, tmp_path):
    """The system's CAs, or a CA file of another certificate, do not vouch for the test certificate:
    any scenario stops before its setup with status 2 and a reason."""
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tmp_path / "other.key"), "-out", str(other), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    for args in (["--scenario", "seed"], ["--scenario", "seed", "--ca", str(other)],
                 ["--scenario", "sendonly", "--ca", str(other)]):
        p, doc, report = run_load(tls_natter, tmp_path, *args, "--stages", "100:1s")
        assert p.returncode == 2, report
        assert f"{tls_natter.base}: TLS: certificate verify failed: self-signed certificate" in p.stderr, report
        assert "--ca FILE" in p.stderr and doc is None, report
    p, _, report = run_load(tls_natter, tmp_path, "--scenario", "seed", "--ca", str(tmp_path / "missing.pem"))
    assert p.returncode == 2 and "missing.pem" in p.stderr, report
