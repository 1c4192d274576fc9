"""The one door to libraries' private APIs: each use is here, with a test that fails
loudly when a library changes (``tests/unit/test_library_internals.py``).

* confluent-kafka's schema registry client raises its HTTP stack's transport errors
  (httpx, imported through its private ``_httpx_compat``), not an error of its own.
* ``OffsetSpec`` (for ``AdminClient.list_offsets``) is not re-exported with its types.
* prometheus-client has no bulk ``observe``; one locked update per bucket instead of
  one per value needs the histogram's buckets and sum.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence
from typing import Any

from confluent_kafka.admin._listoffsets import OffsetSpec
from prometheus_client import Histogram

__all__ = ["OffsetSpec", "observe_many", "registry_transport_error"]


def registry_transport_error() -> type[Exception]:
    """The exception class the registry client raises when the registry cannot be reached."""
    # Authlib, which the client's HTTP layer imports, warns that httpx is deprecated in
    # favour of httpx2: the client's business, not this stage's.
    with warnings.catch_warnings(record=True):
        from confluent_kafka.schema_registry.common._httpx_compat import (  # noqa: PLC0415
            httpx,
        )

    error: type[Exception] = httpx.TransportError
    return error


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, with one locked update per bucket."""
    inner: Any = histogram
    bounds: list[float] = inner._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for raw in values:
        value = max(0.0, raw)
        total += value
        counts[bisect.bisect_left(bounds, value)] += 1
    for bucket, count in zip(inner._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    inner._sum.inc(total)
