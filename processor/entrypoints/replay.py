"""``processor replay-dlq``: put dead letters back on the input topic.

After a provider outage or a fixed bug, the dead letters are re-published to
the input topic with their original key, value and headers (the error headers
this stage added are removed), optionally only those of some reason codes and
of a time window.

Safe to run twice: the replay reads the dead-letter topic as its own consumer
group (``<group id>-dlq-replay`` unless ``--replay-group`` says otherwise) and
commits how far it got, after the moved records are confirmed. A second run
starts where the first stopped, so nothing is moved twice. Records a filter
passed over are not offered again to the same replay group: use another
``--replay-group`` (or ``--from-beginning``) to look at the whole topic again.
Dead letters that left out part of the original to fit their topic are passed
over and counted as incomplete: the original is only in the input topic.
If a run dies between publishing and committing, the records of that last
batch are published again; their enriched outputs carry the same messageId
(it is derived from the input's), so downstream deduplication absorbs them.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from processor.core.errors import ConfigError
from processor.core.replay import ReplayFilter
from processor.entrypoints.settings import load
from processor.runtime.dead_letters import ENRICHMENT
from processor.runtime.size_limits import usable


def _moment(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time: {text!r} (e.g. 2026-11-23T10:00:00Z)") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z")
    return int(moment.timestamp() * 1000)


def add_replay_command(commands: Any) -> None:
    replay = commands.add_parser(
        "replay-dlq", help="re-publish dead letters to the input topic",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    replay.add_argument("--reason", action="append", default=[], metavar="CODE",
                        help="only dead letters with this reason code (repeatable)")
    replay.add_argument("--since", type=_moment, metavar="TIME",
                        help="only dead letters written at or after TIME (ISO-8601)")
    replay.add_argument("--until", type=_moment, metavar="TIME",
                        help="only dead letters written before TIME (ISO-8601)")
    replay.add_argument("--replay-group", metavar="GROUP",
                        help="consumer group of the replay [default: <group id>-dlq-replay]")
    replay.add_argument("--from-beginning", action="store_true",
                        help="ignore where earlier replays got to")
    replay.add_argument("--dry-run", action="store_true",
                        help="count what would move; publish and commit nothing")
    replay.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from processor.adapters.replayer import Replayer  # noqa: PLC0415 - Kafka only when used
    from processor.entrypoints.bootstrap import kafka_config  # noqa: PLC0415

    settings = load({})
    group = args.replay_group or f"{settings.group_id}-dlq-replay"
    if args.since and args.until and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    producer_config, producer_sources = kafka_config(settings, "producer")
    if "message.max.bytes" not in producer_sources:
        # Dead letters are as large as the input topic takes: so must the producer's be.
        from processor.adapters.kafka import max_message_bytes  # noqa: PLC0415

        found = max_message_bytes(kafka_config(settings, "admin")[0], [settings.input_topic],
                                  settings.startup_timeout, fallback=1_000_000)
        producer_config["message.max.bytes"] = max(1000, usable(found[settings.input_topic]))
    replayer = Replayer(consumer_config=kafka_config(settings, "consumer")[0],
                        producer_config=producer_config, group=group,
                        dlq_topic=settings.dlq_topic, input_topic=settings.input_topic,
                        headers=ENRICHMENT)
    try:
        result = replayer.run(ReplayFilter(frozenset(args.reason), args.since, args.until),
                              from_beginning=args.from_beginning, dry_run=args.dry_run)
    finally:
        replayer.close()
    verb = "would move" if args.dry_run else "moved"
    print(f"replay-dlq: {verb} {result.moved} dead letter(s) from {settings.dlq_topic} to "
          f"{settings.input_topic}; passed over {result.passed_over} "
          f"(filters) and {result.incomplete} incomplete (value, headers or key left out "
          f"to fit); read {result.read} (group {group})", file=sys.stdout)
    return 0

