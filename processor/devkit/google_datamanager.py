"""The Data Manager API's ``events:ingest`` and ``requestStatus:retrieve`` as the
Google-compatible server answers them (``processor.devkit.google_server`` authenticates the
call first).

``POST /v1/events:ingest`` fails fast, as the real one: one bad field
anywhere refuses the whole request with a 400 ``google.rpc.Status`` whose ErrorInfo carries
the first reason and whose BadRequest lists the first bad field of every bad event
(``events[i]....``). It checks: ``destinations`` 1..10 (``TOO_MANY_DESTINATIONS``), each with
``operatingAccount {accountType: GOOGLE_ADS, accountId: digits}``, an optional
``loginAccount`` of the same shape (``INVALID_DESTINATION``), a numeric
``productDestinationId`` (the conversion action; ``INVALID_CONVERSION_ACTION_ID``) and
distinct references; ``events`` 1..2,000 (``TOO_MANY_EVENTS``); ``encoding`` (HEX or BASE64)
whenever user data is sent; then, per event, ``transactionId`` (required here: it is the
dedup key), ``eventTimestamp`` in RFC 3339 (``INVALID_FORMAT``), known
``destinationReferences`` and ``eventSource``, at most one of gclid/gbraid/wbraid,
``userIdentifiers`` (at most 10: ``TOO_MANY_USER_IDENTIFIERS``) hashed SHA-256 in the
declared encoding (``INVALID_SHA256_FORMAT``), some identifier at all
(``NO_IDENTIFIERS_PROVIDED``), ``currency`` and ``conversionValue``. Success is 200
``{"requestId"}``; ``validateOnly: true`` checks and stores nothing (200 ``{}``). Events
deduplicate by (account, conversion action, ``transactionId``): a repeat is accepted and not
new. ``GET /v1/requestStatus:retrieve?requestId=`` reports each destination as SUCCESS.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from processor.devkit.api_double import Call, Reply, json_reply
from processor.devkit.google_errors import Rejected, RequestFault, Violation, invalid

MAX_DESTINATIONS = 10
MAX_EVENTS = 2000
MAX_IDENTIFIERS = 10
MAX_VIOLATIONS = 100
ENCODINGS = ("HEX", "BASE64")
EVENT_SOURCES = frozenset({"WEB", "APP", "IN_STORE", "PHONE", "OTHER"})
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
HEX_HASH = re.compile(r"[0-9a-fA-F]{64}")
CURRENCY = re.compile(r"[A-Z]{3}")
INVALID_REQUEST = "There was a problem with the request."


def rfc3339(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, as protobuf's JSON takes it; None if not one."""
    if not isinstance(text, str) or not (match := RFC3339.fullmatch(text)):
        return None
    fraction = match.group(1) or ""
    try:  # fromisoformat takes at most microseconds; protobuf allows nanoseconds
        return datetime.fromisoformat(text.replace(fraction, fraction[:7])).timestamp()
    except ValueError:
        return None


