"""The private APIs the adapters use, each behind ``processor.adapters.library_internals``:
these fail loudly when a library upgrade moves or changes one."""

from __future__ import annotations

import inspect

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, Histogram

from processor.adapters.library_internals import (
    OffsetSpec,
    observe_many,
    registry_transport_error,
)
from processor.adapters.runtime_metrics import LATENCY_BUCKETS


def test_the_registry_client_raises_httpx_transport_errors() -> None:
    error = registry_transport_error()
    assert error is httpx.TransportError
    # Through the adapter, which imports the client with its deprecation warning caught.
    from processor.adapters.avro.registry import SchemaRegistryClient

    # Unreachable: the client must raise exactly that class (after its retries).
    client = SchemaRegistryClient({"url": "http://127.0.0.1:9", "timeout": 1,
                                   "max.retries": 0})
    with pytest.raises(error):
        client.get_subjects()


def test_offset_spec_still_names_the_two_ends() -> None:
    assert OffsetSpec.latest() is not None
    assert OffsetSpec.earliest() is not None
    assert "list_offsets" in dict(inspect.getmembers(AdminClient))


def test_batched_observations_equal_one_by_one() -> None:
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 7.0, 500.0, -1.0] * 3
    one, batch = CollectorRegistry(), CollectorRegistry()
    single = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=one)
    for value in values:
        single.observe(max(0.0, value))
    observe_many(Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=batch), values)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("le", "")): s.value
                for m in registry.collect() for s in m.samples if not s.name.endswith("created")}

    assert samples(one) == samples(batch)
