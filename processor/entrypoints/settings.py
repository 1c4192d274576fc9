"""Settings: one frozen, typed object read from the environment (12-factor).

Every field names its environment variable, default and meaning once, here;
the CLI's ``--help``, its flags and the README table are derived from this.
Durations accept a number of seconds or a number with a unit: ``250ms``,
``30s``, ``5m``, ``12h``, ``7d``.

Any librdkafka property can be passed through the environment:
``PROCESSOR_KAFKA_<PROPERTY>`` for every client (``PROCESSOR_KAFKA_SECURITY_PROTOCOL``
becomes ``security.protocol``), ``PROCESSOR_KAFKA_CONSUMER_<PROPERTY>`` and
``PROCESSOR_KAFKA_PRODUCER_<PROPERTY>`` for one client only. Underscores
become dots; a double underscore stands for a literal underscore.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from processor.core.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def parse_duration(value: Any) -> Any:
    """``"7d"`` -> 604800.0; numbers pass through as seconds."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError("must be a duration such as 30s, 5m, 12h or 7d")
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return value


def topic_name(value: str) -> str:
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise ValueError("must be a Kafka topic name: 1-249 characters of A-Z a-z 0-9 . _ -")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Topic = Annotated[str, AfterValidator(topic_name)]


class Delivery(StrEnum):
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


class ProviderName(StrEnum):
    CLEARBIT = "clearbit"
    HUNTER = "hunter"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def env_var(name: str, default: Any, description: str, **constraints: Any) -> Any:
    return Field(default, validation_alias=name, description=description, **constraints)


