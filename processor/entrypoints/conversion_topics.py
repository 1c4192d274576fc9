"""The topics of the conversions stage: what it needs, what it finds, and what is wrong.

The stage never creates topics. ``processor conversions topics`` prints this plan;
start-up refuses (exit 2) a missing topic, a changelog that is not compacted, or a
changelog whose partition count differs from its repartition topic's (a store's
partition p is restored from changelog partition p: they must be the same p).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from processor.adapters.kafka import TopicInfo
from processor.core.errors import ConfigError
from processor.entrypoints.conversion_settings import ConversionSettings


class TopicNeed(NamedTuple):
    name: str
    role: str
    cleanup_policy: str  # what the stage needs ("any": the owner's choice)
    partitions_like: str | None  # must have as many partitions as this topic
    variable: str  # the setting that names it


def needs(settings: ConversionSettings) -> list[TopicNeed]:
    internal = settings.internal_topics
    prefix = "PROCESSOR_CONV_TOPIC_PREFIX"
    return [
        *(TopicNeed(t, "input: page/track/screen events", "any", None,
                    "PROCESSOR_CONV_EVENT_TOPICS") for t in settings.event_topics),
        *(TopicNeed(t, "input: identify events", "any", None, "PROCESSOR_CONV_IDENTIFY_TOPICS")
          for t in settings.identify_topics),
        TopicNeed(internal.by_anon, "repartition by anonymousId", "delete", None, prefix),
        TopicNeed(internal.by_person, "repartition by person", "delete", None, prefix),
        TopicNeed(internal.anon_state, "changelog of the visitor store", "compact",
                  internal.by_anon, prefix),
        TopicNeed(internal.person_state, "changelog of the person store", "compact",
                  internal.by_person, prefix),
        TopicNeed(settings.output_topic, "output: conversions to send", "any", None,
                  "PROCESSOR_CONV_OUTPUT_TOPIC"),
        TopicNeed(settings.dlq_topic, "dead letters", "any", None, "PROCESSOR_CONV_DLQ_TOPIC"),
    ]


def problems(plan: list[TopicNeed], found: Mapping[str, TopicInfo | None]) -> list[str]:
    """What is wrong with the cluster's topics, one line each, saying what to fix."""
    lines = []
    for need in plan:
        info = found.get(need.name)
        if info is None:
            lines.append(f"{need.variable}: topic '{need.name}' ({need.role}) does not exist; "
                         "create it first (`processor conversions topics` prints them all)")
            continue
        if need.cleanup_policy == "compact" and "compact" not in info.cleanup_policy:
            lines.append(f"topic '{need.name}' ({need.role}) has cleanup.policy="
                         f"{info.cleanup_policy}; it must be compact")
        like = found.get(need.partitions_like) if need.partitions_like else None
        if like is not None and like.partitions != info.partitions:
            lines.append(f"topic '{need.name}' ({need.role}) has {info.partitions} partitions "
                         f"but '{need.partitions_like}' has {like.partitions}: they must be "
                         "equal")
    return lines


def refuse(plan: list[TopicNeed], found: Mapping[str, TopicInfo | None]) -> None:
    lines = problems(plan, found)
    if lines:
        raise ConfigError("\n".join(lines))


def suggested_partitions(plan: list[TopicNeed], found: Mapping[str, TopicInfo | None]) -> int:
    """Partitions for the repartition topics: as many as the widest input (the stage's
    parallelism), at least 1."""
    inputs = [found.get(n.name) for n in plan if n.role.startswith("input")]
    return max([i.partitions for i in inputs if i is not None], default=1)


def render(plan: list[TopicNeed], found: Mapping[str, TopicInfo | None]) -> str:
    width = max(len(n.name) for n in plan)
    wanted = suggested_partitions(plan, found)
    rows = [f"{'topic':<{width}}  {'partitions':<18}  {'cleanup.policy':<14}  role / status"]
    for need in plan:
        info = found.get(need.name)
        if need.role.startswith("input") or need.role.startswith(("output", "dead")):
            partitions = "any"
        elif need.partitions_like:
            partitions = f"= {need.partitions_like.rsplit('.', 1)[-1]}"
        else:
            partitions = f"{wanted} (as the inputs)"
        status = "missing" if info is None else \
            f"exists: {info.partitions} partitions, {info.cleanup_policy}"
        rows.append(f"{need.name:<{width}}  {partitions:<18}  {need.cleanup_policy:<14}  "
                    f"{need.role}; {status}")
    lines = problems(plan, found)
    rows.append("")
    rows.append("problems:" if lines else "nothing to fix: the stage can start")
    rows += [f"  {line}" for line in lines]
    return "\n".join(rows)
