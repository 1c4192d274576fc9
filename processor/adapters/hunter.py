"""Hunter's Combined Enrichment endpoint, asked for Clearbit-shaped bodies, as a ``Provider``.

Hunter answers ``GET /v2/combined/find?email=...&clearbit_format=true`` with
the same ``{"person": ..., "company": ...}`` body as Clearbit, so the status
handling and the trait mapping are Clearbit's; only the host and the key differ.
The key goes in the ``X-API-KEY`` header, never in the URL (URLs end up in logs).
"""

from __future__ import annotations

from processor.adapters.clearbit import ClearbitProvider
from processor.core.clock import Clock


class HunterProvider(ClearbitProvider):
    name = "hunter"

    def __init__(self, *, base_url: str, api_key: str, timeout: float, max_connections: int,
                 clock: Clock) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout,
                         max_connections=max_connections, clock=clock,
                         extra_params={"clearbit_format": "true"},
                         auth_header=("X-API-KEY", api_key))
