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

import httpx
import orjson
from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

from processor.devkit.peer_job import looked_up, output


def main(argv: list[str]) -> int:
    bootstrap, source, sink, group, base_url, key = argv[:6]
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=10)
    cache: dict[str, orjson.Fragment | None] = {}

    def traits_of(email: str) -> orjson.Fragment | None:
        if email not in cache:
            cache[email] = looked_up(client, email)
        return cache[email]

    app = Application(broker_address=bootstrap, consumer_group=group,
                      auto_offset_reset="earliest", auto_create_topics=False,
                      state_dir=tempfile.mkdtemp(prefix="quix-peer-"))
    frame = app.dataframe(app.topic(source, value_deserializer="json"))
    frame = frame.apply(lambda event: output(event, traits_of))
    frame = frame.filter(lambda value: value is not None)
    frame.to_topic(app.topic(sink, value_serializer="bytes"))
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
