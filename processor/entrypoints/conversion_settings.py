"""The conversions stage's settings (``processor conversions``).

The cluster, group, delivery, loop and operations variables are the runtime's
(``StageSettings``), with the group and the dead-letter topic of its own. The
stage's internal topics are named from ``PROCESSOR_CONV_TOPIC_PREFIX``.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BeforeValidator, model_validator
from pydantic_settings import NoDecode

from processor.entrypoints.settings import Duration, StageSettings, Topic, env_var, topic_name


def _topic_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _topics_ok(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("must name at least one topic")
    for topic in value:
        topic_name(topic)
    return value


# Comma-separated in the environment, not JSON.
TopicList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_topic_list),
                      AfterValidator(_topics_ok)]


class InternalTopics(NamedTuple):
    """The topics the stage owns, named from the prefix."""

    by_anon: str  # repartition: touches and identity links, keyed by anonymousId
    by_person: str  # repartition: identifies and forwarded clicks, keyed by person
    anon_state: str  # changelog of the anonymous-visitor store (compacted)
    person_state: str  # changelog of the person store (compacted)


class ConversionSettings(StageSettings):
    """``processor conversions``: click IDs and identities in, conversions out."""

    group_id: str = env_var("PROCESSOR_CONV_GROUP_ID", "clearbit-conversions",
                         "consumer group id of the conversions stage", min_length=1)

    # --- topics -------------------------------------------------------------------
    event_topics: TopicList = env_var("PROCESSOR_CONV_EVENT_TOPICS", "segment.events",
                                   "topics of Segment page/track/screen events, comma-separated")
    identify_topics: TopicList = env_var("PROCESSOR_CONV_IDENTIFY_TOPICS",
                                      "identify.raw,identify.enriched",
                                      "topics of identify events, comma-separated (raw and "
                                      "enriched, so criteria can use clearbit_ traits)")
    output_topic: Topic = env_var("PROCESSOR_CONV_OUTPUT_TOPIC", "conversions.outbox",
                               "topic of the conversions to send, one per audience entry")
    dlq_topic: Topic = env_var("PROCESSOR_CONV_DLQ_TOPIC", "conversions.dlq",
                            "dead-letter topic of the conversions stage")
    topic_prefix: str = env_var("PROCESSOR_CONV_TOPIC_PREFIX", "conversions",
                             "prefix of the stage's repartition and changelog topics",
                             pattern=r"^[A-Za-z0-9._-]{1,200}$")

    # --- audiences and state ----------------------------------------------------------
    audiences_file: str = env_var("PROCESSOR_CONV_AUDIENCES_FILE", "",
                               "YAML file of the audiences (key, criteria, event timestamp, "
                               "time bound, destinations); required")
    state_dir: str = env_var("PROCESSOR_CONV_STATE_DIR", "processor-state",
                          "folder of the local state stores, one per replica (rebuilt from the "
                          "changelogs when empty)", min_length=1)
    click_ttl: Duration = env_var("PROCESSOR_CONV_CLICK_TTL", "90d",
                               "how long a captured click ID is kept", gt=0)
    settle_delay: Duration = env_var("PROCESSOR_CONV_SETTLE_DELAY", "30s",
                                  "how long an entry waits for clicks still in flight before "
                                  "its conversion is written")
    future_skew: Duration = env_var("PROCESSOR_CONV_FUTURE_SKEW", "5m",
                                 "how far in the future an event timestamp may be")
    default_region: str = env_var("PROCESSOR_CONV_DEFAULT_REGION", "US",
                               "region of phone numbers written without a country code",
                               pattern=r"^[A-Z]{2}$")

    @model_validator(mode="after")
    def _coherent(self) -> ConversionSettings:
        inputs = set(self.event_topics) | set(self.identify_topics)
        owned = {self.output_topic, self.dlq_topic, *self.internal_topics}
        clash = sorted(inputs & owned)
        if clash:
            raise ValueError(f"{', '.join(clash)}: an input topic cannot also be a topic the "
                             "stage writes (PROCESSOR_CONV_OUTPUT_TOPIC, _DLQ_TOPIC or the "
                             "PROCESSOR_CONV_TOPIC_PREFIX topics)")
        if self.output_topic == self.dlq_topic:
            raise ValueError("PROCESSOR_CONV_DLQ_TOPIC must differ from "
                             "PROCESSOR_CONV_OUTPUT_TOPIC")
        return self

    @property
    def internal_topics(self) -> InternalTopics:
        prefix = self.topic_prefix
        return InternalTopics(f"{prefix}.by-anon", f"{prefix}.by-person",
                              f"{prefix}.anon-state", f"{prefix}.person-state")
