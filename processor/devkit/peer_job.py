"""The enrichment job as the benchmark's peers do it (``pool_peer``, ``quix_peer``) and
as the bare loop writes its outputs (``bare_loop --enriched``): the same ``clearbit_``
traits as the stage, pre-encoded once per email and spliced into each output.

Light on imports on purpose: ``quix_peer`` runs it from a venv of its own, which has
orjson and httpx but not the project's other dependencies.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from processor.core.enrichment.events import output_traits
from processor.core.enrichment.mapping import to_traits

COMBINED = "/v2/combined/find"


def prepared(email: str, answer: Any) -> orjson.Fragment | None:
    """The output traits of a combined answer, encoded once; None when it has none."""
    traits = to_traits(answer.get("person"), answer.get("company"))
    return orjson.Fragment(orjson.dumps(output_traits(email, traits))) if traits else None


def looked_up(client: httpx.Client, email: str) -> orjson.Fragment | None:
    """``prepared`` of the Clearbit-compatible server's answer for ``email``."""
    answer = client.get(COMBINED, params={"email": email})
    return prepared(email, answer.json()) if answer.status_code == 200 else None


def output(event: Any, traits_of: Callable[[str], orjson.Fragment | None]) -> bytes | None:
    """The enriched identify of ``event``, or None when it is not one worth enriching
    (the checks a first version would make, not the stage's)."""
    if not isinstance(event, dict) or event.get("type") != "identify":
        return None
    email = (event.get("traits") or {}).get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    traits = traits_of(email.strip().lower())
    if traits is None:
        return None
    return orjson.dumps({"type": "identify", "messageId": str(uuid.uuid4()),
                         "userId": event.get("userId"), "anonymousId": event.get("anonymousId"),
                         "traits": traits})
