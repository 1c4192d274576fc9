"""``processor conversions send``: the sender's composition root and command.

Settings in, a running sender out: the audiences file is read to know which
destinations are used (a destination without its credentials refuses the start, exit 2,
naming the audience), the four topics are checked, then the stage runs until SIGTERM or
SIGINT. A destination that refuses the credentials stops it with exit 3, after
``PROCESSOR_CONV_FATAL_LINGER`` with /metrics still up so that the stop is seen.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from processor.adapters.google import GoogleClient
from processor.adapters.kafka import KafkaSink, KafkaSource, producer_limits, verify_topics
from processor.adapters.lag import LagMonitor
from processor.adapters.meta import MetaClient
from processor.adapters.runtime_metrics import MetricsServer
from processor.adapters.sender_metrics import SenderMetrics
from processor.core.backoff import Backoff
from processor.core.clock import Clock, SystemClock
from processor.core.conversions.audiences import Audiences, load_audiences
from processor.core.conversions.sending import Destination
from processor.core.errors import ConfigError, FatalError
from processor.entrypoints.bootstrap import kafka_config
from processor.entrypoints.running import checked, run_stage
from processor.entrypoints.sender_settings import SenderSettings, check_credentials
from processor.entrypoints.settings import Delivery, env_name, load_as
from processor.runtime.loop import Stage, StageOptions
from processor.runtime.signals import StopRequest
from processor.stages.sender.batches import Batcher
from processor.stages.sender.pipeline import SenderOptions, SenderPipeline, SenderTopics
from processor.stages.sender.pool import DeliveryPolicy, DeliveryPool
from processor.stages.sender.ports import PlatformClient

log = logging.getLogger("processor")


def audiences_of(settings: SenderSettings) -> Audiences:
    if not settings.audiences_file:
        raise ConfigError("PROCESSOR_CONV_AUDIENCES_FILE is required: the audiences file "
                          "the conversions stage uses")
    return load_audiences(Path(settings.audiences_file))


def destinations_used(audiences: Audiences) -> list[tuple[str, Destination, bool]]:
    """(audience, destination, uses the Google Ads API) of every destination configured."""
    used = []
    for audience in audiences:
        if audience.meta is not None:
            used.append((audience.key, Destination.META, False))
        if audience.google is not None:
            used.append((audience.key, Destination.GOOGLE, audience.google.api == "ads"))
    return used


def clients_factory(settings: SenderSettings, clock: Clock,
                    destinations: frozenset[Destination]
                    ) -> Callable[[], Iterable[PlatformClient]]:
    """Built inside the pool's thread, where its event loop runs."""
    def build() -> list[PlatformClient]:
        clients: list[PlatformClient] = []
        connections = settings.max_in_flight
        if Destination.META in destinations:
            clients.append(MetaClient(
                base_url=settings.meta_base_url, version=settings.meta_api_version,
                access_token=settings.meta_access_token.get_secret_value().strip(),
                test_event_code=settings.meta_test_event_code.strip(),
                timeout=settings.request_timeout, max_connections=connections,
                client=settings.http_client))
        if Destination.GOOGLE in destinations:
            clients.append(GoogleClient.over_http(
                token_url=settings.google_token_url,
                datamanager_url=settings.google_datamanager_base_url,
                ads_url=settings.google_ads_base_url,
                ads_version=settings.google_ads_api_version,
                client_id=settings.google_client_id.strip(),
                client_secret=settings.google_client_secret.get_secret_value().strip(),
                refresh_token=settings.google_refresh_token.get_secret_value().strip(),
                developer_token=settings.google_ads_developer_token.get_secret_value().strip(),
                timeout=settings.request_timeout, max_connections=connections, clock=clock,
                client=settings.http_client))
        return clients
    return build


@dataclass
class SenderAssembly:
    stage: Stage
    sensor: SenderMetrics
    metrics: MetricsServer | None
    lag: LagMonitor
    pipeline: SenderPipeline


def preflight(settings: SenderSettings, environ: Mapping[str, str] | None = None) -> Audiences:
    """The audiences' destinations have credentials, the cluster answers and the four
    topics exist (raises with what to fix)."""
    audiences = audiences_of(settings)
    check_credentials(settings, destinations_used(audiences))
    admin_config, _ = kafka_config(settings, "admin", environ)
    verify_topics(admin_config, {"PROCESSOR_CONV_OUTPUT_TOPIC": settings.outbox_topic,
                                 "PROCESSOR_CONV_DELAY_TOPIC": settings.delay_topic,
                                 "PROCESSOR_CONV_SENT_TOPIC": settings.sent_topic,
                                 "PROCESSOR_CONV_DLQ_TOPIC": settings.dlq_topic},
                  settings.startup_timeout)
    return audiences


