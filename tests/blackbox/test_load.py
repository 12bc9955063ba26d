"""natter-load against a real natter: a short seed run at a low rate must
deliver every accepted message to every listener exactly once, in order.
With --api seed against a stand-in for the original design's API
(seed_api_server.py), the same run must measure the same things, and must
see the loss and the reordering that stand-in can inject.

Environment: NATTER_LOAD_BIN, the generator (default <repo>/build/natter-load).
"""

import json
import os
import subprocess
import sys
import types

import pytest

from conftest import REPO, free_port

LOAD_BIN = os.path.abspath(os.environ.get("NATTER_LOAD_BIN", os.path.join(REPO, "build", "natter-load")))


def run_load(server, tmp_path, *args, timeout=120):
    if not os.path.exists(LOAD_BIN):
        pytest.fail(f"load generator {LOAD_BIN} does not exist (build it or set NATTER_LOAD_BIN)")
    out = tmp_path / "load.json"
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=0")
    cmd = [LOAD_BIN, "--target", server.base, "--json", str(out), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    report = f"{' '.join(cmd)}\nexit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    doc = json.loads(out.read_text()) if out.exists() else None
    return p, doc, report


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
    assert lat["p99"] < 500, report
    assert len(doc["series"]) >= 3, report
    assert sum(pt["offered"] for pt in doc["series"]) == s["offered"], report
    # natter's /metrics is scraped each second for the lag panel
    lags = [pt["consumer_lag"] for pt in doc["series"] if pt["consumer_lag"] is not None]
    assert len(lags) >= 2 and all(v >= 0 for v in lags), report
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", report


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
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["max"] < 1000, report
    assert all(pt["consumer_lag"] is None for pt in doc["series"]), report  # it has no /metrics


@pytest.mark.parametrize("fault,field", [("drop", "lost"), ("swap", "reordered")])
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
    not one step holds."""
    srv = server_factory()
    p, doc, report = run_load(srv, tmp_path, "--scenario", "sendmax", "--stages", "100:1s", "--drain", "0.2s")
    assert p.returncode == 0, report
    s = doc["summary"]
    assert s["max_rate_held"] == 0 and len(s["steps"]) == 1, report
    assert s["steps"][0]["held"] is False and s["rejected"] == {"401": s["offered"]}, report
