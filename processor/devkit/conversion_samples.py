"""Sample conversions-topic records and the sender's environment against the local
Meta- and Google-compatible servers, for the demo, the benchmark and the tests.

``sample_conversion`` writes a record as the conversions stage does
(``schemas/conversion.schema.json``): hashed match keys, a click observed some time
ago, Meta's browser context, the destinations of one of ``AUDIENCES``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from typing import Any

from processor.core.conversions.timestamps import rfc3339
from processor.devkit import google_server, meta_server

PIXEL = "1234567890"
CUSTOMER = "5550001111"
ACTION = "987654321"
HOUR = 3600

AUDIENCES = f"""
version: 1
audiences:
  - key: both_7d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 7d
    destinations:
      meta: {{pixel_id: "{PIXEL}", event_name: Lead, custom_data: {{value: 250, currency: USD}}}}
      google: {{customer_id: "{CUSTOMER}", conversion_action_id: "{ACTION}", value: 250,
               currency: USD, consent: {{ad_user_data: CONSENT_GRANTED,
                                         ad_personalization: CONSENT_GRANTED}}}}
  - key: meta_7d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 7d
    destinations:
      meta: {{pixel_id: "{PIXEL}", event_name: Lead}}
  - key: google_30d
    criteria: traits.lifecycle == "MQL"
    event_timestamp: traits.mql_at
    within: 30d
    destinations:
      google: {{customer_id: "{CUSTOMER}", conversion_action_id: "{ACTION}"}}
  - key: ads_30d
    criteria: traits.lifecycle == "SQL"
    event_timestamp: traits.sql_at
    within: 30d
    destinations:
      google: {{api: ads, customer_id: "{CUSTOMER}", conversion_action_id: "{ACTION}",
               login_customer_id: "1112223333"}}
"""

# Each audience's destinations as a record carries them (the audience file's, canonical).
DESTINATIONS: dict[str, dict[str, Any]] = {
    "both_7d": {"meta": {"pixel_id": PIXEL, "event_name": "Lead", "action_source": "website",
                         "custom_data": {"value": 250, "currency": "USD"}},
                "google": {"api": "data_manager", "customer_id": CUSTOMER,
                           "conversion_action_id": ACTION, "value": 250.0, "currency": "USD",
                           "consent": {"ad_user_data": "CONSENT_GRANTED",
                                       "ad_personalization": "CONSENT_GRANTED"}}},
    "meta_7d": {"meta": {"pixel_id": PIXEL, "event_name": "Lead",
                         "action_source": "website"}},
    "google_30d": {"google": {"api": "data_manager", "customer_id": CUSTOMER,
                              "conversion_action_id": ACTION}},
    "ads_30d": {"google": {"api": "ads", "customer_id": CUSTOMER,
                           "conversion_action_id": ACTION, "login_customer_id": "1112223333"}},
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def conversion_id(n: int, salt: str = "") -> str:
    return "cbc_" + sha(f"{salt}:{n}")[:32]


def sample_conversion(n: int, audience: str = "both_7d", *, salt: str = "",
                      entry_ts: int | None = None, click_age: float = 2 * 86_400,
                      google_click: str | None = "gclid", fbc: bool = True,
                      keys: bool = True, now: float | None = None) -> dict[str, Any]:
    """Conversion ``n`` of ``audience``: entered an hour ago unless ``entry_ts``, its
    clicks ``click_age`` seconds old."""
    now = time.time() if now is None else now
    entry = int(now - HOUR) if entry_ts is None else entry_ts
    click_ms = int((now - click_age) * 1000)
    destinations = DESTINATIONS[audience]
    clicks: dict[str, Any] = {}
    matching: dict[str, Any] = {}
    record: dict[str, Any] = {
        "v": 1, "conversion_id": conversion_id(n, salt), "audience": audience,
        "person_key": f"user-{n}", "user_id": f"user-{n}", "anonymous_id": f"anon-{n}",
        "entry_ts": entry, "conversion_time": rfc3339(entry),
        "destinations": destinations, "clicks": clicks, "matching": matching}
    if "google" in destinations:
        if google_click:
            clicks["google"] = {"type": google_click, "value": f"Cj0K-{n}-{salt}",
                                "observed_at_ms": click_ms}
        matching["google"] = {"email_address": sha(f"person{n}@example.com")} if keys else {}
    if "meta" in destinations:
        if fbc:
            clicks["fbc"] = {"type": "fbc", "value": f"fb.1.{click_ms}.IwAR{n}",
                             "observed_at_ms": click_ms, "source": "fbclid"}
        matching["meta"] = {"em": sha(f"person{n}@example.com"),
                            "external_id": sha(f"user-{n}")} if keys else {}
        record["context"] = {"client_ip_address": "203.0.113.7",
                             "client_user_agent": "Mozilla/5.0 (X11; Linux)",
                             "event_source_url": "https://www.shop.example/pricing"}
    return record


def sender_environment(bootstrap: str, topics: Mapping[str, str], audiences_file: str,
                       meta: meta_server.MetaServer, google: google_server.GoogleServer,
                       **extra: str) -> dict[str, str]:
    """The environment of ``processor conversions send`` against the local servers, with
    their own (local, not secret) credentials. ``topics``: outbox, delayed, sent, dlq and
    group."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROCESSOR_", "META_", "GOOGLE_", "KAFKA_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROCESSOR_CONV_OUTPUT_TOPIC": topics["outbox"],
        "PROCESSOR_CONV_DELAY_TOPIC": topics["delayed"],
        "PROCESSOR_CONV_SENT_TOPIC": topics["sent"], "PROCESSOR_CONV_DLQ_TOPIC": topics["dlq"],
        "PROCESSOR_CONV_SENDER_GROUP_ID": topics["group"],
        "PROCESSOR_CONV_AUDIENCES_FILE": audiences_file,
        "META_ACCESS_TOKEN": meta_server.DEFAULT_TOKEN, "META_BASE_URL": meta.url,
        "GOOGLE_OAUTH_CLIENT_ID": google_server.DEFAULT_CLIENT_ID,
        "GOOGLE_OAUTH_CLIENT_SECRET": google_server.DEFAULT_CLIENT_SECRET,
        "GOOGLE_OAUTH_REFRESH_TOKEN": google_server.DEFAULT_REFRESH_TOKEN,
        "GOOGLE_ADS_DEVELOPER_TOKEN": google_server.DEFAULT_DEVELOPER_TOKEN,
        "GOOGLE_TOKEN_URL": google.token_url, "GOOGLE_DATAMANAGER_BASE_URL": google.url,
        "GOOGLE_ADS_BASE_URL": google.url,
        "PROCESSOR_METRICS_PORT": "0", "PROCESSOR_LOG_FORMAT": "json",
        "PROCESSOR_CONV_FATAL_LINGER": "0s",
    })
    env.update(extra)
    return env