def assemble(settings: SenderSettings, audiences: Audiences, clock: Clock | None = None,
             environ: Mapping[str, str] | None = None,
             stop: StopRequest | None = None) -> SenderAssembly:
    clock = clock or SystemClock()
    used = destinations_used(audiences)
    lacking = settings.missing_credentials()
    # Credentials present, whether or not the file uses them now: a record of an audience
    # taken out of the file since is still sent where its credentials allow.
    ready = frozenset(d for d in Destination if not lacking[(d, False)])
    sensor = SenderMetrics([(key, [d for k, d, _ in used if k == key])
                            for key in dict.fromkeys(k for k, _, _ in used)],
                           liveness_timeout=max(60.0, settings.shutdown_timeout + 30.0),
                           clock=clock)
    exactly_once = settings.delivery is Delivery.EXACTLY_ONCE
    consumer_config, consumer_sources = kafka_config(settings, "consumer", environ)
    producer_config, producer_sources = kafka_config(settings, "producer", environ)
    admin_config, _ = kafka_config(settings, "admin", environ)
    limits = producer_limits(admin_config, [settings.delay_topic, settings.sent_topic,
                                            settings.dlq_topic],
                             settings.startup_timeout, producer_config, producer_sources)
    source = KafkaSource(consumer_config, consumer_sources,
                         on_commit=lambda ok: sensor.committed(ok, clock.time()))
    sink = KafkaSink(producer_config, producer_sources)
    policy = DeliveryPolicy(
        max_in_flight=settings.max_in_flight,
        rate_limits={Destination.META: settings.meta_rate_limit_per_minute,
                     Destination.GOOGLE: settings.google_rate_limit_per_minute},
        retry_deadline=settings.retry_deadline, backoff=Backoff(),
        breaker_threshold=settings.breaker_threshold, breaker_reset=settings.breaker_reset,
        meta_max_age=settings.meta_max_age, test=settings.dry_run)
    pool = DeliveryPool(clients_factory(settings, clock, ready), policy, clock, sensor)
    options = SenderOptions(
        destinations=ready,
        missing={Destination.META: lacking[(Destination.META, False)],
                 Destination.GOOGLE: lacking[(Destination.GOOGLE, False)]},
        meta_max_age=settings.meta_max_age, google_min_age=settings.google_click_min_age,
        too_recent_delay=settings.too_recent_delay, dry_run=settings.dry_run,
        transactional=exactly_once)
    batcher = Batcher({Destination.META: settings.meta_batch_max,
                       Destination.GOOGLE: settings.google_batch_max}, settings.linger, clock)
    pipeline = SenderPipeline(
        topics=SenderTopics(settings.outbox_topic, settings.delay_topic, settings.sent_topic,
                            settings.dlq_topic),
        options=options, pool=pool, batcher=batcher, sink=sink, gate=source, sensor=sensor,
        clock=clock, limits=limits)
    lag = LagMonitor(admin_config, settings.group_id, sensor, interval=settings.lag_interval,
                     auto_offset_reset=settings.auto_offset_reset)
    stage = Stage(options=StageOptions(
        input_topics=(settings.outbox_topic, settings.delay_topic),
        max_batch=settings.max_batch, max_buffered=settings.max_buffered,
        commit_interval=settings.commit_interval, shutdown_timeout=settings.shutdown_timeout,
        transactional=exactly_once),
        source=source, sink=sink, pipeline=pipeline, sensor=sensor, clock=clock,
        on_assignment=lag.owned, stop=stop)
    metrics = (MetricsServer(sensor, settings.metrics_host, settings.metrics_port)
               if settings.metrics_port else None)
    return SenderAssembly(stage, sensor, metrics, lag, pipeline)


class _Lingering:
    """The stage, kept a while after a fatal error with its metrics still served: the
    next scrape sees conversions_destination_stopped before the exit (a second signal
    ends the wait)."""

    def __init__(self, stage: Stage, linger: float, stop: StopRequest) -> None:
        self._stage, self._linger, self._stop = stage, linger, stop

    def run(self) -> None:
        try:
            self._stage.run()
        except FatalError:
            self._stop.event.wait(self._linger)
            raise


def run(settings: SenderSettings, stop: StopRequest) -> int:
    from processor.adapters import logs  # noqa: PLC0415

    logs.configure(settings.log_level, settings.log_format)
    found: list[Audiences] = []
    if not checked(lambda: found.append(preflight(settings)), stop):
        return 0
    assembly = assemble(settings, found[0], stop=stop)
    log.info("sending: %s and %s -> %s (dead letters: %s), group %s, %s, %d requests in "
             "flight at most per destination%s", settings.outbox_topic, settings.delay_topic,
             settings.sent_topic, settings.dlq_topic, settings.group_id,
             settings.delivery.value, settings.max_in_flight,
             ", dry run" if settings.dry_run else "")
    return run_stage(_Lingering(assembly.stage, settings.fatal_linger, stop),
                     [assembly.metrics, assembly.lag])


# --- the command ---------------------------------------------------------------------------


def _flags() -> list[str]:
    """Every setting but the secrets: a command line is visible to anyone on the host."""
    return [f for f, info in SenderSettings.model_fields.items()
            if info.annotation is not SecretStr]


def _default(value: Any) -> str:
    value = getattr(value, "value", value)
    return "''" if value == "" else str(value)


def _send(args: argparse.Namespace) -> int:
    given = {f: getattr(args, f) for f in _flags() if getattr(args, f, None) is not None}
    return run(load_as(SenderSettings, given), args.stop)


def add_send_command(tools: Any) -> None:
    """Register ``send`` among the ``processor conversions`` tools."""
    secrets = [env_name(f, SenderSettings) for f, info in SenderSettings.model_fields.items()
               if info.annotation is SecretStr]
    send = tools.add_parser(
        "send", help="send the conversions to Meta and Google until SIGTERM/SIGINT",
        description="Send every conversion of the conversions topic to the destinations of "
                    "its audience (Meta Conversions API, Google Data Manager or Google Ads "
                    "API); write each result to the audit topic and each rejection to the "
                    "dead-letter topic. Every option falls back to its environment variable; "
                    "librdkafka properties pass through as for run. Secrets are read from "
                    f"the environment only, never from flags: {', '.join(secrets)}.")
    for field in _flags():
        info = SenderSettings.model_fields[field]
        send.add_argument("--" + field.replace("_", "-"), dest=field, default=None,
                          metavar="VALUE",
                          help=f"{info.description} [env: {env_name(field, SenderSettings)}; "
                               f"default: {_default(info.default)}]")
    send.set_defaults(handler=_send)
