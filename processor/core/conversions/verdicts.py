"""What an ad platform's answer means for the conversions in the request: a ``Verdict``.

Every answer has one deliberate effect, decided here and nowhere else:

==============  ===================================================================
``ACCEPTED``    every event taken (Meta: 200 and ``events_received`` = batch size)
``DUPLICATE``   a row Google already has ("order id in use", "already exists"): success
``ROWS``        Google Ads' partial failure: one verdict per row, in request order
``REJECTED``    the request refused for its data: bisect it until the bad events are
                alone, then dead-letter those with ``code`` as the reason
``TOO_RECENT``  the click is under 6 hours old for Google: send it again later
``THROTTLED``   the destination asks us to slow down: wait, dead-letter nothing
``TRANSIENT``   5xx, timeouts, "try again": retry with backoff inside the deadline
``EXPIRED``     Google's access token is no longer good: renew it once, then retry
``REFUSED``     a bad credential or a missing permission: the stage stops (exit 3)
==============  ===================================================================

Codes are ``meta_<code>[_<subcode>]`` and ``google_<reason, lower case>``: the dead
letters' reason, the audit record's reason and a metric label (bounded: the platforms'
own vocabularies). Answers come in decoded (``None`` for a body that is not JSON): the
core parses no wire format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    ROWS = "rows"
    REJECTED = "rejected"
    TOO_RECENT = "too_recent"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    EXPIRED = "expired"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    status: str  # HTTP status, or timeout / connection_error: the requests metric's label
    code: str = ""
    ref: str = ""  # the platform's reference: Meta's fbtrace_id, Google's request or job id
    retry_after: float | None = None
    message: str = ""  # the platform's own words, for a log line or a fatal error
    rows: tuple[Verdict, ...] = ()


# Meta (Graph API error codes; Marketing API "Rate Limiting").
META_THROTTLED = frozenset({4, 17, 613})
META_TRANSIENT = frozenset({1, 2})
META_TOKEN = frozenset({102, 104, 190})
META_PERMISSION = frozenset({3, 10, *range(200, 300)})
META_NO_OBJECT = 33  # subcode of 100: the pixel does not exist or is not ours
META_UNKNOWN_PATH = 2500

# Google (Data Manager ErrorReason, Google Ads error enums, google.rpc codes).
GOOGLE_DUPLICATE = frozenset({"ORDER_ID_ALREADY_IN_USE", "CLICK_CONVERSION_ALREADY_EXISTS",
                              "DUPLICATE_ORDER_ID", "DUPLICATE_CLICK_CONVERSION_IN_REQUEST"})
GOOGLE_TOO_RECENT = frozenset({"TOO_RECENT_EVENT", "TOO_RECENT_CONVERSION_ACTION"})
GOOGLE_THROTTLED = frozenset({"RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED",
                              "RATE_EXCEEDED"})
GOOGLE_TRANSIENT = frozenset({"INTERNAL_ERROR", "INTERNAL", "TRANSIENT_ERROR",
                              "CONCURRENT_MODIFICATION", "DEADLINE_EXCEEDED", "UNAVAILABLE",
                              "ABORTED"})
# About the account, the action or the credentials: no event can be sent until it is fixed.
GOOGLE_REFUSED = frozenset({
    "PERMISSION_DENIED", "USER_PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND",
    "DEVELOPER_TOKEN_INVALID", "DEVELOPER_TOKEN_PARAMETER_MISSING",
    "DEVELOPER_TOKEN_NOT_APPROVED", "DEVELOPER_TOKEN_PROHIBITED",
    "NO_CONVERSION_ACTION_FOUND", "INVALID_CUSTOMER_ID", "INVALID_DESTINATION",
    "INVALID_CONVERSION_ACTION_ID", "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE", "TERMS_AND_CONDITIONS_NOT_SIGNED",
    "CUSTOMER_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
    "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
    "PARTIAL_FAILURE_MODE_REQUIRED", "CUSTOMER_NOT_ENABLED", "OAUTH_TOKEN_REVOKED"})
GOOGLE_EXPIRED = frozenset({"ACCESS_TOKEN_EXPIRED", "OAUTH_TOKEN_EXPIRED", "OAUTH_TOKEN_INVALID",
                            "ACCESS_TOKEN_TYPE_UNSUPPORTED", "CREDENTIALS_MISSING",
                            "UNAUTHENTICATED"})


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def transport_failure(status: str) -> Verdict:
    """No answer at all (timeout, refused connection): worth a retry."""
    return Verdict(Kind.TRANSIENT, status, f"transport_{status}")


# --- Meta -------------------------------------------------------------------------------


def meta_code(code: int, subcode: int | None) -> str:
    return f"meta_{code}" if subcode is None else f"meta_{code}_{subcode}"


def _meta_kind(status: int, code: int | None, subcode: int | None, transient: bool) -> Kind:
    if status == 429 or code in META_THROTTLED:
        kind = Kind.THROTTLED
    elif code in META_TOKEN or code in META_PERMISSION or code == META_UNKNOWN_PATH or (
            code == 100 and subcode == META_NO_OBJECT) or (status in (401, 403)
                                                           and code is None):
        kind = Kind.REFUSED
    elif status >= 500 or code in META_TRANSIENT or transient or status == 200 or (
            code is None):
        kind = Kind.TRANSIENT  # including an answer we cannot read
    else:
        kind = Kind.REJECTED
    return kind


def meta_answer(status: int, data: Any, sent: int,
                retry_after: float | None = None) -> Verdict:
    """Meta's answer to a batch of ``sent`` events."""
    text = str(status)
    if status == 200 and isinstance(data, dict) and "error" not in data:
        trace = str(data.get("fbtrace_id") or "")
        if _int(data.get("events_received")) == sent:
            return Verdict(Kind.ACCEPTED, text, ref=trace)
        # Success needs every event counted: anything else is retried, Meta deduplicates.
        return Verdict(Kind.TRANSIENT, text, "meta_events_received_mismatch", ref=trace)
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    kind = _meta_kind(status, code, subcode, error.get("is_transient") is True)
    reason = meta_code(code, subcode) if code is not None else "meta_unreadable_answer"
    return Verdict(kind, text, reason, str(error.get("fbtrace_id") or ""), retry_after,
                   str(error.get("message") or ""))


