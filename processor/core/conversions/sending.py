"""What each ad platform is sent for a conversion, and when it may be sent.

Pure functions from a ``Conversion`` (``record.read_record``) to the JSON each API takes:

* Meta Conversions API: one event of ``{"data": [...]}``; ``event_id`` is the conversion
  id (Meta deduplicates on it with ``event_name``), ``event_time`` the entry in seconds,
  ``user_data`` the hashed keys, browser context and ``fbc``/``fbp``;
* Google Data Manager ``events:ingest``: one event, ``transactionId`` the conversion id,
  the one click id in ``adIdentifiers``, hashed ``userIdentifiers`` (``encoding: HEX``);
* Google Ads ``uploadClickConversions``: one row, ``orderId`` the conversion id.

Conversions are grouped per ``Account``: what one request may carry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from processor.core.conversions.destinations import GoogleConsent, GoogleDestination
from processor.core.conversions.record import Conversion

META_MAX_EVENTS = 1000  # Meta's cap on ``data``
GOOGLE_MAX_EVENTS = 2000  # Data Manager's and Google Ads' cap per request
META_MAX_AHEAD = 60  # seconds: Meta refuses an event_time more than this ahead


class Destination(StrEnum):
    META = "meta"
    GOOGLE = "google"


class Api(StrEnum):
    META = "conversions_api"
    DATA_MANAGER = "data_manager"
    ADS = "ads"


class Account(NamedTuple):
    """What one request goes to: Meta's pixel; Data Manager's operating account and
    conversion action (one destination per request); a Google Ads customer (rows name
    their own conversion action). ``login`` is the manager account, or ""."""

    destination: Destination
    api: Api
    account_id: str
    action: str = ""
    login: str = ""

    def label(self) -> str:
        """Which account, for messages: ids only, never a credential."""
        if self.destination is Destination.META:
            return f"meta pixel {self.account_id}"
        action = f", conversion action {self.action}" if self.action else ""
        login = f" via manager {self.login}" if self.login else ""
        return f"google {self.api.value} customer {self.account_id}{action}{login}"


def destinations_of(conversion: Conversion) -> tuple[Destination, ...]:
    found = []
    if conversion.meta is not None:
        found.append(Destination.META)
    if conversion.google is not None:
        found.append(Destination.GOOGLE)
    return tuple(found)


def _google(conversion: Conversion) -> GoogleDestination:
    if conversion.google is None:
        raise ValueError(f"{conversion.conversion_id} has no google destination")
    return conversion.google


def account_of(conversion: Conversion, destination: Destination) -> Account:
    if destination is Destination.META:
        if conversion.meta is None:
            raise ValueError(f"{conversion.conversion_id} has no meta destination")
        return Account(destination, Api.META, conversion.meta.pixel_id)
    google = _google(conversion)
    login = google.login_customer_id or ""
    if google.api == "ads":
        return Account(destination, Api.ADS, google.customer_id, login=login)
    return Account(destination, Api.DATA_MANAGER, google.customer_id,
                   google.conversion_action_id, login)


# --- when -----------------------------------------------------------------------------


def meta_too_old(conversion: Conversion, now: float, max_age: float) -> bool:
    """Meta refuses a whole request when one event is more than 7 days old: such an event
    never enters a batch (``max_age`` leaves a margin under the 7 days)."""
    return now - conversion.entry_ts > max_age


def google_not_before_ms(conversion: Conversion, min_age_ms: int) -> int:
    """When Google takes the conversion: its click ``min_age_ms`` old (Google answers
    ``TOO_RECENT_EVENT`` before), or at once (0) without a click."""
    click = conversion.google_click
    return 0 if click is None else click.observed_at_ms + min_age_ms


def match_keys(conversion: Conversion, destination: Destination) -> tuple[str, ...]:
    """The match keys sent, by name (the audit record's and the match-quality metric's)."""
    if destination is Destination.META:
        keys = [*conversion.meta_keys, *(k for k in ("client_ip_address", "client_user_agent")
                                          if k in conversion.context)]
        keys += [name for name, click in (("fbc", conversion.fbc), ("fbp", conversion.fbp))
                 if click is not None]
    else:
        keys = list(conversion.google_keys)
        if conversion.google_click is not None:
            keys.append(conversion.google_click.type.value)
    return tuple(sorted(keys))


def identifiable(conversion: Conversion, destination: Destination) -> bool:
    """Whether the platform can match it at all: Meta needs some user data, Google a
    click or a user identifier (else Meta answers 100, Google NO_IDENTIFIERS_PROVIDED)."""
    if destination is Destination.META:
        return bool(conversion.meta_keys or conversion.fbc or conversion.fbp
                    or conversion.context.get("client_ip_address")
                    or conversion.context.get("client_user_agent"))
    return bool(conversion.google_keys or conversion.google_click)


# --- Meta -------------------------------------------------------------------------------


def meta_event(conversion: Conversion, now: float) -> dict[str, Any]:
    meta = conversion.meta
    if meta is None:
        raise ValueError(f"{conversion.conversion_id} has no meta destination")
    user: dict[str, Any] = dict(conversion.meta_keys)
    for name in ("client_ip_address", "client_user_agent"):
        if name in conversion.context:
            user[name] = conversion.context[name]
    if conversion.fbc is not None:
        user["fbc"] = conversion.fbc.value
    if conversion.fbp is not None:
        user["fbp"] = conversion.fbp.value
    # An entry may be a few minutes ahead of this clock (the stage allows some skew);
    # Meta refuses more than a minute ahead. Dedup is by event_id, so the time can move.
    event: dict[str, Any] = {
        "event_name": meta.event_name,
        "event_time": min(conversion.entry_ts, int(now) + META_MAX_AHEAD // 2),
        "event_id": conversion.conversion_id,
        "action_source": meta.action_source,
        "user_data": user,
    }
    if "event_source_url" in conversion.context:
        event["event_source_url"] = conversion.context["event_source_url"]
    if meta.custom_data:
        event["custom_data"] = dict(meta.custom_data)
    return event


def meta_body(events: list[dict[str, Any]], test_event_code: str) -> dict[str, Any]:
    body: dict[str, Any] = {"data": events}
    if test_event_code:
        body["test_event_code"] = test_event_code
    return body


def meta_path(version: str, account: Account) -> str:
    return f"/{version}/{account.account_id}/events"


# --- Google -----------------------------------------------------------------------------


def _consent(consent: GoogleConsent | None, ads: bool) -> dict[str, str]:
    """Data Manager's consent as configured; the Ads API spells the values GRANTED and
    DENIED, and takes only ad_user_data on a click conversion."""
    if consent is None:
        return {}
    pairs = [("adUserData", consent.ad_user_data)]
    if not ads:
        pairs.append(("adPersonalization", consent.ad_personalization))
    return {name: value.removeprefix("CONSENT_") if ads else value
            for name, value in pairs if value}


def datamanager_event(conversion: Conversion) -> dict[str, Any]:
    google = _google(conversion)
    event: dict[str, Any] = {"transactionId": conversion.conversion_id,
                             "eventTimestamp": conversion.conversion_time,
                             "eventSource": "WEB"}
    if conversion.google_click is not None:
        click = conversion.google_click
        event["adIdentifiers"] = {click.type.value: click.value}
    identifiers = [{"emailAddress": conversion.google_keys["email_address"]}] \
        if "email_address" in conversion.google_keys else []
    if "phone_number" in conversion.google_keys:
        identifiers.append({"phoneNumber": conversion.google_keys["phone_number"]})
    if identifiers:
        event["userData"] = {"userIdentifiers": identifiers}
    if google.value is not None:
        event["conversionValue"] = google.value
    if google.currency is not None:
        event["currency"] = google.currency
    consent = _consent(google.consent, ads=False)
    if consent:
        event["consent"] = consent
    return event


def datamanager_body(account: Account, events: list[dict[str, Any]],
                     validate_only: bool) -> dict[str, Any]:
    destination: dict[str, Any] = {
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": account.account_id},
        "productDestinationId": account.action}
    if account.login:
        destination["loginAccount"] = {"accountType": "GOOGLE_ADS", "accountId": account.login}
    body: dict[str, Any] = {"destinations": [destination], "encoding": "HEX", "events": events}
    if validate_only:
        body["validateOnly"] = True
    return body


DATAMANAGER_PATH = "/v1/events:ingest"


def ads_date_time(seconds: int) -> str:
    """Google Ads' ``yyyy-mm-dd hh:mm:ss+hh:mm``, in UTC."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def ads_row(conversion: Conversion) -> dict[str, Any]:
    google = _google(conversion)
    row: dict[str, Any] = {
        "conversionAction": f"customers/{google.customer_id}/conversionActions/"
                            f"{google.conversion_action_id}",
        "conversionDateTime": ads_date_time(conversion.entry_ts),
        "orderId": conversion.conversion_id}
    if conversion.google_click is not None:
        row[conversion.google_click.type.value] = conversion.google_click.value
    identifiers = [{"hashedEmail": conversion.google_keys["email_address"]}] \
        if "email_address" in conversion.google_keys else []
    if "phone_number" in conversion.google_keys:
        identifiers.append({"hashedPhoneNumber": conversion.google_keys["phone_number"]})
    if identifiers:
        row["userIdentifiers"] = identifiers
    if google.value is not None:
        row["conversionValue"] = google.value
    if google.currency is not None:
        row["currencyCode"] = google.currency
    consent = _consent(google.consent, ads=True)
    if consent:
        row["consent"] = consent
    return row


def ads_body(rows: list[dict[str, Any]], validate_only: bool) -> dict[str, Any]:
    # Without partialFailure Google fails the whole request for one bad row.
    body: dict[str, Any] = {"conversions": rows, "partialFailure": True}
    if validate_only:
        body["validateOnly"] = True
    return body


def ads_path(version: str, account: Account) -> str:
    return f"/{version}/customers/{account.account_id}:uploadClickConversions"


def payload_of(conversion: Conversion, destination: Destination, api: Api,
               now: float) -> dict[str, Any]:
    """The one event (or row) ``api`` is sent for ``conversion``."""
    if destination is Destination.META:
        return meta_event(conversion, now)
    return ads_row(conversion) if api is Api.ADS else datamanager_event(conversion)
