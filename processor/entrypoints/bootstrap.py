"""The composition root: settings in, a running stage out. The one place that knows every
concrete adapter; nothing else creates a client, a metric or reads the environment."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processor.adapters.clearbit import ClearbitProvider
from processor.adapters.json_codec import JsonCodec
from processor.adapters.kafka import KafkaSink, KafkaSource, producer_limits, verify_topics
from processor.adapters.lag import LagMonitor
from processor.adapters.prometheus import PrometheusSensor
from processor.adapters.runtime_metrics import MetricsServer
from processor.core.backoff import Backoff
from processor.core.cache import TTLCache
from processor.core.clock import Clock, SystemClock
from processor.core.enrichment.answers import Remembered
from processor.entrypoints.settings import (
    Delivery,
    ProviderName,
    Settings,
    StageSettings,
    kafka_overrides,
)
from processor.runtime.loop import Stage, StageOptions
from processor.runtime.signals import StopRequest
from processor.stages.enrichment.lookup_cache import LookupCache
from processor.stages.enrichment.lookups import LookupPolicy, LookupPool
from processor.stages.enrichment.pipeline import Pipeline, Topics
from processor.stages.enrichment.ports import Codec, Provider

log = logging.getLogger(__name__)

# The consumer's prefetch: see kafka_config and README's Benchmarks for the figures.
PREFETCH_BYTES = 8 * 2**20
FETCH_QUEUE_BACKOFF_MS = 10


def kafka_config(settings: StageSettings, client: str, environ: Mapping[str, str] | None = None
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """librdkafka configuration for ``client``: our defaults, then the pass-through."""
    base: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers,
                            "client.id": f"{settings.group_id}-{client}"}
    sources = {"bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS"}
    exactly_once = settings.delivery is Delivery.EXACTLY_ONCE
    if client == "consumer":
        base.update({
            "group.id": settings.group_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "auto.offset.reset": settings.auto_offset_reset,
            # Offsets are stored by the pipeline only once records are done, then
            # committed in the background (or, exactly-once, in the transaction).
            "enable.auto.commit": not exactly_once,
            "enable.auto.offset.store": False,
            "auto.commit.interval.ms": max(1, int(settings.commit_interval * 1000)),
            "isolation.level": "read_committed",
            # librdkafka's prefetch, bounded in bytes (memory, whatever the event size)
            # and in records by the stage's own buffer: never more than the stage holds.
            "queued.max.messages.kbytes": PREFETCH_BYTES // 1024,
            "queued.min.messages": settings.max_buffered,
            # A full prefetch is looked at again after a turn of the loop, not after the
            # default second, in which a stage that drained it would sit idle.
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "enable.partition.eof": False,
        })
        sources["group.id"] = "PROCESSOR_GROUP_ID"
    elif client == "producer":
        base.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                     "compression.type": "lz4"})
        if exactly_once:
            base["transactional.id"] = settings.effective_transactional_id
            base["transaction.timeout.ms"] = 60_000
            sources["transactional.id"] = "PROCESSOR_TRANSACTIONAL_ID"
    extra, extra_sources = kafka_overrides(client, environ)
    return {**base, **extra}, {**sources, **extra_sources}


def codec_for(settings: Settings, clock: Clock) -> Codec:
    """The codec ``PROCESSOR_INPUT_FORMAT`` and ``PROCESSOR_OUTPUT_FORMAT`` ask for. With
    Avro on either side the registry is asked now, so that a wrong URL, a refused key or an
    incompatible schema stops the start with a message rather than the first record."""
    json_codec = JsonCodec()
    if settings.input_format == "json" and settings.output_format == "json":
        return json_codec
    # Avro only: the registry client and fastavro are not imported otherwise.
    from processor.adapters.avro.codec import Decoder, Encoder, FormatCodec  # noqa: PLC0415
    from processor.adapters.avro.reader import AvroReader  # noqa: PLC0415
    from processor.adapters.avro.registry import SchemaRegistry  # noqa: PLC0415
    from processor.adapters.avro.writer import EnrichedWriter  # noqa: PLC0415

    registry = SchemaRegistry(registry_config(settings))
    decoder: Decoder = json_codec
    encoder: Encoder = json_codec
    if settings.input_format == "avro":
        registry.probe()
        decoder = AvroReader(registry, clock=clock)
    if settings.output_format == "avro":
        writer = EnrichedWriter(registry, auto_register=settings.schema_registry_auto_register)
        writer.register(settings.output_topic)
        encoder = writer
    return FormatCodec(decoder, encoder)


def registry_config(settings: Settings) -> dict[str, Any]:
    """The schema registry client's configuration."""
    config: dict[str, Any] = {"url": settings.schema_registry_url}
    user_info = settings.schema_registry_basic_auth_user_info.get_secret_value()
    if user_info:
        config["basic.auth.user.info"] = user_info
    if settings.schema_registry_ca_location:
        config["ssl.ca.location"] = settings.schema_registry_ca_location
    return config