class StageSettings(BaseSettings):
    """What every stage's runtime reads: the cluster, the group, delivery, the loop's
    bounds, and operations. Each stage's settings add their own fields."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True, validate_default=True)

    # --- Kafka --------------------------------------------------------------------
    bootstrap_servers: str = env_var("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092",
                                  "Kafka brokers, host:port[,host:port...]", min_length=1)
    group_id: str = env_var("PROCESSOR_GROUP_ID", "clearbit-enrichment", "consumer group id",
                         min_length=1)
    delivery: Delivery = env_var("PROCESSOR_DELIVERY", Delivery.AT_LEAST_ONCE,
                              "at-least-once, or exactly-once (Kafka transactions)")
    transactional_id: str = env_var("PROCESSOR_TRANSACTIONAL_ID", "",
                                 "exactly-once only: stable per instance; default "
                                 "<group id>-<host name>")
    commit_interval: Duration = env_var("PROCESSOR_COMMIT_INTERVAL", "1s",
                                     "how often offsets (or transactions) are committed")
    auto_offset_reset: str = env_var("PROCESSOR_AUTO_OFFSET_RESET", "earliest",
                                  "where a new group starts: earliest or latest",
                                  pattern="^(earliest|latest)$")
    max_batch: int = env_var("PROCESSOR_MAX_BATCH", 500, "records taken per poll", ge=1, le=100_000)
    max_buffered: int = env_var("PROCESSOR_MAX_BUFFERED", 10_000,
                             "unfinished records at most before fetching pauses", ge=1,
                             le=10_000_000)
    startup_timeout: Duration = env_var("PROCESSOR_STARTUP_TIMEOUT", "30s",
                                     "at start: how long to wait for the cluster to answer",
                                     gt=0)
    shutdown_timeout: Duration = env_var("PROCESSOR_SHUTDOWN_TIMEOUT", "20s",
                                      "on SIGTERM or a revoke: time for in-flight records "
                                      "to finish before they are left for a later run")

    # --- operations -------------------------------------------------------------------
    metrics_port: int = env_var("PROCESSOR_METRICS_PORT", 9108,
                             "port of /metrics, /healthz and /readyz (0: off)", ge=0, le=65535)
    metrics_host: str = env_var("PROCESSOR_METRICS_HOST", "0.0.0.0",  # noqa: S104 - scraped from outside the pod
                             "address the metrics port binds to")
    lag_interval: Duration = env_var("PROCESSOR_LAG_INTERVAL", "5s",
                                  "how often consumer lag is measured", gt=0)
    log_level: str = env_var("PROCESSOR_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR",
                          pattern="^(?i:debug|info|warning|error)$")
    log_format: LogFormat = env_var("PROCESSOR_LOG_FORMAT", LogFormat.AUTO,
                                 "auto (JSON unless on a terminal), json or console")

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"{self.group_id}-{socket.gethostname()}"


S = TypeVar("S", bound=StageSettings)


class Settings(StageSettings):
    """The enrichment stage's settings (``processor run``)."""

    # --- topics -------------------------------------------------------------------
    input_topic: Topic = env_var("PROCESSOR_INPUT_TOPIC", "identify.raw",
                              "topic of raw Segment Identify events")
    output_topic: Topic = env_var("PROCESSOR_OUTPUT_TOPIC", "identify.enriched",
                               "topic for the enriched Identify events")
    dlq_topic: Topic = env_var("PROCESSOR_DLQ_TOPIC", "identify.dlq",
                            "dead-letter topic: records that cannot be processed, with why")

    # --- lookups --------------------------------------------------------------------
    provider: ProviderName = env_var("PROCESSOR_PROVIDER", ProviderName.CLEARBIT,
                                  "enrichment provider: clearbit or hunter")
    max_in_flight: int = env_var("PROCESSOR_MAX_IN_FLIGHT", 32,
                              "lookups in flight at most (the worker pool's size)", ge=1,
                              le=10_000)
    clearbit_api_key: SecretStr = env_var("CLEARBIT_API_KEY", SecretStr(""),
                                       "Clearbit secret key (sk_...); required for clearbit")
    clearbit_base_url: str = env_var("CLEARBIT_BASE_URL", "https://person.clearbit.com",
                                  "where the Clearbit API lives", pattern=r"^https?://\S+$")
    hunter_api_key: SecretStr = env_var("HUNTER_API_KEY", SecretStr(""),
                                     "Hunter API key; required for hunter")
    hunter_base_url: str = env_var("HUNTER_BASE_URL", "https://api.hunter.io",
                                "where the Hunter API lives", pattern=r"^https?://\S+$")
    hunter_rate_limit_per_minute: int = env_var("HUNTER_RATE_LIMIT_PER_MINUTE", 500,
                                             "hunter only: requests per minute at most "
                                             "(Hunter's documented limit)", ge=0)
    http_client: str = env_var("PROCESSOR_HTTP_CLIENT", "aiohttp",
                            "HTTP client for lookups: aiohttp, or httpx (slower: see README)",
                            pattern="^(aiohttp|httpx)$")
    request_timeout: Duration = env_var("PROCESSOR_REQUEST_TIMEOUT", "10s",
                                        "timeout of one provider request, from connecting to "
                                        "the answer's last byte", gt=0)
    max_answer_bytes: int = env_var("PROCESSOR_MAX_ANSWER_BYTES", 1_048_576,
                                    "a provider answer larger than this (decoded) is refused "
                                    "unread: dead letter answer_too_large (Clearbit's are "
                                    "about 10 kB)", ge=1024, le=1_000_000_000)
    rate_limit_max_wait: Duration = env_var("PROCESSOR_RATE_LIMIT_MAX_WAIT", "5m",
                                            "a 429 holds lookups for its Retry-After or "
                                            "x-ratelimit-reset, at most this long", gt=0)
    rate_limit_per_minute: int = env_var("CLEARBIT_RATE_LIMIT_PER_MINUTE", 600,
                                        "clearbit only: requests per minute at most "
                                        "(0: no limit)",
                                        ge=0)
    max_attempts: int = env_var("PROCESSOR_MAX_ATTEMPTS", 8,
                             "attempts per lookup on timeouts, 5xx and connection errors",
                             ge=1, le=1000)
    retry_deadline: Duration = env_var("PROCESSOR_RETRY_DEADLINE", "5m",
                                    "give up retrying a lookup (dead letter) after this long")
    breaker_threshold: int = env_var("PROCESSOR_BREAKER_THRESHOLD", 5,
                                  "consecutive provider failures that open the circuit", ge=1)
    breaker_reset: Duration = env_var("PROCESSOR_BREAKER_RESET", "10s",
                                   "how long the circuit stays open before a probe", gt=0)
    quota_retry_interval: Duration = env_var("PROCESSOR_QUOTA_RETRY_INTERVAL", "60s",
                                          "after a 402, how often to probe the quota", gt=0)
    queued_retry_interval: Duration = env_var("PROCESSOR_QUEUED_RETRY_INTERVAL", "5s",
                                           "after a 202, when to ask again", gt=0)
    queued_deadline: Duration = env_var("PROCESSOR_QUEUED_DEADLINE", "2m",
                                     "after a first 202, give up (dead letter) after this long")

    # --- cache ------------------------------------------------------------------------
    cache_ttl: Duration = env_var("PROCESSOR_CACHE_TTL", "7d",
                               "how long a found record is reused without a new lookup")
    not_found_ttl: Duration = env_var("PROCESSOR_NOT_FOUND_TTL", "1d",
                                   "how long a 404 (or 422) is remembered")
    cache_max_entries: int = env_var("PROCESSOR_CACHE_MAX_ENTRIES", 20_000,
                                  "emails kept in the cache at most, about 5 KiB each "
                                  "(0: no cache)", ge=0)
    cache_topic: str = env_var("PROCESSOR_CACHE_TOPIC", "",
                            "compacted topic that keeps the cache across restarts and "
                            "shares it between replicas ('': off)")

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.cache_topic:
            topic_name(self.cache_topic)
            if self.cache_topic in (self.input_topic, self.output_topic, self.dlq_topic):
                raise ValueError("PROCESSOR_CACHE_TOPIC must be a topic of its own")
        if self.dlq_topic in (self.input_topic, self.output_topic):
            raise ValueError("PROCESSOR_DLQ_TOPIC must differ from the input and output "
                             "topics (dead letters would be read back forever)")
        return self

    def check_api_key(self) -> None:
        """The provider's key must be there and be the right kind (checked by ``run`` only:
        tools such as ``replay-dlq`` need no key)."""
        if self.provider is ProviderName.CLEARBIT:
            key = self.clearbit_api_key.get_secret_value().strip()
            if not key:
                raise ConfigError("CLEARBIT_API_KEY is required: set it to your Clearbit "
                                  "secret key (sk_...)")
            if key.startswith("pk_"):
                raise ConfigError("CLEARBIT_API_KEY is Clearbit's publishable key (pk_...); "
                                  "enrichment needs the secret key, which starts with sk_")
        elif not self.hunter_api_key.get_secret_value().strip():
            raise ConfigError("HUNTER_API_KEY is required when PROCESSOR_PROVIDER=hunter")

    @property
    def api_key(self) -> str:
        secret = (self.clearbit_api_key if self.provider is ProviderName.CLEARBIT
                  else self.hunter_api_key)
        return secret.get_secret_value().strip()

    @property
    def provider_rate_limit(self) -> int:
        """Requests per minute allowed to the selected provider."""
        if self.provider is ProviderName.HUNTER:
            return self.hunter_rate_limit_per_minute
        return self.rate_limit_per_minute

    # --- formats (Avro) -------------------------------------------------------------------
    input_format: str = env_var("PROCESSOR_INPUT_FORMAT", "json",
                             "format of input values: json, or avro (Confluent wire format, "
                             "schemas/identify.avsc; needs SCHEMA_REGISTRY_URL)",
                             pattern="^(json|avro)$")
    output_format: str = env_var("PROCESSOR_OUTPUT_FORMAT", "json",
                              "format of output values: json, or avro (schemas/identify-enriched"
                              ".avsc, registered under <output topic>-value)",
                              pattern="^(json|avro)$")
    schema_registry_url: str = env_var("SCHEMA_REGISTRY_URL", "",
                                    "schema registry (Confluent REST API) URL[,URL...]; "
                                    "required for avro")
    schema_registry_basic_auth_user_info: SecretStr = env_var(
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", SecretStr(""),
        "registry HTTP basic auth as user:password; optional")
    schema_registry_ca_location: str = env_var("SCHEMA_REGISTRY_SSL_CA_LOCATION", "",
                                            "CA file or folder to trust for an https registry "
                                            "(default: certifi's bundle)")
    schema_registry_auto_register: bool = env_var("SCHEMA_REGISTRY_AUTO_REGISTER", True,
                                               "register the output schema at start; false: "
                                               "it must be registered already")

    @model_validator(mode="after")
    def _registry_for_avro(self) -> Settings:
        avro = [name for name, value in (("PROCESSOR_INPUT_FORMAT", self.input_format),
                                         ("PROCESSOR_OUTPUT_FORMAT", self.output_format))
                if value == "avro"]
        if avro and not self.schema_registry_url:
            verb = "are" if len(avro) > 1 else "is"
            raise ValueError(f"SCHEMA_REGISTRY_URL is required when {' and '.join(avro)} {verb} "
                             "avro: set it to the schema registry's URL (Confluent-compatible "
                             "REST API, e.g. http://registry:8081)")
        urls = [url.strip() for url in self.schema_registry_url.split(",")]
        if self.schema_registry_url and not all(
                re.fullmatch(r"https?://[^\s,/]+(/\S*)?", url) for url in urls):
            raise ValueError("SCHEMA_REGISTRY_URL must be http(s)://host[:port][/path], or "
                             "several of them separated by commas")
        user_info = self.schema_registry_basic_auth_user_info.get_secret_value()
        if user_info and ":" not in user_info:
            raise ValueError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must be user:password")
        return self