# --- Google ------------------------------------------------------------------------------


def google_code(reason: str) -> str:
    return "google_" + reason.lower()


def _details(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _ads_errors(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for d in details if "GoogleAdsFailure" in str(d.get("@type", ""))
            for e in d.get("errors", []) if isinstance(e, dict)]


def _ads_name(error: Mapping[str, Any]) -> str:
    code = error.get("errorCode")
    names = [str(v) for v in code.values()] if isinstance(code, dict) else []
    return names[0] if names else "UNKNOWN"


def _request_id(details: list[dict[str, Any]]) -> str:
    for detail in details:
        found = detail.get("requestId")
        if isinstance(found, str):
            return found
    return ""


def _google_reason(error: Mapping[str, Any], details: list[dict[str, Any]]) -> str:
    """The most specific reason: Data Manager's ErrorInfo, else Google Ads' first error."""
    for detail in details:
        if "ErrorInfo" in str(detail.get("@type", "")) and detail.get("reason"):
            return str(detail["reason"])
    ads = _ads_errors(details)
    if ads:
        return _ads_name(ads[0])
    return str(error.get("status") or "UNKNOWN")


def _google_kind(status: int, reason: str) -> Kind:
    if status == 429 or reason in GOOGLE_THROTTLED:
        kind = Kind.THROTTLED
    elif reason in GOOGLE_EXPIRED or (status == 401 and reason not in GOOGLE_REFUSED):
        kind = Kind.EXPIRED
    elif status in (401, 403) or reason in GOOGLE_REFUSED:
        kind = Kind.REFUSED
    elif status >= 500 or reason in GOOGLE_TRANSIENT:
        kind = Kind.TRANSIENT
    elif reason in GOOGLE_TOO_RECENT:
        kind = Kind.TOO_RECENT
    elif reason in GOOGLE_DUPLICATE:
        kind = Kind.DUPLICATE
    else:
        kind = Kind.REJECTED
    return kind


def google_answer(status: int, data: Any, sent: int,
                  retry_after: float | None = None) -> Verdict:
    """Data Manager's or Google Ads' answer to a request of ``sent`` events or rows."""
    text = str(status)
    if status == 200 and isinstance(data, dict) and "error" not in data:
        if "results" in data or "partialFailureError" in data:
            return _ads_rows(data, sent, text)
        return Verdict(Kind.ACCEPTED, text, ref=str(data.get("requestId") or ""))
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        kind = Kind.TRANSIENT if status >= 500 or status == 200 else _google_kind(status, "")
        return Verdict(kind, text, "google_unreadable_answer", retry_after=retry_after)
    details = _details(error)
    reason = _google_reason(error, details)
    return Verdict(_google_kind(status, reason), text, google_code(reason),
                   _request_id(details), retry_after, str(error.get("message") or ""))


def _ads_rows(data: Mapping[str, Any], sent: int, status: str) -> Verdict:
    """``uploadClickConversions`` with ``partialFailure``: ``results`` align with the
    request (``{}`` for a failed row), the errors name their row in ``fieldPathElements``."""
    ref = str(data.get("jobId") or "")
    failure = data.get("partialFailureError")
    if not isinstance(failure, dict):
        return Verdict(Kind.ACCEPTED, status, ref=ref)
    details = _details(failure)
    by_row: dict[int, str] = {}
    for error in _ads_errors(details):
        location = error.get("location")
        elements = location.get("fieldPathElements") if isinstance(location, dict) else None
        first = elements[0] if isinstance(elements, list) and elements else None
        index = _int(first.get("index")) if isinstance(first, dict) else None
        if index is not None and 0 <= index < sent:
            by_row.setdefault(index, _ads_name(error))  # the first error of a row decides
    if not by_row:
        # A partial failure that names no row: nothing says which rows went in.
        return Verdict(Kind.TRANSIENT, status, "google_partial_failure_without_rows", ref)
    accepted = Verdict(Kind.ACCEPTED, status, ref=ref)
    rows = tuple(accepted if i not in by_row else
                 Verdict(_google_kind(400, by_row[i]), status, google_code(by_row[i]), ref)
                 for i in range(sent))
    return Verdict(Kind.ROWS, status, ref=ref, rows=rows)


# --- Google's OAuth token endpoint ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: float

    def __repr__(self) -> str:  # never the token itself, in a log or a traceback
        return f"Token(expires_in={self.expires_in})"


def token_answer(status: int, data: Any) -> Token | Verdict:
    """A token, or what the refresh-token grant's refusal means."""
    data = data if isinstance(data, dict) else {}
    token, expires = data.get("access_token"), data.get("expires_in")
    if status == 200 and isinstance(token, str) and token:
        return Token(token, float(expires) if isinstance(expires, int | float) else 3600.0)
    error = str(data.get("error") or "unreadable_answer")
    text, code = str(status), "google_oauth_" + error.lower()
    if status == 429:
        return Verdict(Kind.THROTTLED, text, code)
    if status >= 500 or status == 200:
        return Verdict(Kind.TRANSIENT, text, code)
    # invalid_grant (refresh token revoked or wrong), invalid_client (id or secret).
    return Verdict(Kind.REFUSED, text, code, message=str(data.get("error_description") or ""))
