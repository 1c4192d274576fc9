"""The sender as a separate process, killed with SIGKILL again and again while conversions
arrive: each one must count exactly once at both platforms, and every request beyond
that may only carry ids the platform had already seen. ``make soak`` runs it bigger
(CHAOS_SCALE=5)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer
from tests.e2e.chaos import Processor
from tests.e2e.test_chaos import Trickle
from tests.harness import caught_up, read_all, wait_for
from tests.senders import conversion, make_names, outbox_items, sender_env

SCALE = int(os.environ.get("CHAOS_SCALE", "1"))
BATCH = 100  # the servers' request logs name up to 100 event ids: all of a batch


def replays(server: MetaServer | GoogleServer, api: str, expected: set[str]) -> dict[str, int]:
    """Walk the server's log in order: every event id sent, whether the server took it as
    new, and that a repeat only ever carried an id it had seen before."""
    seen: set[str] = set()
    sent = new = 0
    for request in server.requests(api=api):
        if request["status"] != 200:
            continue
        ids = request["event_ids"]
        assert len(ids) == request["events"]  # the log names all of them
        assert set(ids) <= expected
        fresh = set(ids) - seen
        assert request["new"] == len(fresh), request  # the platform agrees which are new
        seen |= fresh
        sent += len(ids)
        new += len(fresh)
    assert seen == expected
    return {"events_sent": sent, "new": new, "repeats": sent - new}


def test_kill_9_ten_times_each_conversion_counts_once(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str,
        tmp_path: Path, meta: MetaServer, google: GoogleServer, report: list[str]) -> None:
    names = make_names(kafka_topics, unique_name, tmp_path)
    kills = 10 * SCALE
    records = [conversion(i) for i in range(5000 * SCALE)]
    expected = {r["conversion_id"] for r in records}
    meta.set_latency(20)
    google.set_latency(20)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    process = Processor(sender_env(kafka_bootstrap, names, meta, google,
                                   META_BATCH_MAX=str(BATCH), GOOGLE_BATCH_MAX=str(BATCH),
                                   PROCESSOR_CONV_LINGER="200ms",
                                   PROCESSOR_COMMIT_INTERVAL="500ms"),
                        command=("conversions", "send"))
    trickle = Trickle(kafka_bootstrap, {names.outbox: outbox_items(records)}, seconds=3.0 * kills)
    trickle.start()
    process.start()
    started = time.monotonic()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 4.0))
            process.kill()
            process.start()
        trickle.finish()
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.outbox, 3), 240,
                 "the sender to catch up")
        assert process.terminate() == 0, process.logs()[-3000:]
    finally:
        process.stop_quietly()
    took = time.monotonic() - started
    at_meta = replays(meta, "events", expected)
    at_google = replays(google, "datamanager", expected)
    assert len(meta.events()) == len(google.events()) == len(records)

    audit: Counter[tuple[str, str]] = Counter()
    statuses: Counter[str] = Counter()
    for message in read_all(kafka_bootstrap, [names.sent, names.dlq]):
        assert message.topic() == names.sent, "nothing may be dead-lettered"
        result: dict[str, Any] = orjson.loads(message.value())
        audit[(result["destination"], result["conversion_id"])] += 1
        statuses[result["status"]] += 1
    assert {key for key, _ in audit.items()} == {
        (d, i) for d in ("meta", "google") for i in expected}
    assert set(statuses) <= {"accepted", "duplicate"}
    report.append(
        f"[chaos] sender kill -9 x{kills} over {len(records)} conversions (seed {seed}, "
        f"{took:.0f}s): unique at Meta {len(meta.events())}, at Google {len(google.events())}; "
        f"events re-sent (ids already seen) Meta {at_meta['repeats']}, Google "
        f"{at_google['repeats']}; audit records {sum(audit.values())} for {len(audit)} "
        f"results; runs {process.runs}")
