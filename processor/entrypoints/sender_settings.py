"""The sender's settings (``processor conversions send``).

The cluster, delivery, loop and operations variables are the runtime's
(``StageSettings``), with a consumer group of its own. The conversions topic, the
dead-letter topic and the audiences file are the conversions stage's variables, with the
same defaults, so one environment configures both commands. Credentials are secrets:
read from the environment only, never from flags, never logged.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from processor.core.conversions.durations import parse_duration as parse_compound
from processor.core.conversions.sending import GOOGLE_MAX_EVENTS, META_MAX_EVENTS, Destination
from processor.core.errors import ConfigError
from processor.entrypoints.settings import (
    Duration,
    StageSettings,
    Topic,
    env_var,
    parse_duration,
)

URL = r"^https?://\S+$"
MAX_META_AGE = 7 * 86_400


def _compound(value: Any) -> Any:
    """A duration as the settings take it, or written as the audiences file does (6d23h)."""
    try:
        return parse_duration(value)
    except ValueError:
        if isinstance(value, str):
            return float(parse_compound(value))
        raise


# The age limits are days and hours; the audiences file writes them 6d23h.
AgeDuration = Annotated[float, BeforeValidator(_compound), Field(ge=0)]


class SenderSettings(StageSettings):
    """``processor conversions send``: conversions out to Meta and Google."""

    group_id: str = env_var("PROCESSOR_CONV_SENDER_GROUP_ID", "clearbit-conversions-sender",
                         "consumer group id of the sender", min_length=1)

    # --- topics -------------------------------------------------------------------
    outbox_topic: Topic = env_var("PROCESSOR_CONV_OUTPUT_TOPIC", "conversions.outbox",
                               "topic of the conversions to send, one per audience entry")
    delay_topic: Topic = env_var("PROCESSOR_CONV_DELAY_TOPIC", "conversions.delayed",
                              "topic where Google conversions wait for their click to be old "
                              "enough (retention: at least a day)")
    sent_topic: Topic = env_var("PROCESSOR_CONV_SENT_TOPIC", "conversions.sent",
                             "audit topic: the result of every send")
    dlq_topic: Topic = env_var("PROCESSOR_CONV_DLQ_TOPIC", "conversions.dlq",
                            "dead-letter topic of the conversions stage")
    audiences_file: str = env_var("PROCESSOR_CONV_AUDIENCES_FILE", "",
                               "YAML file of the audiences (the destinations used are "
                               "checked against the credentials at start); required")

    # --- sending ------------------------------------------------------------------
    linger: Duration = env_var("PROCESSOR_CONV_LINGER", "1s",
                            "how long a conversion may wait for its batch to fill")
    max_in_flight: int = env_var("PROCESSOR_CONV_MAX_IN_FLIGHT", 8,
                              "requests in flight at most, per destination", ge=1, le=256)
    dry_run: bool = env_var("PROCESSOR_CONV_DRY_RUN", False,
                         "send test events only: Meta's test_event_code, Google's "
                         "validateOnly (nothing is counted by the platforms)")
    meta_max_age: AgeDuration = env_var("PROCESSOR_CONV_META_MAX_AGE", "6d23h",
                                  "conversions older than this are never sent to Meta "
                                  "(skipped: meta_too_old)", gt=0, le=MAX_META_AGE)
    google_click_min_age: AgeDuration = env_var("PROCESSOR_CONV_GOOGLE_CLICK_MIN_AGE", "6h",
                                          "a Google conversion waits until its click is "
                                          "this old (Google: TOO_RECENT_EVENT before)")
    too_recent_delay: Duration = env_var("PROCESSOR_CONV_TOO_RECENT_DELAY", "1h",
                                      "when Google still answers TOO_RECENT_EVENT, how long "
                                      "until the conversion is sent again", gt=0)
    retry_deadline: Duration = env_var("PROCESSOR_RETRY_DEADLINE", "5m",
                                    "give up retrying a transient failure (dead letter: "
                                    "retries_exhausted) after this long; throttling never "
                                    "gives up")
    request_timeout: Duration = env_var("PROCESSOR_CONV_REQUEST_TIMEOUT", "30s",
                                     "timeout of one request to an ad platform", gt=0)
    breaker_threshold: int = env_var("PROCESSOR_BREAKER_THRESHOLD", 5,
                                  "consecutive failures of a destination that open its "
                                  "circuit", ge=1)
    breaker_reset: Duration = env_var("PROCESSOR_BREAKER_RESET", "10s",
                                   "how long a circuit stays open before a probe", gt=0)
    http_client: str = env_var("PROCESSOR_HTTP_CLIENT", "aiohttp",
                            "HTTP client: aiohttp, or httpx", pattern="^(aiohttp|httpx)$")
    fatal_linger: Duration = env_var("PROCESSOR_CONV_FATAL_LINGER", "30s",
                                  "after a destination refused the credentials: how long "
                                  "/metrics stays up (so the stop is scraped) before exit 3")

    # --- Meta -----------------------------------------------------------------------
    meta_access_token: SecretStr = env_var("META_ACCESS_TOKEN", SecretStr(""),
                                        "Conversions API access token; required by audiences "
                                        "that send to meta")
    meta_base_url: str = env_var("META_BASE_URL", "https://graph.facebook.com",
                              "where the Graph API lives", pattern=URL)
    meta_api_version: str = env_var("META_API_VERSION", "v24.0", "Graph API version",
                                 pattern=r"^v\d+\.\d+$")
    meta_test_event_code: str = env_var("META_TEST_EVENT_CODE", "",
                                     "Events Manager's test code, sent in dry runs "
                                     "(required then)")
    meta_batch_max: int = env_var("META_BATCH_MAX", 500, "events per Meta request at most",
                               ge=1, le=META_MAX_EVENTS)
    meta_rate_limit_per_minute: int = env_var("META_RATE_LIMIT_PER_MINUTE", 0,
                                           "Meta requests per minute at most (0: none; "
                                           "throttling answers are followed anyway)", ge=0)

    # --- Google -----------------------------------------------------------------------
    google_client_id: str = env_var("GOOGLE_OAUTH_CLIENT_ID", "",
                                 "OAuth client id; required by audiences that send to "
                                 "google")
    google_client_secret: SecretStr = env_var("GOOGLE_OAUTH_CLIENT_SECRET", SecretStr(""),
                                           "OAuth client secret; required with google")
    google_refresh_token: SecretStr = env_var("GOOGLE_OAUTH_REFRESH_TOKEN", SecretStr(""),
                                           "OAuth refresh token; required with google")
    google_token_url: str = env_var("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token",
                                 "OAuth token endpoint (refresh-token grant)", pattern=URL)
    google_datamanager_base_url: str = env_var("GOOGLE_DATAMANAGER_BASE_URL",
                                            "https://datamanager.googleapis.com",
                                            "where the Data Manager API lives", pattern=URL)
    google_ads_base_url: str = env_var("GOOGLE_ADS_BASE_URL",
                                    "https://googleads.googleapis.com",
                                    "where the Google Ads API lives", pattern=URL)
    google_ads_api_version: str = env_var("GOOGLE_ADS_API_VERSION", "v26",
                                       "Google Ads API version", pattern=r"^v\d+$")
    google_ads_developer_token: SecretStr = env_var(
        "GOOGLE_ADS_DEVELOPER_TOKEN", SecretStr(""),
        "Google Ads developer token; required by audiences with api: ads")
    google_batch_max: int = env_var("GOOGLE_BATCH_MAX", 2000,
                                 "events (or rows) per Google request at most", ge=1,
                                 le=GOOGLE_MAX_EVENTS)
    google_rate_limit_per_minute: int = env_var("GOOGLE_RATE_LIMIT_PER_MINUTE", 300,
                                             "Google requests per minute at most (Data "
                                             "Manager allows 300 per Cloud project)", ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> SenderSettings:
        topics = [self.outbox_topic, self.delay_topic, self.sent_topic, self.dlq_topic]
        if len(set(topics)) != len(topics):
            raise ValueError("PROCESSOR_CONV_OUTPUT_TOPIC, _DELAY_TOPIC, _SENT_TOPIC and "
                             "_DLQ_TOPIC must be four different topics")
        if self.dry_run != bool(self.meta_test_event_code.strip()) and (
                self.meta_access_token.get_secret_value()):
            raise ValueError("META_TEST_EVENT_CODE: a dry run sends Meta test events, which "
                             "need Events Manager's test code; set both "
                             "PROCESSOR_CONV_DRY_RUN=true and META_TEST_EVENT_CODE, or "
                             "neither")
        return self

    def missing_credentials(self) -> dict[tuple[Destination, bool], str]:
        """What each destination lacks, by (destination, uses the Ads API): "" when
        nothing. The names of the variables, never their values."""
        meta = [] if self.meta_access_token.get_secret_value().strip() else [
            "META_ACCESS_TOKEN"]
        google = [name for name, value in (
            ("GOOGLE_OAUTH_CLIENT_ID", self.google_client_id),
            ("GOOGLE_OAUTH_CLIENT_SECRET", self.google_client_secret.get_secret_value()),
            ("GOOGLE_OAUTH_REFRESH_TOKEN", self.google_refresh_token.get_secret_value()))
            if not value.strip()]
        ads = google + ([] if self.google_ads_developer_token.get_secret_value().strip()
                        else ["GOOGLE_ADS_DEVELOPER_TOKEN"])
        return {(Destination.META, False): ", ".join(meta),
                (Destination.GOOGLE, False): ", ".join(google),
                (Destination.GOOGLE, True): ", ".join(ads)}


def check_credentials(settings: SenderSettings, audiences: list[tuple[str, Destination, bool]],
                      ) -> None:
    """Every destination an audience uses has its credentials; else exit 2 naming the
    audience. ``audiences``: (key, destination, uses the Ads API)."""
    lacking = settings.missing_credentials()
    problems = [f"audience {key!r} sends to {destination}"
                f"{' (Google Ads API)' if ads else ''}, but {lacking[(destination, ads)]} "
                "is not set"
                for key, destination, ads in audiences if lacking[(destination, ads)]]
    if problems:
        raise ConfigError("\n".join(problems))
