"""natter-load's --typing: typing indicators sent on the listeners' sockets
alongside the messages. The messages' delivery checks still hold, and the
server counts the indicators it took and pushed."""

import requests

from conftest import _metric
from test_load import CHEAP_HASHES, assert_exactly_once, run_load


def scrape(server):
    return requests.get(server.base + "/metrics", timeout=5).text


def test_rooms_with_typing(server_factory, tmp_path):
    srv = server_factory(args=CHEAP_HASHES)
    before = scrape(srv)
    p, doc, report = run_load(srv, tmp_path, "--scenario", "rooms", "--rooms", "10", "--users", "20",
                              "--stages", "50:1s,50:2s", "--typing", "100")
    assert p.returncode == 0, report
    assert_exactly_once(doc["summary"], report)
    after = scrape(srv)
    grew = lambda name: _metric(after, name) - _metric(before, name)  # noqa: E731
    # ~300 sent over ~3 s: most pass the throttles (20 users, 10 rooms), the rest are counted as dropped
    assert grew("natter_ephemeral_published_total") + grew("natter_typing_dropped_total") >= 100, report
    assert grew("natter_ephemeral_delivered_total") > 0, report


def test_typing_needs_natters_api(server_factory, tmp_path):
    srv = server_factory()
    p, _, report = run_load(srv, tmp_path, "--scenario", "seed", "--api", "seed", "--typing", "10")
    assert p.returncode == 2 and "--typing" in p.stderr, report
