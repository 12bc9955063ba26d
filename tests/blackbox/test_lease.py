"""One identity per node: a node refuses to start, saying why, while another live node holds its
--node-id; a dead node's id is free again (at once on its own data dir, within one lease TTL
elsewhere); a live node's lease keeps /readyz ready."""

import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from conftest import CQL, KAFKA, NATTER_BIN, Server, free_port


def start(data_dir, node_id, ttl_ms=1000, extra=()):
    port = free_port()
    p = subprocess.Popen([NATTER_BIN, "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir), "--node-id",
                          str(node_id), "--node-lease-ttl", str(ttl_ms), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, f"http://127.0.0.1:{port}"


def wait_healthy(p, base, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return False
        try:
            if requests.get(base + "/readyz", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


embedded_only = pytest.mark.skipif(bool(KAFKA or CQL), reason="the embedded store's lease (data dirs sharing "
                                   "one SQLite file)")


@embedded_only
def test_second_node_on_the_same_data_dir_is_refused(tmp_path):
    a, base = start(tmp_path / "d", 7)
    try:
        assert wait_healthy(a, base)
        b, _ = start(tmp_path / "d", 7)
        out, err = b.communicate(timeout=30)
        assert b.returncode != 0
        assert "node id" in err and "data dir" in err, err
        assert requests.get(base + "/readyz", timeout=5).status_code == 200  # the first is undisturbed
    finally:
        stop(a)


@embedded_only
def test_a_second_embedded_node_on_the_same_data_dir_is_refused_whatever_its_id(tmp_path):
    """Its log would be in-process: what it stored would reach none of the first node's sockets."""
    a, base = start(tmp_path / "d", 7)
    try:
        assert wait_healthy(a, base)
        b, _ = start(tmp_path / "d", 8)
        out, err = b.communicate(timeout=30)
        assert b.returncode != 0
        assert "embedded log" in err and "--log kafka" in err, err
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
    finally:
        stop(a)


@embedded_only
def test_a_restart_after_kill_9_takes_its_id_back_at_once(tmp_path):
    a, base = start(tmp_path / "d", 8, ttl_ms=60000)  # a long lease: only its own holder token can take it back
    assert wait_healthy(a, base)
    a.kill()
    a.wait()
    b, base2 = start(tmp_path / "d", 8, ttl_ms=60000)
    try:
        assert wait_healthy(b, base2, timeout=30), b.stderr.read() if b.poll() is not None else "not ready"
    finally:
        stop(b)


def _shared_store(tmp_path, name, src):
    """A second data dir whose store is the first's database (other lock, other holder token)."""
    d = tmp_path / name
    d.mkdir()
    os.symlink(src / "natter.db", d / "natter.db")
    return d


@embedded_only
def test_another_live_holder_is_waited_on_then_refused(tmp_path):
    a, base = start(tmp_path / "a", 9, ttl_ms=1000)
    try:
        assert wait_healthy(a, base)
        other = _shared_store(tmp_path, "b", tmp_path / "a")
        b, _ = start(other, 9, ttl_ms=1000)
        out, err = b.communicate(timeout=60)
        assert b.returncode != 0
        assert "held by another live node" in err, err
    finally:
        stop(a)


@embedded_only
def test_a_node_whose_lease_is_taken_stops_with_a_failure(tmp_path):
    a, base = start(tmp_path / "a", 11, ttl_ms=1000)
    try:
        assert wait_healthy(a, base)
        db = sqlite3.connect(str(tmp_path / "a" / "natter.db"), timeout=10)
        with db:  # another holder, as a node sharing the store that took the id would be
            db.execute("UPDATE node_leases SET holder = 'another-node', expires_at = ? WHERE node_id = 11",
                       (int(time.time() * 1000) + 60000,))
        db.close()
        out, err = a.communicate(timeout=60)
        assert "taken by another node" in err, err
        assert a.returncode == 1, (a.returncode, err[-500:])  # a supervisor sees a failure
    finally:
        stop(a)


@embedded_only
def test_a_signal_ends_the_wait_for_a_lease(tmp_path):
    """An operator's Ctrl-C (or a supervisor's SIGTERM) while a node waits out
    another holder's lease ends the wait at once, not a TTL later."""
    a, base = start(tmp_path / "a", 12, ttl_ms=60000)
    b = None
    try:
        assert wait_healthy(a, base)
        b, _ = start(_shared_store(tmp_path, "b", tmp_path / "a"), 12, ttl_ms=60000)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(b.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not any("leased to another holder" in line for line in lines):
            assert b.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        b.send_signal(signal.SIGINT)
        b.wait(timeout=10)  # its own TTL is a minute
        reader.join(timeout=10)
        assert b.returncode != 0
        assert "while waiting for the lease" in "".join(lines), "".join(lines)
    finally:
        if b is not None:
            stop(b)
        stop(a)


@embedded_only
def test_a_dead_holders_lease_runs_out_and_is_taken(tmp_path):
    a, base = start(tmp_path / "a", 10, ttl_ms=1500)
    assert wait_healthy(a, base)
    a.kill()
    a.wait()
    other = _shared_store(tmp_path, "b", tmp_path / "a")
    b, base2 = start(other, 10, ttl_ms=1500)
    try:
        assert wait_healthy(b, base2, timeout=60), "the dead node's lease never ran out"
    finally:
        stop(b)


@pytest.mark.skipif(not CQL, reason="two nodes sharing a store: on Cassandra")
def test_two_nodes_on_one_store_with_one_id(tmp_path, server_factory):
    """On a shared store (Cassandra, with or without Kafka), a node whose --node-id another live node
    holds exits before it touches the log; once that node is gone (no release: SIGKILL), the id is
    taken after its lease runs out."""
    ttl = ["--node-lease-ttl", "2000"]
    a = server_factory(args=["--node-id", "611"] + ttl, name="a")
    b = Server(tmp_path / "b", args=["--node-id", "611"] + ttl, name="b", log_id=a.log_id)
    os.makedirs(b.data_dir, exist_ok=True)
    cmd = [NATTER_BIN, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", b.data_dir] + b.log_args() + b.args
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "held by another live node" in p.stderr, p.stderr[-2000:]
    assert requests.get(a.base + "/readyz", timeout=5).status_code == 200
    a.kill9()
    b.start()  # waits up to one TTL for the dead node's lease
    assert requests.get(b.base + "/readyz", timeout=10).status_code == 200
    b.check_stop()