def env_name(field: str, kind: type[StageSettings] | None = None) -> str:
    alias = (kind or Settings).model_fields[field].validation_alias
    return str(alias)


def load(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read and validate the enrichment stage's settings; ``ConfigError`` names the
    variable to fix."""
    return load_as(Settings, overrides)


def load_as(kind: type[S], overrides: Mapping[str, Any] | None = None) -> S:
    """Read and validate one stage's settings; ``ConfigError`` names the variable to fix."""
    try:
        return kind(**dict(overrides or {}))
    except ValidationError as error:
        raise ConfigError(describe(error, kind)) from None


def describe(error: ValidationError, kind: type[StageSettings] | None = None) -> str:
    """One line per problem, each naming the environment variable."""
    kind = kind or Settings
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        message = str(problem["msg"]).removeprefix("Value error, ")
        where = problem["loc"][0] if problem["loc"] else ""
        name = env_name(str(where), kind) if where in kind.model_fields else str(where)
        lines.append(f"{name}: {message}" if name else message)
    return "\n".join(lines)


# --- librdkafka pass-through -----------------------------------------------------------

KAFKA_PREFIXES = {"all": "PROCESSOR_KAFKA_", "consumer": "PROCESSOR_KAFKA_CONSUMER_",
                  "producer": "PROCESSOR_KAFKA_PRODUCER_"}


def _property(suffix: str) -> str:
    return suffix.lower().replace("__", "\0").replace("_", ".").replace("\0", "_")


def kafka_overrides(client: str, environ: Mapping[str, str] | None = None
                    ) -> tuple[dict[str, str], dict[str, str]]:
    """librdkafka properties from the environment for ``client`` (consumer, producer or
    admin), and for each property the variable it came from (for error messages)."""
    environ = os.environ if environ is None else environ
    props: dict[str, str] = {}
    sources: dict[str, str] = {}
    specific = tuple(v for k, v in KAFKA_PREFIXES.items() if k != "all")
    for name in sorted(environ):
        if not name.startswith(KAFKA_PREFIXES["all"]) or name.startswith(specific):
            continue
        prop = _property(name[len(KAFKA_PREFIXES["all"]):])
        props[prop], sources[prop] = environ[name], name
    own = KAFKA_PREFIXES.get(client)
    if own and client != "all":
        for name in sorted(environ):
            if name.startswith(own):
                prop = _property(name[len(own):])
                props[prop], sources[prop] = environ[name], name
    return props, sources
