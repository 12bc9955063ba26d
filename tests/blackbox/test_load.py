"""natter-load against a real natter: a short seed run at a low rate must
deliver every accepted message to every listener exactly once, in order.

Environment: NATTER_LOAD_BIN, the generator (default <repo>/build/natter-load).
"""

import json
import os
import subprocess

import pytest

from conftest import REPO

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
    p, doc, report = run_load(srv, tmp_path, "--scenario", "seed", "--listeners", "3",
                              "--stages", "200:1s,200:2s", "--send", send)
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


def test_bad_stages_is_a_usage_error(server_factory, tmp_path):
    srv = server_factory()
    p, doc, report = run_load(srv, tmp_path, "--scenario", "seed", "--stages", "200:1x")
    assert p.returncode == 2, report
    assert "stage 1" in p.stderr, report
