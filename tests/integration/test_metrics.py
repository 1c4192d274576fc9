"""Metrics and probes of a running stage, read over HTTP as Prometheus and the kubelet do.

The lag metric is compared with the truth: the log-end offset minus the group's
committed offset as an AdminClient computes it, independently of the stage's own
LagMonitor, with a known backlog held in place by an exhausted provider quota
(lookups pause and records wait, so the commits cannot move), then released.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from processor.entrypoints.bootstrap import assemble
from tests.harness import (
    Names,
    caught_up,
    end_offsets,
    produce,
    running_stage,
    wait_for,
)
from tests.promtools import free_port, promtool

PARTITIONS = 3


def admin_lag(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """What ``kafka-consumer-groups --describe`` shows: log-end minus committed offset per
    partition (None where the group has committed nothing)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    request = [ConsumerGroupTopicPartitions(group, parts)]
    committed = {tp.partition: tp.offset for tp in
                 admin.list_consumer_group_offsets(request)[group].result(10).topic_partitions}
    ends = {tp.partition: future.result(10).offset for tp, future in
            admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}).items()}
    return {p: ends[p] - committed[p] if committed[p] >= 0 else None for p in ends}


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of ``/metrics`` by sample name."""
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    answer.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def metric_lag(port: int, topic: str) -> dict[int, int]:
    return {int(labels["partition"]): int(value)
            for labels, value in scrape(port).get("enrichment_consumer_lag_records", [])
            if labels["topic"] == topic}


def test_lag_metric_equals_the_admin_clients_figure(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    port = free_port()
    settings = names.settings(kafka_bootstrap, clearbit.url, metrics_port=port,
                              lag_interval=0.3, quota_retry_interval=0.3,
                              rate_limit_per_minute=0)
    produce(kafka_bootstrap, names.input, [
        (f"u{i}".encode(), identify(person_email(i), user_id=f"u{i}")) for i in range(30)])
    with running_stage(settings):
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, PARTITIONS), 30,
                 "the first batch committed")
        wait_for(lambda: metric_lag(port, names.input) == dict.fromkeys(range(PARTITIONS), 0),
                 10, "the lag metric at 0 after the first batch")
        before = end_offsets(kafka_bootstrap, names.input, PARTITIONS)

        # A backlog the stage cannot work off: every lookup answers 402 and waits.
        clearbit.set_quota_exhausted(True)
        produce(kafka_bootstrap, names.input, [
            (f"v{i}".encode(), identify(person_email(1000 + i), user_id=f"v{i}"))
            for i in range(90)])
        after = end_offsets(kafka_bootstrap, names.input, PARTITIONS)
        backlog = {p: after[p] - before[p] for p in range(PARTITIONS)}
        assert sum(backlog.values()) == 90
        assert all(backlog.values())  # every partition has some

        wait_for(lambda: metric_lag(port, names.input) == backlog, 15,
                 f"the lag metric to show the backlog {backlog}")
        for _ in range(4):  # stable, and the truth, at several moments
            truth = admin_lag(kafka_bootstrap, names.group, names.input)
            assert truth == backlog
            assert metric_lag(port, names.input) == truth
            time.sleep(0.3)

        clearbit.set_quota_exhausted(False)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, PARTITIONS), 30,
                 "the backlog worked off")
        zero = dict.fromkeys(range(PARTITIONS), 0)
        wait_for(lambda: metric_lag(port, names.input) == zero, 10, "the lag metric back at 0")
        assert admin_lag(kafka_bootstrap, names.group, names.input) == zero
        measured = scrape(port)["enrichment_consumer_lag_measured_timestamp_seconds"]
        assert time.time() - measured[0][1] < 5


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return -1


def test_probes_follow_the_stage_lifecycle(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    port = free_port()
    settings = names.settings(kafka_bootstrap, clearbit.url, metrics_port=port,
                              lag_interval=0.5)
    base = f"http://127.0.0.1:{port}"
    assembly = assemble(settings)
    assert assembly.metrics is not None
    assembly.metrics.start()
    try:
        # Serving, but the loop has not started: neither live nor ready.
        assert _status(f"{base}/healthz") == 503
        assert _status(f"{base}/readyz") == 503
        assembly.lag.start()
        thread = threading.Thread(target=assembly.stage.run, daemon=True)
        thread.start()
        ready_with: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ready_with:
            if _status(f"{base}/readyz") == 200:
                ready_with.append(len(assembly.lag.partitions))
            time.sleep(0.01)
        assert ready_with, "never ready"
        assert ready_with[0] == PARTITIONS  # ready only once the assignment arrived
        assert _status(f"{base}/healthz") == 200

        assembly.stage.request_stop()
        thread.join(30)
        assert not thread.is_alive()
        assert _status(f"{base}/healthz") == 503
        assert _status(f"{base}/readyz") == 503
    finally:
        assembly.stage.request_stop()
        assembly.lag.stop()
        assembly.metrics.stop()


def test_probes_fail_after_a_fatal_error(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    port = free_port()
    settings = names.settings(kafka_bootstrap, clearbit.url, metrics_port=port,
                              clearbit_api_key="sk_refused")
    produce(kafka_bootstrap, names.input, [(b"k", identify("ada@initech.example", user_id="u"))])
    with running_stage(settings, expect_failure=True) as stage:
        stage.thread.join(30)
        assert not stage.thread.is_alive()
        assert stage.errors
        assert _status(f"http://127.0.0.1:{port}/healthz") == 503
        assert _status(f"http://127.0.0.1:{port}/readyz") == 503


def test_no_label_carries_an_email_a_user_id_or_a_key(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    port = free_port()
    settings = names.settings(kafka_bootstrap, clearbit.url, metrics_port=port)
    # Keys and user ids carry a marker ("zq-") no metric name or topic contains.
    items: list[tuple[bytes | None, Any]] = [
        (f"zq-key-{i}".encode(), identify(f"Person.{i}@Initech.example", user_id=f"zq-id-{i}"))
        for i in range(20)]
    items += [(b"zq-key-x", identify(f"notfound{i}@initech.example", user_id="zq-id-x"))
              for i in range(5)]
    items += [(b"zq-key-y", identify(f"invalid{i}@initech.example", user_id="zq-id-y"))
              for i in range(5)]
    items += [(b"zq-key-z", identify("broken@@example", user_id="zq-id-z")),
              (b"zq-key-z", b"{not json"), (b"zq-key-z", identify(None, user_id="zq-id-z"))]
    produce(kafka_bootstrap, names.input, items)
    with running_stage(settings):
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, PARTITIONS), 30,
                 "everything committed")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(samples) > 50
    for sample in samples:
        for value in sample.labels.values():
            assert "@" not in value, sample
            assert "zq-" not in value, sample
            assert "sk_" not in value, sample
    assert "@" not in text
    assert "zq-" not in text
    result = promtool("check", "metrics", stdin=text.encode())
    assert result.returncode == 0, result.stdout + result.stderr