class EventIngestion:
    """The accepted events, their dedup keys and the status of each stored request."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str, str]] = set()
        self._statuses: dict[str, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        self.events.clear()
        self._seen.clear()
        self._statuses.clear()

    def ingest(self, call: Call, request_id: str) -> Reply:
        try:
            body = call.json()
        except ValueError:
            raise Rejected(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
        if not isinstance(body, dict):
            raise Rejected(400, "INVALID_ARGUMENT", "The body must be a JSON object.")
        destinations = _destinations(body.get("destinations"))
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise invalid("events", "REQUIRED_FIELD_MISSING", "events is required.")
        ids = [e["transactionId"] for e in events
               if isinstance(e, dict) and isinstance(e.get("transactionId"), str)]
        call.log.update(events=len(events), event_ids=ids[:100],
                        destinations=len(destinations),
                        validate_only=body.get("validateOnly") is True)
        if len(events) > MAX_EVENTS:
            raise invalid("events", "TOO_MANY_EVENTS", f"At most {MAX_EVENTS} events per "
                          f"request, not {len(events)}.")
        fault = call.fault_for(ids)
        if fault is not None:
            raise RequestFault(fault)
        encoding = _encoding(body.get("encoding"), events)
        references = {d["reference"] for d in destinations if d.get("reference")}
        violations = [v for i, e in enumerate(events)
                      if (v := _event_violation(i, e, encoding, references)) is not None]
        if violations:
            raise Rejected(400, violations[0].reason, INVALID_REQUEST,
                           tuple(violations[:MAX_VIOLATIONS]))
        if body.get("validateOnly") is True:
            return json_reply(200, {}, "validate_only")
        self._store(call, destinations, events, request_id)
        call.log["request_id"] = request_id
        return json_reply(200, {"requestId": request_id})

    def _store(self, call: Call, destinations: list[dict[str, Any]], events: list[Any],
               request_id: str) -> None:
        counts = [0] * len(destinations)
        new = 0
        for event in events:
            wanted = event.get("destinationReferences") or None
            for index, destination in enumerate(destinations):
                if wanted is not None and destination.get("reference") not in wanted:
                    continue
                counts[index] += 1
                account = destination["operatingAccount"]["accountId"]
                key = (account, destination["productDestinationId"], event["transactionId"])
                if key in self._seen:
                    continue
                self._seen.add(key)
                new += 1
                self.events.append({
                    "api": "datamanager", "operating_account": account,
                    "login_account": (destination.get("loginAccount") or {}).get("accountId"),
                    "conversion_action": key[1], "transaction_id": key[2],
                    "event_timestamp": event["eventTimestamp"],
                    "click": _dm_click(event.get("adIdentifiers")), "request": call.seq,
                    "request_id": request_id, "received_at": call.now, "event": event})
        call.log.update(new=new, duplicates=sum(counts) - new)
        self._statuses[request_id] = [
            {"destination": destination, "requestStatus": "SUCCESS",
             "eventsIngestionStatus": {"recordCount": str(count)}}
            for destination, count in zip(destinations, counts, strict=True)]

    def status(self, call: Call) -> Reply:
        request_id = call.query.get("requestId")
        call.log["request_id"] = request_id
        if not request_id:
            raise invalid("request_id", "REQUIRED_FIELD_MISSING", "requestId is required.")
        if request_id not in self._statuses:
            raise invalid("request_id", "INVALID_REQUEST_ID", "No stored request has this id "
                          "(validateOnly requests are never stored).")
        return json_reply(200, {"requestStatusPerDestination": self._statuses[request_id]})


def _account(value: Any) -> bool:
    return (isinstance(value, dict) and "GOOGLE_ADS" in (value.get("accountType"),
                                                        value.get("product"))
            and isinstance(value.get("accountId"), str) and value["accountId"].isdigit())


def _destinations(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise invalid("destinations", "REQUIRED_FIELD_MISSING", "destinations is required.")
    if len(value) > MAX_DESTINATIONS:
        raise invalid("destinations", "TOO_MANY_DESTINATIONS", f"At most {MAX_DESTINATIONS} "
                      "destinations per request.")
    references: set[str] = set()
    for index, destination in enumerate(value):
        field = f"destinations[{index}]"
        if not isinstance(destination, dict) or not _account(
                destination.get("operatingAccount")):
            raise invalid(f"{field}.operating_account", "INVALID_DESTINATION", "Needs "
                          "operatingAccount {accountType: GOOGLE_ADS, accountId: digits}.")
        if "loginAccount" in destination and not _account(destination["loginAccount"]):
            raise invalid(f"{field}.login_account", "INVALID_DESTINATION", "loginAccount "
                          "must be {accountType: GOOGLE_ADS, accountId: digits}.")
        action = destination.get("productDestinationId")
        if not isinstance(action, str) or not action.isdigit():
            raise invalid(f"{field}.product_destination_id", "INVALID_CONVERSION_ACTION_ID",
                          "productDestinationId must be the conversion action id.")
        reference = destination.get("reference")
        if reference and reference in references:
            raise invalid(f"{field}.reference", "DUPLICATE_DESTINATION_REFERENCE",
                          "Two destinations have the same reference.")
        references.add(reference or "")
    return value


def _encoding(value: Any, events: list[Any]) -> str | None:
    if not any(isinstance(e, dict) and e.get("userData") for e in events):
        return None
    if value is None:
        raise invalid("encoding", "REQUIRED_FIELD_MISSING", "encoding is required with user "
                      "data.")
    if value not in ENCODINGS:
        raise invalid("encoding", "INVALID_ENUM_VALUE", f"encoding must be one of {ENCODINGS}.")
    return str(value)


def _event_violation(index: int, event: Any, encoding: str | None,
                     references: set[str]) -> Violation | None:
    """The first bad field of one event."""
    return next(_event_violations(f"events[{index}]", event, encoding, references), None)


def _event_violations(field: str, event: Any, encoding: str | None,
                      references: set[str]) -> Iterator[Violation]:
    """Each bad field of one event, in the order the module docstring lists the checks."""
    if not isinstance(event, dict):
        yield Violation(field, "INVALID_EVENT", "Each event must be a JSON object.")
        return
    if not isinstance(event.get("transactionId"), str) or not event["transactionId"]:
        yield Violation(f"{field}.transaction_id", "REQUIRED_FIELD_MISSING",
                        "transactionId is required.")
    if "eventTimestamp" not in event:
        yield Violation(f"{field}.event_timestamp", "REQUIRED_FIELD_MISSING",
                        "eventTimestamp is required.")
    elif rfc3339(event["eventTimestamp"]) is None:
        yield Violation(f"{field}.event_timestamp", "INVALID_FORMAT",
                        "eventTimestamp must be an RFC 3339 timestamp.")
    wanted = event.get("destinationReferences") or []
    if not isinstance(wanted, list) or not set(wanted) <= references:
        yield Violation(f"{field}.destination_references", "INVALID_ARGUMENT",
                        "Every destination reference must name a destination.")
    if "eventSource" in event and event["eventSource"] not in EVENT_SOURCES:
        yield Violation(f"{field}.event_source", "INVALID_ENUM_VALUE",
                        f"eventSource must be one of {sorted(EVENT_SOURCES)}.")
    clicks = _clicks(event.get("adIdentifiers"))
    if len(clicks) > 1:
        yield Violation(f"{field}.ad_identifiers", "INVALID_ARGUMENT",
                        "Set only one of gclid, gbraid and wbraid.")
    user = event.get("userData")
    identifiers = user.get("userIdentifiers") if isinstance(user, dict) else None
    if user is not None:
        yield from _identifier_violations(f"{field}.user_data.user_identifiers", identifiers,
                                          encoding)
    if not clicks and not identifiers:
        yield Violation(field, "NO_IDENTIFIERS_PROVIDED", "The event has neither user "
                        "identifiers nor ad identifiers.")
    if "currency" in event and not (isinstance(event["currency"], str)
                                    and CURRENCY.fullmatch(event["currency"])):
        yield Violation(f"{field}.currency", "INVALID_CURRENCY_CODE",
                        "currency must be an ISO 4217 code.")
    value = event.get("conversionValue", 0)
    if not isinstance(value, int | float) or isinstance(value, bool):
        yield Violation(f"{field}.conversion_value", "INVALID_NUMBER_FORMAT",
                        "conversionValue must be a number.")


def _identifier_violations(field: str, identifiers: Any,
                           encoding: str | None) -> Iterator[Violation]:
    if not isinstance(identifiers, list) or not identifiers:
        yield Violation(field, "REQUIRED_FIELD_MISSING", "userData needs userIdentifiers.")
        return
    if len(identifiers) > MAX_IDENTIFIERS:
        yield Violation(field, "TOO_MANY_USER_IDENTIFIERS", f"At most {MAX_IDENTIFIERS} "
                        "userIdentifiers per event.")
    for index, identifier in enumerate(identifiers):
        kinds = list(identifier) if isinstance(identifier, dict) else []
        if len(kinds) != 1 or kinds[0] not in ("emailAddress", "phoneNumber", "address"):
            yield Violation(f"{field}[{index}]", "INVALID_ARGUMENT", "Each identifier is one "
                            "of emailAddress, phoneNumber and address.")
            continue
        kind = kinds[0]
        if kind == "address":
            address = identifier["address"]
            hashed = [address.get(k) for k in ("givenName", "familyName")] if isinstance(
                address, dict) else [None]
            path = f"{field}[{index}].address"
        else:
            hashed, path = [identifier[kind]], f"{field}[{index}].{_snake(kind)}"
        if not all(_hashed(value, encoding) for value in hashed):
            yield Violation(path, "INVALID_SHA256_FORMAT", "User data must be hashed with "
                            f"SHA-256 and encoded as {encoding}, never sent raw.")


def _hashed(value: Any, encoding: str | None) -> bool:
    if not isinstance(value, str):
        return False
    if encoding == "BASE64":
        try:
            return len(base64.b64decode(value, validate=True)) == 32
        except binascii.Error:
            return False
    return bool(HEX_HASH.fullmatch(value))


def _clicks(value: Any) -> dict[str, Any]:
    """The click ids set in ``adIdentifiers``."""
    if not isinstance(value, dict):
        return {}
    return {kind: value[kind] for kind in ("gclid", "gbraid", "wbraid") if value.get(kind)}


def _dm_click(value: Any) -> dict[str, Any] | None:
    return next(({"type": kind, "id": click} for kind, click in _clicks(value).items()), None)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
