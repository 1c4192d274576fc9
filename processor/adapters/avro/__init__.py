"""Avro values with a schema registry: the Confluent wire format, read and written by fastavro.

A value is the magic byte 0, the schema's id in the registry (4 bytes, big-endian), then
the Avro binary encoding of the event with that schema. The schemas are the files in
``schemas/``; ``schemas/README.md`` explains how open-ended data is carried.

* Input (``PROCESSOR_INPUT_FORMAT=avro``): the writer schema of each id is fetched once,
  parsed once and resolved against ``identify.avsc``; the decoded record becomes the dict
  the JSON codec would have produced (nulls left out, JSON texts parsed), so the rest of
  the stage cannot tell the formats apart.
* Output (``PROCESSOR_OUTPUT_FORMAT=avro``): ``identify-enriched.avsc`` is registered once,
  at start, under ``<output topic>-value`` (TopicNameStrategy) with compatibility FULL
  unless the subject has a level of its own; every event is written into one reused buffer.

The registry is asked only at start and for a schema id not seen before (an id always
names the same schema, so a parsed one is kept for the life of the process):

==========================================  =============================================
at start: unreachable, 5xx                  ``FatalError`` (exit 3): try again later
at start: 401/403, wrong URL, 409, 422      ``ConfigError`` (exit 2) naming the variable
an input's schema id: 404 (no such id),     dead letter ``avro_unknown_schema``; the id is
  not Avro, unreadable as an Identify       not asked about again for ``UNKNOWN_ID_TTL``
an input's schema id: unreachable, 5xx,     ``FatalError``: the stage stops, commits nothing
  401/403 (after the client's retries)      from that record on; the next run reads it again
==========================================  =============================================

Good records are never dead-lettered because the registry is down.
"""

