"""``processor conversions``: the conversions stage's commands, composed from settings."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from processor.adapters.changelog import ChangelogReader
from processor.adapters.conversion_metrics import ConversionMetrics
from processor.adapters.json_codec import ConversionEvents
from processor.adapters.kafka import (
    KafkaSink,
    KafkaSource,
    TopicInfo,
    describe_topics,
    producer_limits,
)
from processor.adapters.lag import LagMonitor
from processor.adapters.runtime_metrics import MetricsServer
from processor.adapters.state_directory import StateDirectory
from processor.core.clock import Clock, SystemClock
from processor.core.conversions.audiences import Audiences, load_audiences
from processor.core.conversions.matching import SOURCE_TRAITS, known_region
from processor.core.errors import ConfigError
from processor.entrypoints import conversion_topics
from processor.entrypoints.bootstrap import kafka_config
from processor.entrypoints.conversion_settings import ConversionSettings
from processor.entrypoints.running import checked, run_stage
from processor.entrypoints.settings import Delivery
from processor.runtime.loop import Stage, StageOptions
from processor.runtime.signals import StopRequest
from processor.runtime.state import KeyValueStore, StateStores, StoreSpec
from processor.stages.conversions.pipeline import (
    ConversionOptions,
    ConversionPipeline,
    ConversionTopics,
)
from processor.stages.conversions.ports import ConversionSensor

log = logging.getLogger("processor")

VISITORS, PEOPLE = "visitors", "people"


def cluster_topics(settings: ConversionSettings,
                   environ: Mapping[str, str] | None = None) -> dict[str, TopicInfo | None]:
    admin_config, _ = kafka_config(settings, "admin", environ)
    plan = conversion_topics.needs(settings)
    return describe_topics(admin_config, [n.name for n in plan], settings.startup_timeout)


def print_topics(settings: ConversionSettings) -> int:
    """``processor conversions topics``: the plan, and what the cluster has of it."""
    plan = conversion_topics.needs(settings)
    print(conversion_topics.render(plan, cluster_topics(settings)), file=sys.stdout)
    return 0


def preflight(settings: ConversionSettings, environ: Mapping[str, str] | None = None) -> None:
    """Every topic exists, changelogs are compacted and co-partitioned (or ConfigError)."""
    conversion_topics.refuse(conversion_topics.needs(settings), cluster_topics(settings, environ))


def audiences_of(settings: ConversionSettings) -> Audiences:
    """The audiences file, checked: it exists, parses, and reads no personal data."""
    if not settings.audiences_file:
        raise ConfigError("PROCESSOR_CONV_AUDIENCES_FILE is required: set it to the YAML "
                          "file of your audiences (deploy/conversions/audiences.example.yaml "
                          "shows the format)")
    if not known_region(settings.default_region):
        raise ConfigError(f"PROCESSOR_CONV_DEFAULT_REGION: {settings.default_region} is not a "
                          "region the phone number parser knows (e.g. US, GB, DE)")
    audiences = load_audiences(Path(settings.audiences_file))
    for audience in audiences:
        personal = sorted(audience.traits & SOURCE_TRAITS)
        if personal:
            raise ConfigError(f"audience {audience.key}: criteria and event_timestamp may not "
                              f"read {', '.join(personal)}: personal data is never kept by the "
                              "stage; use a trait derived from it (a domain, a flag)")
    return audiences


class LazyStores:
    """One store of a ``StateStores`` as the pipeline sees it: a partition's store is
    opened, and restored from its changelog, when its first record comes."""

    def __init__(self, state: StateStores, spec: StoreSpec, sensor: ConversionSensor) -> None:
        self.name = spec.name
        self._state = state
        self._topic = spec.input_topic
        self._sensor = sensor
        self._open: dict[int, KeyValueStore] = {}

    def partition(self, partition: int) -> KeyValueStore:
        store = self._open.get(partition)
        if store is None:
            for restored in self._state.open([(self._topic, partition)]):
                self._sensor.restored(restored.store, restored.records, restored.seconds)
            store = self._open[partition] = self._state.store(self.name, partition)
        return store

    def close(self, partitions: list[int], clean: bool) -> None:
        self._state.close([(self._topic, p) for p in partitions], clean=clean)
        for partition in partitions:
            self._open.pop(partition, None)

    def owned(self) -> list[int]:
        return sorted(self._open)

    def estimated_records(self) -> int:
        return sum(store.approximate_count() for store in self._open.values())


@dataclass
class ConversionAssembly:
    stage: Stage
    sensor: ConversionMetrics
    metrics: MetricsServer | None
    lag: LagMonitor


def assemble(settings: ConversionSettings, audiences: Audiences, clock: Clock | None = None,
             environ: Mapping[str, str] | None = None,
             stop: StopRequest | None = None) -> ConversionAssembly:
    clock = clock or SystemClock()
    internal = settings.internal_topics
    specs = (StoreSpec(VISITORS, internal.anon_state, internal.by_anon),
             StoreSpec(PEOPLE, internal.person_state, internal.by_person))
    sensor = ConversionMetrics([a.key for a in audiences], [s.name for s in specs],
                               liveness_timeout=max(60.0, settings.shutdown_timeout + 30.0),
                               clock=clock)
    exactly_once = settings.delivery is Delivery.EXACTLY_ONCE
    consumer_config, consumer_sources = kafka_config(settings, "consumer", environ)
    producer_config, producer_sources = kafka_config(settings, "producer", environ)
    # Java's partitioner: the repartition topics' keys land where Kafka Streams (or any
    # other client with the default partitioner) would put them.
    producer_config.setdefault("partitioner", "murmur2_random")
    admin_config, _ = kafka_config(settings, "admin", environ)
    limits = producer_limits(admin_config, [settings.output_topic, settings.dlq_topic,
                                            internal.by_anon, internal.by_person,
                                            internal.anon_state, internal.person_state],
                             settings.startup_timeout, producer_config, producer_sources)
    source = KafkaSource(consumer_config, consumer_sources,
                         on_commit=lambda ok: sensor.committed(ok, clock.time()))
    sink = KafkaSink(producer_config, producer_sources)
    state = StateDirectory(Path(settings.state_dir), specs, ChangelogReader(consumer_config))
    pipeline = ConversionPipeline(
        topics=ConversionTopics(frozenset(settings.event_topics + settings.identify_topics),
                                internal.by_anon, internal.by_person, settings.output_topic,
                                settings.dlq_topic),
        options=ConversionOptions(click_ttl_ms=int(settings.click_ttl * 1000),
                                  settle_ms=int(settings.settle_delay * 1000),
                                  future_skew=int(settings.future_skew),
                                  region=settings.default_region, transactional=exactly_once),
        audiences=audiences, decoder=ConversionEvents(), sink=sink,
        visitor_stores=LazyStores(state, specs[0], sensor),
        person_stores=LazyStores(state, specs[1], sensor), sensor=sensor, clock=clock,
        limits=limits)
    lag = LagMonitor(admin_config, settings.group_id, sensor, interval=settings.lag_interval,
                     auto_offset_reset=settings.auto_offset_reset)
    topics = (*settings.event_topics, *settings.identify_topics, internal.by_anon,
              internal.by_person)
    options = StageOptions(input_topics=topics, max_batch=settings.max_batch,
                           max_buffered=settings.max_buffered,
                           commit_interval=settings.commit_interval,
                           shutdown_timeout=settings.shutdown_timeout, transactional=exactly_once)
    stage = Stage(options=options, source=source, sink=sink, pipeline=pipeline, sensor=sensor,
                  clock=clock, on_assignment=lag.owned, stop=stop)
    metrics = (MetricsServer(sensor, settings.metrics_host, settings.metrics_port)
               if settings.metrics_port else None)
    return ConversionAssembly(stage, sensor, metrics, lag)


def run(settings: ConversionSettings, stop: StopRequest) -> int:
    from processor.adapters import logs  # noqa: PLC0415

    logs.configure(settings.log_level, settings.log_format)
    audiences = audiences_of(settings)
    if not checked(lambda: preflight(settings), stop):
        return 0
    assembly = assemble(settings, audiences, stop=stop)
    log.info("starting conversions: %s + %s -> %s (dead letters: %s), group %s, %s, "
             "%d audience(s)", ",".join(settings.event_topics),
             ",".join(settings.identify_topics), settings.output_topic, settings.dlq_topic,
             settings.group_id, settings.delivery.value, len(audiences))
    return run_stage(assembly.stage, [assembly.metrics, assembly.lag])
