"""Google Ads' ``customers/{cid}:uploadClickConversions`` as the Google-compatible server
answers it (``processor.devkit.google_server`` authenticates the call first).

Refused as a whole (an error ``google.rpc.Status`` with a ``GoogleAdsFailure``): a customer
id that is not digits (``INVALID_CUSTOMER_ID``); no ``developer-token`` header
(``DEVELOPER_TOKEN_PARAMETER_MISSING``, 400) or the wrong one (``DEVELOPER_TOKEN_INVALID``,
401); a ``login-customer-id`` that is not digits only (``INVALID_CUSTOMER_ID``); no
``conversions``; more than 2,000 (``TOO_MANY_CONVERSIONS_IN_REQUEST``); ``partialFailure``
not true (``PARTIAL_FAILURE_MODE_REQUIRED``: Google fails this method's request whole
without it).

Each row is then checked on its own, first failure wins, and a failed row is a 200 with
``{}`` at its place in ``results`` and an error in ``partialFailureError`` located at
``conversions[i]``:

* ``conversionAction`` ``customers/{cid}/conversionActions/{id}`` (``RESOURCE_NAME_MALFORMED``;
  another customer's: ``NO_CONVERSION_ACTION_FOUND``);
* ``conversionDateTime`` ``yyyy-mm-dd hh:mm:ss+|-hh:mm``
  (``INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET``);
* at most one of ``gclid``, ``gbraid``, ``wbraid`` (``GBRAID_WBRAID_BOTH_SET``, or
  ``VALUE_MUST_BE_UNSET`` beside a gclid); none needs ``userIdentifiers`` (``REQUIRED``);
* ``userIdentifiers``: at most 5 (``TOO_MANY``), each a ``hashedEmail`` or
  ``hashedPhoneNumber`` in lowercase hex SHA-256 (``INVALID_USER_IDENTIFIER``; other kinds
  ``UNSUPPORTED_USER_IDENTIFIER``);
* a scripted fault for the row's ``orderId`` (without a status: this row's error);
* the click registry: a registered click more than 90 days before the conversion
  (``EXPIRED_EVENT``), after it (``CONVERSION_PRECEDES_EVENT``) or under 6 hours old
  (``TOO_RECENT_EVENT``); an unregistered one passes unless ``strict_clicks``
  (``CLICK_NOT_FOUND``);
* duplicates: an ``orderId`` already used for the conversion action
  (``ORDER_ID_ALREADY_IN_USE``) or twice in the request (``DUPLICATE_ORDER_ID``); the same
  click and ``conversionDateTime`` without an ``orderId`` to tell them apart
  (``CLICK_CONVERSION_ALREADY_EXISTS``, ``DUPLICATE_CLICK_CONVERSION_IN_REQUEST``).

``validateOnly: true`` checks everything, stores nothing and returns errors only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from processor.devkit.api_double import Call, Reply, json_reply
from processor.devkit.google_errors import (
    GRPC_CODE,
    Rejected,
    RequestFault,
    ads_error,
    ads_failure,
)

MAX_CONVERSIONS = 2000
MAX_IDENTIFIERS = 5
CLICK_WINDOW_SECONDS = 90 * 86400
CLICK_MIN_AGE_SECONDS = 6 * 3600
CLICK_IDS = ("gclid", "gbraid", "wbraid")
HASHED_IDENTIFIERS = ("hashedEmail", "hashedPhoneNumber")
HASH = re.compile(r"[0-9a-f]{64}")
ACTION = re.compile(r"customers/(\d+)/conversionActions/\d+")
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")

Problem = tuple[str, str, str | None]  # (reason, message, field)


def conversion_time(text: Any) -> float | None:
    """Epoch seconds of a ``yyyy-mm-dd hh:mm:ss+hh:mm`` date-time; None if malformed."""
    if not isinstance(text, str) or not DATE_TIME.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S%z").timestamp()
    except ValueError:
        return None


class ClickUploads:
    """The accepted click conversions, the click registry and the row checks."""

    def __init__(self) -> None:
        self.clicks: dict[str, float] = {}
        self.strict = False
        self.events: list[dict[str, Any]] = []
        self._orders: set[tuple[str, str]] = set()
        self._converted: set[tuple[str, str, str, str]] = set()

    def reset(self, strict: bool) -> None:
        self.clicks.clear()
        self.strict = strict
        self.events.clear()
        self._orders.clear()
        self._converted.clear()

    def upload(self, call: Call, version: str, developer_token: str, request_id: str) -> Reply:
        """Answer an authenticated call; Rejected or RequestFault when refused whole."""
        customer = call.params.get("cid", "")
        _check_headers(call, customer, developer_token)
        body = _body(call)
        conversions = body["conversions"]
        validate_only = body.get("validateOnly") is True
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        accepted: list[dict[str, Any]] = []
        seen_orders: set[tuple[str, str]] = set()
        seen_clicks: set[tuple[str, str, str, str]] = set()
        for index, row in enumerate(conversions):
            problem = self._problem(call, row, customer) or self._duplicate(
                row, seen_orders, seen_clicks)
            if problem is None:
                results.append(_result(row))
                accepted.append(row)
                continue
            reason, message, field = problem
            path: list[tuple[str, int | None]] = [("conversions", index)]
            errors.append(ads_error(reason, message, path + ([(field, None)] if field else [])))
            results.append({})
        if not validate_only:
            self._store(call, customer, accepted)
        call.log.update(events=len(conversions), validate_only=validate_only,
                        accepted=len(accepted), rejected=len(errors))
        answer: dict[str, Any] = {} if validate_only else {"results": results,
                                                             "jobId": str(call.seq)}
        if errors:
            first = errors[0]["location"]["fieldPathElements"][0]["index"]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            answer["partialFailureError"] = {
                "code": GRPC_CODE["INVALID_ARGUMENT"],
                "message": f"{errors[0]['message'].rstrip('.')}, at conversions[{first}]{more}",
                "details": [ads_failure(version, errors, request_id)]}
        return json_reply(200, answer, "partial_failure" if errors else "ok")

    def _problem(self, call: Call, row: Any, customer: str) -> Problem | None:
        if not isinstance(row, dict):
            return "REQUIRED", "Each conversion must be a JSON object.", None
        problem = _format_problem(row, customer)
        if problem is not None:
            return problem
        event_id = row.get("orderId") or _click(row)[1]
        fault = call.fault_for([str(event_id)]) if event_id else None
        if fault is not None:
            if fault.status is not None:
                raise RequestFault(fault)
            return (fault.reason or "INTERNAL_ERROR",
                    fault.message or "Internal error encountered.", None)
        return self._click_problem(row, call.now)

    def _click_problem(self, row: Mapping[str, Any], now: float) -> Problem | None:
        kind, click_id = _click(row)
        clicked = self.clicks.get(click_id) if click_id else None
        if clicked is None:
            if self.strict:
                return ("CLICK_NOT_FOUND", "The conversion cannot be matched to a click.",
                        kind)
            return None
        converted = conversion_time(row["conversionDateTime"]) or 0.0
        if converted < clicked:
            return ("CONVERSION_PRECEDES_EVENT", "The conversion's conversionDateTime is "
                    "before its click.", "conversion_date_time")
        if converted - clicked > CLICK_WINDOW_SECONDS:
            return ("EXPIRED_EVENT", "The click is older than the conversion action's "
                    "click-through window.", kind)
        if now - clicked < CLICK_MIN_AGE_SECONDS:
            return ("TOO_RECENT_EVENT", "The click happened less than 6 hours ago; upload "
                    "again later.", kind)
        return None

    def _duplicate(self, row: Mapping[str, Any], seen_orders: set[tuple[str, str]],
                   seen_clicks: set[tuple[str, str, str, str]]) -> Problem | None:
        action, order = row["conversionAction"], row.get("orderId")
        if order:
            if (action, order) in self._orders:
                return ("ORDER_ID_ALREADY_IN_USE", "This orderId was already used for the "
                        "conversion action.", "order_id")
            if (action, order) in seen_orders:
                return ("DUPLICATE_ORDER_ID", "Two conversions in the request have this "
                        "orderId.", "order_id")
            seen_orders.add((action, order))
        # Google tells apart conversions of one click at one time by their orderId.
        click = (action, _click(row)[1] or "", row["conversionDateTime"], order or "")
        if click[1] and click in self._converted:
            return ("CLICK_CONVERSION_ALREADY_EXISTS", "A conversion with this click and "
                    "conversionDateTime already exists.", None)
        if click[1] and click in seen_clicks:
            return ("DUPLICATE_CLICK_CONVERSION_IN_REQUEST", "Two conversions in the request "
                    "have this click and conversionDateTime.", None)
        seen_clicks.add(click)
        return None

    def _store(self, call: Call, customer: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            kind, click_id = _click(row)
            action, order = row["conversionAction"], row.get("orderId")
            if order:
                self._orders.add((action, order))
            if click_id:
                self._converted.add((action, click_id, row["conversionDateTime"], order or ""))
            self.events.append({
                "api": "ads", "customer_id": customer, "conversion_action": action,
                "order_id": order, "click": {"type": kind, "id": click_id} if kind else None,
                "conversion_date_time": row["conversionDateTime"], "request": call.seq,
                "received_at": call.now, "conversion": row})


def _check_headers(call: Call, customer: str, developer_token: str) -> None:
    if not customer.isdigit():
        raise Rejected(400, "INVALID_CUSTOMER_ID", "The customer id in the URL must be digits "
                       "only, without dashes.")
    token = call.headers.get("developer-token")
    call.log["developer_token"] = ("missing" if not token else
                                   "valid" if token == developer_token else "invalid")
    if not token:
        raise Rejected(400, "DEVELOPER_TOKEN_PARAMETER_MISSING", "The developer-token header "
                       "is required for all requests.")
    if token != developer_token:
        raise Rejected(401, "DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")
    login = call.headers.get("login-customer-id")
    call.log["login_customer_id"] = login
    if login is not None and not login.isdigit():
        raise Rejected(400, "INVALID_CUSTOMER_ID", "login-customer-id must be digits only, "
                       "without dashes.")


def _body(call: Call) -> dict[str, Any]:
    try:
        body = call.json()
    except ValueError:
        raise Rejected(400, "REQUIRED_FIELD_MISSING", "The body must be JSON.") from None
    conversions = body.get("conversions") if isinstance(body, dict) else None
    if not isinstance(conversions, list) or not conversions:
        raise Rejected(400, "REQUIRED_FIELD_MISSING", "conversions is required.")
    call.log["event_ids"] = [str(c.get("orderId")) for c in conversions[:100]
                             if isinstance(c, dict) and c.get("orderId")]
    if len(conversions) > MAX_CONVERSIONS:
        raise Rejected(400, "TOO_MANY_CONVERSIONS_IN_REQUEST", f"Upload at most "
                       f"{MAX_CONVERSIONS} conversions in a request, not {len(conversions)}.")
    if body.get("partialFailure") is not True:
        raise Rejected(400, "PARTIAL_FAILURE_MODE_REQUIRED", "This method needs "
                       "partialFailure set to true.")
    return cast(dict[str, Any], body)


def _format_problem(row: Mapping[str, Any], customer: str) -> Problem | None:
    action = ACTION.fullmatch(str(row.get("conversionAction", "")))
    if action is None:
        return ("RESOURCE_NAME_MALFORMED", "conversionAction must be "
                "customers/{customer_id}/conversionActions/{id}.", "conversion_action")
    if action.group(1) != customer:
        return ("NO_CONVERSION_ACTION_FOUND", "The conversion action is not in this "
                "account.", "conversion_action")
    if conversion_time(row.get("conversionDateTime")) is None:
        return ("INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET", "The date time's format "
                "should be yyyy-mm-dd hh:mm:ss+|-hh:mm.", "conversion_date_time")
    clicks = [kind for kind in CLICK_IDS if row.get(kind)]
    if "gbraid" in clicks and "wbraid" in clicks:
        return "GBRAID_WBRAID_BOTH_SET", "Send only one of gbraid and wbraid.", "wbraid"
    if len(clicks) > 1:
        return "VALUE_MUST_BE_UNSET", "Send only one of gclid, gbraid and wbraid.", clicks[1]
    return _identifier_problem(row.get("userIdentifiers"), bool(clicks))


def _identifier_problem(identifiers: Any, has_click: bool) -> Problem | None:
    if identifiers is None:
        return None if has_click else ("REQUIRED", "A conversion needs a gclid, gbraid, "
                                       "wbraid or userIdentifiers.", "gclid")
    if not isinstance(identifiers, list) or len(identifiers) > MAX_IDENTIFIERS:
        return ("TOO_MANY", f"At most {MAX_IDENTIFIERS} userIdentifiers per conversion.",
                "user_identifiers")
    for identifier in identifiers:
        kinds = [k for k in identifier if k != "userIdentifierSource"] if isinstance(
            identifier, dict) else []
        if len(kinds) != 1 or kinds[0] not in HASHED_IDENTIFIERS:
            return ("UNSUPPORTED_USER_IDENTIFIER", "Use only hashedEmail or "
                    "hashedPhoneNumber.", "user_identifiers")
        value = identifier[kinds[0]]
        if not isinstance(value, str) or not HASH.fullmatch(value):
            return ("INVALID_USER_IDENTIFIER", "Hash user data with SHA-256 (lowercase hex) "
                    "after normalizing it.", "user_identifiers")
    return None


def _click(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    for kind in CLICK_IDS:
        if row.get(kind):
            return kind, str(row[kind])
    return None, None


def _result(row: Mapping[str, Any]) -> dict[str, Any]:
    kind, click_id = _click(row)
    result = {"conversionAction": row["conversionAction"],
              "conversionDateTime": row["conversionDateTime"]}
    if kind:
        result[kind] = click_id
    if row.get("userIdentifiers"):
        result["userIdentifiers"] = row["userIdentifiers"]
    return result
