"""The composition root: settings in, a running stage out. The one place that knows every
concrete adapter; nothing else creates a client, a metric or reads the environment."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processor.adapters.clearbit import ClearbitProvider
from processor.adapters.json_codec import JsonCodec
from processor.adapters.kafka import KafkaSink, KafkaSource, max_message_bytes, verify_topics
from processor.adapters.lag import LagMonitor
from processor.adapters.prometheus import MetricsServer, PrometheusSensor
from processor.core.backoff import Backoff
from processor.core.cache import TTLCache
from processor.core.clock import Clock
from processor.entrypoints.settings import Delivery, ProviderName, Settings, kafka_overrides
from processor.runtime.loop import Stage, StageOptions
from processor.runtime.ports import Codec, Provider
from processor.runtime.signals import StopRequest
from processor.runtime.size_limits import TopicLimits, usable
from processor.stages.enrichment.lookup_cache import LookupMemory, Remembered
from processor.stages.enrichment.lookups import LookupPolicy, LookupPool
from processor.stages.enrichment.pipeline import Pipeline, Topics

log = logging.getLogger(__name__)


class SystemClock:
    """The real clock (``processor.core.clock.Clock``)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


def kafka_config(settings: Settings, client: str, environ: Mapping[str, str] | None = None
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
            # Bounds librdkafka's prefetch (memory). 4 MiB against 16: peak RSS on a
            # 1M-event backlog 205 against 213-237 MB, same throughput (make bench).
            "queued.max.messages.kbytes": 4096,
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


# librdkafka's own defaults: the producer's record limit (and so the limit taken for a
# topic whose configuration cannot be read) and its batch size.
PRODUCER_DEFAULT_MAX_BYTES = 1_000_000
PRODUCER_DEFAULT_BATCH_BYTES = 1_000_000


def topic_limits(settings: Settings, admin_config: Mapping[str, Any],
                 producer_config: dict[str, Any], producer_sources: Mapping[str, str]
                 ) -> TopicLimits:
    """The record limits of the topics the stage writes to, read from the cluster; the
    producer is sized to match unless a pass-through variable says otherwise: its
    ``message.max.bytes`` to the largest (librdkafka's 1,000,000 would refuse records
    the topics take), its ``batch.size`` to the smallest (a batch is held to the limit
    of its topic as a whole)."""
    written = [settings.output_topic, settings.dlq_topic]
    if settings.cache_topic:
        written.append(settings.cache_topic)
    found = max_message_bytes(admin_config, written, settings.startup_timeout,
                              fallback=PRODUCER_DEFAULT_MAX_BYTES)
    room = [usable(found[topic]) for topic in written]
    if "message.max.bytes" not in producer_sources:
        producer_config["message.max.bytes"] = min(1_000_000_000, max(1000, *room))
    if "batch.size" not in producer_sources:
        producer_config["batch.size"] = max(1, min(PRODUCER_DEFAULT_BATCH_BYTES, *room))
    log.info("record limits: %s", ", ".join(f"{t} {usable(found[t])} bytes" for t in written))
    return TopicLimits.of_topics({t: found[t] for t in written[:2]},
                                 int(producer_config["message.max.bytes"]))


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
    codec: Codec = JsonCodec()
    if "avro" in (settings.input_format, settings.output_format):
        from processor.adapters.avro import codec_for  # noqa: PLC0415 - Avro only

        codec = codec_for(settings)
    # A revoke or a drain can hold the loop for up to the shutdown timeout: liveness
    # must not kill the pod in the middle of one.
    sensor = PrometheusSensor(liveness_timeout=max(60.0, settings.shutdown_timeout + 30.0))
    exactly_once = settings.delivery is Delivery.EXACTLY_ONCE

    consumer_config, consumer_sources = kafka_config(settings, "consumer", environ)
    producer_config, producer_sources = kafka_config(settings, "producer", environ)
    admin_config, _ = kafka_config(settings, "admin", environ)
    limits = topic_limits(settings, admin_config, producer_config, producer_sources)
    source = KafkaSource(consumer_config, consumer_sources,
                         on_commit=lambda ok: sensor.committed(ok, clock.time()))
    sink = KafkaSink(producer_config, producer_sources)

    policy = LookupPolicy(
        workers=settings.max_in_flight,
        rate_limit_per_minute=settings.provider_rate_limit,
        max_attempts=settings.max_attempts,
        retry_deadline=settings.retry_deadline,
        backoff=Backoff(),
        breaker_threshold=settings.breaker_threshold,
        breaker_reset=settings.breaker_reset,
        quota_probe_interval=settings.quota_retry_interval,
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
    memory = LookupMemory(cache=TTLCache[Remembered](settings.cache_max_entries, clock),
                          codec=codec, clock=clock, found_ttl=settings.cache_ttl,
                          not_found_ttl=settings.not_found_ttl, shared=shared)
    pipeline = Pipeline(
        topics=Topics(settings.input_topic, settings.output_topic, settings.dlq_topic),
        codec=codec, sink=sink, submit=lookups.submit, sensor=sensor, clock=clock,
        memory=memory, transactional=exactly_once, limits=limits,
    )
    lag = LagMonitor(admin_config, settings.group_id, sensor, interval=settings.lag_interval,
                     auto_offset_reset=settings.auto_offset_reset)
    options = StageOptions(
        input_topic=settings.input_topic, max_batch=settings.max_batch,
        max_buffered=settings.max_buffered, commit_interval=settings.commit_interval,
        shutdown_timeout=settings.shutdown_timeout, transactional=exactly_once,
    )
    stage = Stage(options=options, source=source, sink=sink, pipeline=pipeline,
                  lookups=lookups, memory=memory, sensor=sensor, clock=clock,
                  on_assignment=lag.owned, stop=stop)
    metrics = (MetricsServer(sensor, settings.metrics_host, settings.metrics_port)
               if settings.metrics_port else None)
    return Assembly(stage=stage, sensor=sensor, metrics=metrics, lag=lag)
