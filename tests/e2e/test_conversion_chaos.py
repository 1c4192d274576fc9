"""The conversions stage as a real ``processor conversions`` process, killed with SIGKILL
while entries arrive, restarted on the same state directory each time; then every entry
is accounted for. A kill leaves no checkpoint, so each restart wipes the stores it opens
and restores them from their changelogs. ``CHAOS_SCALE`` multiplies the sizes."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conversion_events import Population
from tests.conversion_harness import (
    ConversionAudit,
    ConversionNames,
    audit_conversions,
    make_names,
)
from tests.e2e.chaos import Processor, conversions_env
from tests.harness import Trickle, left_to_read

SCALE = int(os.environ.get("CHAOS_SCALE", "1"))


def restored_records(process: Processor) -> list[int]:
    """Changelog records each run applied to its stores, from its JSON log."""
    runs = []
    for path in sorted(process.log_dir.glob("run-*.log")):
        total = 0
        for line in path.read_text(errors="replace").splitlines():
            if "restored store" not in line:
                continue
            try:
                message = json.loads(line)["event"]
            except (ValueError, KeyError, TypeError):
                continue
            total += int(message.split(": ", 1)[1].split(" ", 1)[0])
        runs.append(total)
    return runs


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               process: Processor) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"log tail:\n{process.logs()[-3000:]}")
        assert process.alive(), process.logs()[-3000:]
        time.sleep(1.0)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_kill_9_ten_times_during_5000_entries_gives_each_entry_one_id(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str,
        tmp_path: Path, delivery: str, report: list[str]) -> None:
    kills = 10 * SCALE
    names: ConversionNames = make_names(kafka_topics, unique_name, tmp_path)
    population = Population(entrants=5000 * SCALE, others=500 * SCALE, now=time.time())
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    exactly_once = delivery == "exactly-once"
    process = Processor(conversions_env(
        kafka_bootstrap, names, tmp_path / "state", PROCESSOR_DELIVERY=delivery,
        PROCESSOR_TRANSACTIONAL_ID=f"{names.group}-tx", PROCESSOR_COMMIT_INTERVAL="500ms",
        PROCESSOR_MAX_BUFFERED="2000"), command=("conversions",))
    trickle = Trickle(kafka_bootstrap, {names.events: population.pages(),
                                        names.identifies: population.identifies()},
                      seconds=8.0 * kills)
    started = time.monotonic()
    trickle.start()
    process.start()
    result: ConversionAudit | None = None

    def complete() -> bool:
        nonlocal result
        if left_to_read(kafka_bootstrap, names.group,
                        [names.events, names.identifies, f"{names.prefix}.by-anon",
                         f"{names.prefix}.by-person"]):
            return False
        # Caught up; the last entries wait out their settle delay.
        result = audit_conversions(kafka_bootstrap, names, population,
                                   read_committed=exactly_once)
        return not result.missing

    try:
        for _ in range(kills):
            # Killed while it works: after the group gave it partitions (a restart waits
            # out the killed member's session first), while it restores and catches up.
            process.wait_for_log(f"assigned {unique_name}", 90)
            time.sleep(rng.uniform(0.5, 3.0))
            process.kill()
            process.start()
        trickle.finish()
        wait_until(complete, 240 * SCALE, "every entry's conversion", process)
        assert process.terminate() == 0, process.logs()[-3000:]
    finally:
        process.stop_quietly()
    result = audit_conversions(kafka_bootstrap, names, population, read_committed=exactly_once)
    restored = restored_records(process)
    report.append(result.line(
        f"conversions, kill -9 x{kills}, {delivery} (seed {seed}; {sum(restored)} changelog "
        f"records restored, by {sum(1 for r in restored if r)} of {process.runs} runs; "
        f"{time.monotonic() - started:.0f}s)"))
    assert sum(1 for r in restored[1:] if r) >= kills // 2  # restarts rebuilt their stores
    assert result.missing == []
    assert result.unexpected == []  # no id for a non-entry, no second id for an entry
    assert result.foreign_clicks == 0
    if exactly_once:
        assert result.duplicates == 0
