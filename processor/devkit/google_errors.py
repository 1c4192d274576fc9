"""Google's error vocabulary, as the Google-compatible server answers it.

Both APIs answer a refused request with a ``google.rpc.Status`` in JSON: ``{"error": {"code":
<HTTP status>, "message", "status": <canonical code name>, "details": [...]}}``. What the
details hold differs:

* Data Manager: a ``google.rpc.ErrorInfo`` whose ``reason`` is one of its ``ErrorReason``
  names (``INVALID_SHA256_FORMAT``, ...; domain ``datamanager.googleapis.com``), a
  ``google.rpc.BadRequest`` whose ``fieldViolations`` name the field with its index
  (``events[3].user_data.user_identifiers[0].email_address``) and a ``RequestInfo``
  (googleapis ``google/ads/datamanager/v1/error.proto``; *Understand API errors*).
* Google Ads: a ``GoogleAdsFailure`` whose ``errors[]`` each carry ``errorCode
  {<category>: <name>}``, ``message`` and ``location.fieldPathElements`` (googleapis
  ``google/ads/googleads/*/errors/``). ``uploadClickConversions`` puts per-row failures in a
  200's ``partialFailureError`` of the same shape, with gRPC's numeric code.
* Authentication failures come from Google's front end: 401 ``UNAUTHENTICATED`` with an
  ``ErrorInfo`` of domain ``googleapis.com`` (``CREDENTIALS_MISSING``, ``ACCESS_TOKEN_EXPIRED``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from processor.devkit.api_double import Fault

DM_DOMAIN = "datamanager.googleapis.com"
AUTH_DOMAIN = "googleapis.com"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"

CANONICAL = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
             501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
GRPC_CODE = {"INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
             "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "ABORTED": 10, "INTERNAL": 13,
             "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}

# The HTTP status of a reason when a scripted fault names only the reason.
_REASON_STATUS = {
    "RESOURCE_EXHAUSTED": 429, "RESOURCE_TEMPORARILY_EXHAUSTED": 429,
    "PERMISSION_DENIED": 403, "USER_PERMISSION_DENIED": 403,
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE": 403, "TERMS_AND_CONDITIONS_NOT_SIGNED": 403,
    "DEVELOPER_TOKEN_NOT_APPROVED": 403, "UNAUTHENTICATED": 401, "OAUTH_TOKEN_INVALID": 401,
    "OAUTH_TOKEN_EXPIRED": 401, "DEVELOPER_TOKEN_INVALID": 401, "INTERNAL_ERROR": 500,
    "TRANSIENT_ERROR": 503, "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404,
}
# ... and the reason of a status when it names only the status.
_STATUS_REASON = {429: "RESOURCE_EXHAUSTED", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 500: "INTERNAL_ERROR", 503: "INTERNAL_ERROR",
                  504: "DEADLINE_EXCEEDED"}

# Google Ads files each error name under a category of ``ErrorCode``; names not listed here
# are ``conversionUploadError``s, the category of nearly everything this server answers.
_ADS_CATEGORY = {
    "PARTIAL_FAILURE_MODE_REQUIRED": "partialFailureError",
    "INTERNAL_ERROR": "internalError", "TRANSIENT_ERROR": "internalError",
    "DEADLINE_EXCEEDED": "internalError",
    "RESOURCE_EXHAUSTED": "quotaError", "RESOURCE_TEMPORARILY_EXHAUSTED": "quotaError",
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE": "notAllowlistedError",
    "USER_PERMISSION_DENIED": "authorizationError",
    "DEVELOPER_TOKEN_NOT_APPROVED": "authorizationError",
    "OAUTH_TOKEN_INVALID": "authenticationError", "OAUTH_TOKEN_EXPIRED": "authenticationError",
    "DEVELOPER_TOKEN_INVALID": "authenticationError",
    "DEVELOPER_TOKEN_PARAMETER_MISSING": "requestError", "INVALID_CUSTOMER_ID": "requestError",
    "REQUIRED_FIELD_MISSING": "requestError", "RESOURCE_NAME_MALFORMED": "requestError",
    "CONCURRENT_MODIFICATION": "databaseError",
    "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET": "dateError",
    "VALUE_MUST_BE_UNSET": "fieldError", "REQUIRED": "fieldError",
    "TOO_MANY": "collectionSizeError",
}
# What a generic reason is called in Google Ads' vocabulary.
_ADS_NAME = {"PERMISSION_DENIED": "USER_PERMISSION_DENIED",
             "UNAUTHENTICATED": "OAUTH_TOKEN_INVALID"}


_MESSAGES = {
    "RESOURCE_EXHAUSTED": "Too many requests: the quota is used up; retry later.",
    "PERMISSION_DENIED": "The caller does not have permission.",
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE": "The customer is not allowlisted for this "
    "feature: use the Data Manager API.",
    "INTERNAL_ERROR": "Internal error encountered.",
    "DEADLINE_EXCEEDED": "The request took too long.",
}


def fault_status_and_reason(status: int | None, reason: str | None) -> tuple[int, str, str]:
    """Fill in what a scripted fault left out: (status, reason, default message)."""
    if status is None:
        status = _REASON_STATUS.get(reason or "", 400)
    reason = reason or _STATUS_REASON.get(status, "INVALID_ARGUMENT")
    return status, reason, _MESSAGES.get(reason, reason.replace("_", " ").capitalize() + ".")


@dataclasses.dataclass(frozen=True)
class Violation:
    """One bad field of a request; ``field`` is a path such as ``events[2].transaction_id``."""

    field: str
    reason: str
    description: str


class Rejected(Exception):
    """A request refused as a whole."""

    def __init__(self, status: int, reason: str, message: str,
                 violations: tuple[Violation, ...] = (), domain: str = DM_DOMAIN) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.violations, self.domain = violations, domain


class RequestFault(Exception):
    """A scripted fault with a status for an event: it answers the whole request."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.reason or str(fault.status))
        self.fault = fault


