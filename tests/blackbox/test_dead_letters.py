"""A record the store refuses for good, on Kafka: it goes to the dead-letter
topic (<topic>-dead-letters) with a metric and a log line, the rest of its
batch is stored, and its partition moves on.

The refusal is made with the fault layer (core/fault.h): the store's batch
write fails with "invalid" (what Cassandra's Invalid answer becomes), first
for the batch, then for the record stored alone. On the local log a record is
answered only once stored, so a refusal goes back to its poster as 503
(tests/unit/test_consumer.c); this file is for Kafka's pass of the suite.
The engine test tests/engine/test_log_kafka.c reads the topic back."""

import re
import time

import pytest

from conftest import KAFKA, metric, register, wait_drained

pytestmark = pytest.mark.skipif(not KAFKA, reason="dead letters are the Kafka log's: NATTER_TEST_KAFKA")


def wait_metric(srv, name, value, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(srv.base, name) == value:
            return True
        time.sleep(0.2)
    return False


def test_a_record_the_store_refuses_goes_to_the_dead_letters(server_factory):
    srv = server_factory(env={"NATTER_FAULTS": "store.messages_insert:nth=1,count=2,rc=inval"})
    alice, bob = register(srv, "alice"), register(srv, "bob")
    cid = alice.create_chat(members=[bob])["id"]
    refused = alice.api.post_message(cid, "the store will refuse this one")  # 202: the broker has it
    assert wait_metric(srv, "natter_dead_letters_total", 1), srv.stderr_text()[-3000:]
    assert re.search(rf"dead letter: record {refused['id']} \(chat {cid}, partition \d+, offset \d+\) "
                     r"refused by the store: the store refused it: invalid argument", srv.stderr_text()), srv.stderr_text()[-3000:]

    # the partition moved on: what follows is stored, and the refused record is not there
    after = [alice.api.post_message(cid, f"after {i}")["id"] for i in range(3)]
    wait_drained(srv.base)
    assert [m["id"] for m in bob.api.all_history(cid)] == after
    assert metric(srv.base, "natter_dead_letters_total") == 1
    r = bob.api.get("/readyz")
    assert r.status_code == 200, r.text
