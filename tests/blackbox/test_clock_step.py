"""A wall clock stepped back (an NTP step, a VM restored) while natter runs:
what counts time spans — the rate limits — keeps counting. The server runs
with an LD_PRELOAD shim (shim/clockshift.c) that offsets its wall clock by
the seconds a file holds."""

import os
import subprocess
import time

import pytest

from conftest import Server, assert_error, register

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def shifted(tmp_path):
    so = tmp_path / "clockshift.so"
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O1", "-o", str(so),
                    os.path.join(HERE, "shim", "clockshift.c"), "-ldl"], check=True)
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    asan = os.environ.get("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    srv = Server(tmp_path, args=["--rate-limit", "1", "--rate-burst", "1"],
                 env={"LD_PRELOAD": str(so), "NATTER_TEST_CLOCK_FILE": str(clock),
                      "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"})
    srv.start()
    yield srv, clock
    srv.check_stop()


def test_rate_limit_refills_after_the_clock_is_set_back(shifted):
    srv, clock = shifted
    alice = register(srv, "alice")
    cid = alice.create_chat()["id"]
    assert alice.api.post(f"/chats/{cid}/messages", {"content": "first"}).status_code == 202
    assert_error(alice.api.post(f"/chats/{cid}/messages", {"content": "too soon"}), 429, "rate_limited")
    clock.write_text("-3600")  # an hour back
    deadline = time.monotonic() + 20
    while True:  # one token a second refills: a post goes through within Retry-After, not in an hour
        r = alice.api.post(f"/chats/{cid}/messages", {"content": "after the step"})
        if r.status_code == 202:
            break
        assert_error(r, 429, "rate_limited")
        assert time.monotonic() < deadline, "the limit did not refill for 20 s after the clock went back an hour"
        time.sleep(float(r.headers["Retry-After"]))