def provider_factory(settings: Settings, clock: Clock) -> Callable[[], Provider]:
    """Built inside the lookup pool's thread, where its event loop runs."""
    def build() -> Provider:
        if settings.provider is ProviderName.HUNTER:
            from processor.adapters.hunter import HunterProvider  # noqa: PLC0415 - optional

            return HunterProvider(base_url=settings.hunter_base_url, api_key=settings.api_key,
                                  timeout=settings.request_timeout,
                                  max_connections=settings.max_in_flight, clock=clock,
                                  client=settings.http_client,
                                  max_answer_bytes=settings.max_answer_bytes,
                                  max_rate_limit_wait=settings.rate_limit_max_wait)
        return ClearbitProvider(base_url=settings.clearbit_base_url, api_key=settings.api_key,
                                timeout=settings.request_timeout,
                                max_connections=settings.max_in_flight, clock=clock,
                                client=settings.http_client,
                                max_answer_bytes=settings.max_answer_bytes,
                                max_rate_limit_wait=settings.rate_limit_max_wait)
    return build


@dataclass
class Assembly:
    """Everything the ``run`` command starts and stops."""

    stage: Stage
    sensor: PrometheusSensor
    metrics: MetricsServer | None
    lag: LagMonitor


def preflight(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """The cluster answers and the three topics exist (raises with what to fix)."""
    admin_config, _ = kafka_config(settings, "admin", environ)
    topics = {"PROCESSOR_INPUT_TOPIC": settings.input_topic,
              "PROCESSOR_OUTPUT_TOPIC": settings.output_topic,
              "PROCESSOR_DLQ_TOPIC": settings.dlq_topic}
    if settings.cache_topic:
        topics["PROCESSOR_CACHE_TOPIC"] = settings.cache_topic
    verify_topics(admin_config, topics, settings.startup_timeout)


def assemble(settings: Settings, clock: Clock | None = None,
             environ: Mapping[str, str] | None = None,
             stop: StopRequest | None = None) -> Assembly:
    clock = clock or SystemClock()
    # First: with Avro it asks the schema registry, and a refusal must stop the start
    # before any Kafka client exists.
    codec = codec_for(settings, clock)
    # A revoke or a drain can hold the loop for up to the shutdown timeout: liveness
    # must not kill the pod in the middle of one.
    sensor = PrometheusSensor(liveness_timeout=max(60.0, settings.shutdown_timeout + 30.0),
                              clock=clock)
    exactly_once = settings.delivery is Delivery.EXACTLY_ONCE

    consumer_config, consumer_sources = kafka_config(settings, "consumer", environ)
    producer_config, producer_sources = kafka_config(settings, "producer", environ)
    admin_config, _ = kafka_config(settings, "admin", environ)
    written = [settings.output_topic, settings.dlq_topic]
    if settings.cache_topic:
        written.append(settings.cache_topic)
    limits = producer_limits(admin_config, written, settings.startup_timeout, producer_config,
                             producer_sources)
    source = KafkaSource(consumer_config, consumer_sources,
                         on_commit=lambda ok: sensor.committed(ok, clock.time()))
    sink = KafkaSink(producer_config, producer_sources)

    policy = LookupPolicy(
        max_in_flight=settings.max_in_flight,
        rate_limit_per_minute=settings.provider_rate_limit,
        max_attempts=settings.max_attempts,
        retry_deadline=settings.retry_deadline,
        backoff=Backoff(),
        breaker_threshold=settings.breaker_threshold,
        breaker_reset=settings.breaker_reset,
        quota_retry_interval=settings.quota_retry_interval,
        queued_retry_delay=settings.queued_retry_interval,
        queued_deadline=settings.queued_deadline,
        attempt_timeout=settings.request_timeout,
    )
    lookups = LookupPool(provider_factory(settings, clock), policy, clock, sensor)
    shared = None
    if settings.cache_topic:
        from processor.adapters.cache_log import KafkaCacheLog  # noqa: PLC0415 - optional

        plain_producer = {k: v for k, v in producer_config.items()
                          if not k.startswith("transaction")}
        shared = KafkaCacheLog(settings.cache_topic, consumer_config, plain_producer,
                               timeout=settings.startup_timeout)
    memory = LookupCache(cache=TTLCache[Remembered](settings.cache_max_entries, clock),
                          codec=codec, clock=clock, found_ttl=settings.cache_ttl,
                          not_found_ttl=settings.not_found_ttl, shared=shared)
    pipeline = Pipeline(
        topics=Topics(settings.input_topic, settings.output_topic, settings.dlq_topic),
        codec=codec, sink=sink, lookups=lookups, sensor=sensor, clock=clock,
        memory=memory, transactional=exactly_once, limits=limits,
    )
    lag = LagMonitor(admin_config, settings.group_id, sensor, interval=settings.lag_interval,
                     auto_offset_reset=settings.auto_offset_reset)
    options = StageOptions(
        input_topics=(settings.input_topic,), max_batch=settings.max_batch,
        max_buffered=settings.max_buffered, commit_interval=settings.commit_interval,
        shutdown_timeout=settings.shutdown_timeout, transactional=exactly_once,
    )
    stage = Stage(options=options, source=source, sink=sink, pipeline=pipeline,
                  sensor=sensor, clock=clock,
                  on_assignment=lag.owned, stop=stop)
    metrics = (MetricsServer(sensor, settings.metrics_host, settings.metrics_port)
               if settings.metrics_port else None)
    return Assembly(stage=stage, sensor=sensor, metrics=metrics, lag=lag)
