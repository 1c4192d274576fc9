"""PrometheusSensor and MetricsServer without a broker: names, labels, registries, probes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import prometheus_client
import pytest
from prometheus_client.exposition import generate_latest

from processor.adapters.prometheus import PrometheusSensor
from processor.adapters.runtime_metrics import MetricsServer
from tests.fakes import FakeClock

# Every label the sensor may use: none can carry an email, a user id or a key.
ALLOWED_LABELS = {"outcome", "reason", "result", "provider", "status", "topic", "partition",
                  "version"}


def exercised(sensor: PrometheusSensor) -> PrometheusSensor:
    sensor.consumed(3)
    sensor.outcomes({("enriched", ""): 2, ("skipped", "no_email"): 1})
    sensor.cache(1, 1, 1)
    sensor.lookup("clearbit", "200", 0.2)
    sensor.retry("clearbit", "timeout")
    sensor.rate_limited_wait(0.05)
    sensor.lookups_in_flight(2)
    sensor.buffered(5, False)
    sensor.end_to_end([0.3, -1.0])
    sensor.produce_error()
    sensor.committed(True, 1_700_000_000.0)
    sensor.lag({("in", 0): 4, ("in", 1): 0})
    sensor.state(alive=True, ready=True)
    return sensor


def test_each_sensor_has_its_own_registry_and_none_touches_the_global_one() -> None:
    first, second = PrometheusSensor(), PrometheusSensor()
    first.consumed(5)
    assert first.registry is not second.registry
    assert second.registry.get_sample_value("enrichment_records_consumed_total") == 0
    assert first.registry.get_sample_value("enrichment_records_consumed_total") == 5
    assert not [m for m in prometheus_client.REGISTRY.collect()
                if m.name.startswith("enrichment")]


def test_names_follow_prometheus_conventions() -> None:
    sensor = exercised(PrometheusSensor())
    for family in sensor.registry.collect():
        assert family.name.startswith("enrichment_"), family.name
        assert not family.name.startswith("kafka_consumergroup")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "gauge" and "time" in family.name:
            assert family.name.endswith("_timestamp_seconds"), family.name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, sample


def test_no_created_series_beside_counters_and_histograms() -> None:
    # (promtool's lint of a live scrape is in tests/integration/test_metrics.py.)
    text = generate_latest(exercised(PrometheusSensor()).registry)
    assert b"_created" not in text


def test_provider_state_series_exist_from_the_first_lookup() -> None:
    sensor = PrometheusSensor()
    sensor.lookup("clearbit", "404", 0.1)
    value = sensor.registry.get_sample_value
    assert value("enrichment_circuit_state", {"provider": "clearbit"}) == 0
    assert value("enrichment_quota_exhausted", {"provider": "clearbit"}) == 0
    sensor.quota_exhausted("clearbit", True)
    assert value("enrichment_quota_exhausted", {"provider": "clearbit"}) == 1


def test_lag_keeps_only_the_partitions_owned_now() -> None:
    clock = FakeClock()
    sensor = PrometheusSensor(clock=clock)
    value = sensor.registry.get_sample_value
    sensor.lag({("in", 0): 7, ("in", 1): 3})
    sensor.lag({("in", 1): 2})
    assert value("enrichment_consumer_lag_records", {"topic": "in", "partition": "0"}) is None
    assert value("enrichment_consumer_lag_records", {"topic": "in", "partition": "1"}) == 2
    assert value("enrichment_consumer_lag_measured_timestamp_seconds") == clock.time()


def test_liveness_needs_a_recent_turn_and_readiness_needs_liveness() -> None:
    clock = FakeClock()
    sensor = PrometheusSensor(liveness_timeout=60, clock=clock)
    assert not sensor.live()
    assert not sensor.ready()
    sensor.state(alive=True, ready=False)
    assert sensor.live()
    assert not sensor.ready()
    sensor.state(alive=True, ready=True)
    assert sensor.ready()
    clock.advance(59)
    sensor.buffered(0, False)  # the main loop turned
    clock.advance(59)
    assert sensor.ready()
    clock.advance(2)  # 61 s without a turn: stuck
    assert not sensor.live()
    assert not sensor.ready()
    sensor.state(alive=False, ready=False)
    assert not sensor.live()


@pytest.fixture
def server() -> Iterator[tuple[PrometheusSensor, str]]:
    sensor = PrometheusSensor()
    metrics = MetricsServer(sensor, "127.0.0.1", 0)
    metrics.start()
    try:
        yield sensor, f"http://127.0.0.1:{metrics.port}"
    finally:
        metrics.stop()


def test_the_endpoints_answer_on_one_port(server: tuple[PrometheusSensor, str]) -> None:
    sensor, url = server
    assert httpx.get(f"{url}/healthz").status_code == 503
    assert httpx.get(f"{url}/readyz").status_code == 503
    sensor.state(alive=True, ready=False)
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 503
    sensor.state(alive=True, ready=True)
    assert httpx.get(f"{url}/readyz").status_code == 200
    answer = httpx.get(f"{url}/metrics?x=1")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert "enrichment_ready 1.0" in answer.text
    assert httpx.get(f"{url}/other").status_code == 404
