"""A peer of the enrichment stage for the benchmark: the job as a Quix Streams
application, the second comparison the issue on throughput names.

    .venv-quix/bin/python -m processor.devkit.quix_peer BOOTSTRAP INPUT OUTPUT GROUP \\
        CLEARBIT_URL KEY

Quix Streams pins a confluent-kafka older than the project's, so it runs from a venv
of its own (``make quix-peer``, which ``make bench`` builds; the bench leaves the row
out, saying so, when it is missing). Each event is decoded by Quix (JSON), its email
looked up in a dict (on a miss: the Clearbit-compatible server's combined endpoint,
through httpx), and the same output identify built with the same ``clearbit_`` traits
(``processor.core.enrichment.mapping``) and produced by Quix to the output, keyed as
the input was. At-least-once, Quix's default. It stops on SIGTERM.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from typing import Any

import httpx
import orjson
from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

from processor.core.enrichment.mapping import to_traits

COMBINED = "/v2/combined/find"


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group, base_url, key = argv[:6]
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=10)
    cache: dict[str, orjson.Fragment | None] = {}

    def traits_of(email: str) -> orjson.Fragment | None:
        if email not in cache:
            answer = client.get(COMBINED, params={"email": email})
            found = None
            if answer.status_code == 200:
                body = answer.json()
                traits = to_traits(body.get("person"), body.get("company"))
                if traits:
                    found = orjson.Fragment(orjson.dumps({"email": email, **traits}))
            cache[email] = found
        return cache[email]

    def enrich(event: Any) -> bytes | None:
        if not isinstance(event, dict) or event.get("type") != "identify":
            return None
        email = (event.get("traits") or {}).get("email")
        if not isinstance(email, str) or "@" not in email:
            return None
        traits = traits_of(email.strip().lower())
        if traits is None:
            return None
        return orjson.dumps({"type": "identify", "messageId": str(uuid.uuid4()),
                             "userId": event.get("userId"),
                             "anonymousId": event.get("anonymousId"), "traits": traits})

    app = Application(broker_address=bootstrap, consumer_group=group,
                      auto_offset_reset="earliest", auto_create_topics=False,
                      state_dir=tempfile.mkdtemp(prefix="quix-peer-"))
    frame = app.dataframe(app.topic(source, value_deserializer="json"))
    frame = frame.apply(enrich).filter(lambda value: value is not None)
    frame.to_topic(app.topic(sink, value_serializer="bytes"))
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