def invalid(field: str, reason: str, description: str) -> Rejected:
    """A Data Manager request refused for one field."""
    return Rejected(400, reason, description, (Violation(field, reason, description),))


def rpc_status(status: int, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": CANONICAL.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


def datamanager_error(rejected: Rejected, request_id: str) -> dict[str, Any]:
    details: list[dict[str, Any]] = [{"@type": ERROR_INFO, "reason": rejected.reason,
                                      "domain": rejected.domain, "metadata": {}}]
    if rejected.violations:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [
            {"field": v.field, "description": v.description, "reason": v.reason}
            for v in rejected.violations]})
    details.append({"@type": REQUEST_INFO, "requestId": request_id})
    return rpc_status(rejected.status, rejected.message, details)


def ads_error(reason: str, message: str, path: list[tuple[str, int | None]] | None = None,
              ) -> dict[str, Any]:
    """One ``GoogleAdsError``; ``path``: the field path, e.g. [("conversions", 3), ("gclid",
    None)]."""
    name = _ADS_NAME.get(reason, reason)
    error: dict[str, Any] = {
        "errorCode": {_ADS_CATEGORY.get(name, "conversionUploadError"): name},
        "message": message}
    if path:
        error["location"] = {"fieldPathElements": [
            {"fieldName": field, **({} if index is None else {"index": index})}
            for field, index in path]}
    return error


def ads_failure(version: str, errors: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/google.ads.googleads.{version}.errors."
                     "GoogleAdsFailure", "errors": errors, "requestId": request_id}


def ads_request_error(status: int, version: str, reason: str, message: str,
                      request_id: str) -> dict[str, Any]:
    """A Google Ads request refused as a whole."""
    summary = "Request contains an invalid argument." if status == 400 else message
    return rpc_status(status, summary,
                      [ads_failure(version, [ads_error(reason, message)], request_id)])


def auth_error(verdict: str) -> dict[str, Any]:
    """The front end's 401 for a missing, unknown or expired access token."""
    if verdict == "missing":
        return rpc_status(401, "The request has no OAuth 2 access token; send one as "
                          "'Authorization: Bearer <token>'.",
                          [{"@type": ERROR_INFO, "reason": "CREDENTIALS_MISSING",
                            "domain": AUTH_DOMAIN, "metadata": {}}])
    reason = "ACCESS_TOKEN_EXPIRED" if verdict == "expired" else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    return rpc_status(401, "The request has invalid authentication credentials: expected a "
                      "valid OAuth 2 access token.",
                      [{"@type": ERROR_INFO, "reason": reason, "domain": AUTH_DOMAIN,
                        "metadata": {}}])
