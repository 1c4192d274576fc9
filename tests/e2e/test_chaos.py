"""The chaos suite: the real processor as separate processes on the real broker, killed,
stopped, joined, with the broker restarted and the provider down; then every input is
accounted for. ``make soak`` runs the same scenarios bigger (CHAOS_SCALE=5)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from processor.devkit.broker import LocalKafka
from processor.devkit.clearbit_server import ClearbitServer
from tests.e2e.chaos import Processor, audit, chaos_inputs, processor_env
from tests.harness import (
    Names,
    Trickle,
    caught_up,
    headers_of,
    produce,
    read,
    wait_for,
)

SCALE = int(os.environ.get("CHAOS_SCALE", "1"))
MAX_BUFFERED = 2000


def finish_and_audit(bootstrap: str, names: Names, items: list[Any], process: Processor,
                     exactly_once: bool, timeout: float = 240,
                     dead_emails: frozenset[str] = frozenset()) -> Any:
    try:
        wait_for(lambda: caught_up(bootstrap, names.group, names.input, 3), timeout,
                 "the processor to catch up")
        assert process.terminate() == 0, process.logs()[-3000:]
    finally:
        process.stop_quietly()
    return audit(bootstrap, names, items, read_committed=exactly_once, dead_emails=dead_emails)


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_kill_9_ten_times_loses_nothing(kafka_bootstrap: str, names: Names,
                                        clearbit: ClearbitServer, delivery: str,
                                        report: list[str]) -> None:
    kills = 10 * SCALE
    items = chaos_inputs(20_000 * SCALE)
    clearbit.set_latency(20)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    env = processor_env(kafka_bootstrap, names, clearbit.url, PROCESSOR_DELIVERY=delivery,
                        PROCESSOR_TRANSACTIONAL_ID=f"{names.group}-tx",
                        PROCESSOR_MAX_BUFFERED=str(MAX_BUFFERED),
                        PROCESSOR_COMMIT_INTERVAL="500ms")
    process = Processor(env)
    trickle = Trickle(kafka_bootstrap, {names.input: items}, seconds=3.0 * kills)
    trickle.start()
    process.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 4.0))
            process.kill()
            process.start()
        trickle.finish()
    except BaseException:
        process.stop_quietly()
        raise
    result = finish_and_audit(kafka_bootstrap, names, items, process,
                              exactly_once=delivery == "exactly-once")
    report.append(result.line(f"kill -9 x{kills}, {delivery} (seed {seed})"))
    assert result.lost == []
    assert result.order_violations == 0
    assert result.dead_lettered == len(items) // 50
    if delivery == "exactly-once":
        assert result.duplicated_outputs == 0
    else:
        assert result.duplicated_outputs <= kills * MAX_BUFFERED


def test_sigterm_under_load_exits_zero_and_loses_nothing(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, report: list[str]) -> None:
    items = chaos_inputs(5000 * SCALE)
    clearbit.set_latency(200)  # 32 in flight: 160 lookups/s, so 2,000 take about 12 s
    env = processor_env(kafka_bootstrap, names, clearbit.url, PROCESSOR_SHUTDOWN_TIMEOUT="20s")
    process = Processor(env)
    produce(kafka_bootstrap, names.input, items)
    process.start()
    time.sleep(5)
    assert not caught_up(kafka_bootstrap, names.group, names.input, 3)  # work in flight
    started = time.monotonic()
    code = process.terminate(timeout=40)
    took = time.monotonic() - started
    assert code == 0, process.logs()[-3000:]
    assert took < 25  # within PROCESSOR_SHUTDOWN_TIMEOUT, with time to spare
    left = not caught_up(kafka_bootstrap, names.group, names.input, 3)
    if left:  # what the drain could not finish in time is processed by a new run
        process.start()
        result = finish_and_audit(kafka_bootstrap, names, items, process, exactly_once=False)
    else:
        result = audit(kafka_bootstrap, names, items, read_committed=False)
    report.append(result.line(f"SIGTERM under load (exit 0 in {took:.1f}s, "
                              f"{'a restart finished the rest' if left else 'drained all'})"))
    assert result.lost == []
    assert result.duplicated_outputs == 0
    assert result.order_violations == 0


def test_a_second_instance_joining_and_leaving_loses_nothing(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, report: list[str]) -> None:
    items = chaos_inputs(10_000 * SCALE)
    clearbit.set_latency(20)
    env = processor_env(kafka_bootstrap, names, clearbit.url)
    first, second = Processor(env), Processor(env)
    trickle = Trickle(kafka_bootstrap, {names.input: items}, seconds=20)
    trickle.start()
    first.start()
    try:
        time.sleep(5)
        second.start()
        time.sleep(8)
        assert second.terminate() == 0, second.logs()[-3000:]
        trickle.finish()
    finally:
        second.stop_quietly()
    result = finish_and_audit(kafka_bootstrap, names, items, first, exactly_once=False)
    assert "assigned" in second.logs()  # it really took part
    report.append(result.line("second instance joins then leaves"))
    assert result.lost == []
    assert result.order_violations == 0


def test_a_broker_restart_mid_run_loses_nothing(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
        local_kafka: LocalKafka, report: list[str]) -> None:
    items = chaos_inputs(5000 * SCALE)
    clearbit.set_latency(20)
    process = Processor(processor_env(kafka_bootstrap, names, clearbit.url))
    produce(kafka_bootstrap, names.input, items[: len(items) // 2])
    process.start()
    try:
        time.sleep(4)
        local_kafka.restart()
        produce(kafka_bootstrap, names.input, items[len(items) // 2:])
    except BaseException:
        process.stop_quietly()
        raise
    assert process.alive(), process.logs()[-3000:]
    result = finish_and_audit(kafka_bootstrap, names, items, process, exactly_once=False)
    report.append(result.line("broker restarted mid-run"))
    assert result.lost == []
    assert result.order_violations == 0


def test_provider_down_then_back_dead_letters_nothing_and_enriches_all(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, report: list[str]) -> None:
    items = chaos_inputs(3000 * SCALE)
    process = Processor(processor_env(kafka_bootstrap, names, clearbit.url,
                                      PROCESSOR_BREAKER_RESET="2s"))
    produce(kafka_bootstrap, names.input, items[:500])
    process.start()
    try:
        time.sleep(3)
        clearbit.set_outage("refuse", seconds=6)  # connections refused, then back by itself
        produce(kafka_bootstrap, names.input, items[500:])
        time.sleep(4)
        clearbit.set_outage("status", status=503)  # then 5xx for a while
        time.sleep(4)
        clearbit.set_outage("off")
    except BaseException:
        process.stop_quietly()
        raise
    result = finish_and_audit(kafka_bootstrap, names, items, process, exactly_once=False)
    report.append(result.line("provider refused, then 503, then back"))
    assert result.lost == []
    assert result.dead_lettered == len(items) // 50  # only the invalid emails
    statuses = clearbit.stats()["by_status"]
    assert statuses.get("503", 0) + statuses.get("0", 0) > 0  # the outage was really seen


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_poison_answer_among_5000_events_and_a_kill_9_lose_nothing(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, delivery: str,
        report: list[str]) -> None:
    # Under the 1 MiB answer cap, so it is read and mapped, but its output is over what
    # the output topic takes: the record that used to stop the stage at every restart.
    poison = "poison@initech.example"
    clearbit.set_rule(poison, 200, size=1_048_000)
    items = chaos_inputs(5000 * SCALE)
    middle = len(items) // 2
    _, event = items[middle]
    event["traits"]["email"] = poison
    clearbit.set_latency(20)
    env = processor_env(kafka_bootstrap, names, clearbit.url, PROCESSOR_DELIVERY=delivery,
                        PROCESSOR_TRANSACTIONAL_ID=f"{names.group}-tx",
                        PROCESSOR_MAX_BUFFERED=str(MAX_BUFFERED),
                        PROCESSOR_COMMIT_INTERVAL="500ms")
    process = Processor(env)
    trickle = Trickle(kafka_bootstrap, {names.input: items}, seconds=10.0)
    trickle.start()
    process.start()
    try:
        time.sleep(5.5)  # the poison is produced at about 5 s
        assert process.alive(), process.logs()[-3000:]
        process.kill()
        process.start()
        trickle.finish()
    except BaseException:
        process.stop_quietly()
        raise
    result = finish_and_audit(kafka_bootstrap, names, items, process,
                              exactly_once=delivery == "exactly-once",
                              dead_emails=frozenset({poison}))
    report.append(result.line(f"poison answer among {len(items)}, kill -9, {delivery}"))
    assert result.lost == []
    assert result.order_violations == 0
    assert result.dead_lettered == len(items) // 50 + 1  # the invalid emails and the poison
    letters = read(kafka_bootstrap, [names.dlq], until=lambda m: False, timeout=5)
    reasons = Counter(headers_of(m)["__enrichment.errors.reason"] for m in letters)
    assert reasons["output_too_large"] >= 1
    if delivery == "exactly-once":
        assert result.duplicated_outputs == 0
