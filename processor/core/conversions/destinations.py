"""Where an audience's conversions go, and the fields each ad platform needs for it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

# How old an entry each platform takes: Meta rejects events over 7 days old, Google
# clicks over 90 days old (its longest click-through window).
META_MAX_WITHIN = 7 * 86_400
GOOGLE_MAX_WITHIN = 90 * 86_400
DIGITS = r"^[0-9]+$"

ActionSource = Literal["website", "email", "app", "phone_call", "chat", "physical_store",
                       "system_generated", "business_messaging", "other"]
Consent = Literal["CONSENT_GRANTED", "CONSENT_DENIED"]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _digits(value: Any) -> Any:
    """IDs may be written as YAML numbers, and Google customer IDs as 123-456-7890."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class MetaDestination(Strict):
    """Meta Conversions API: the pixel (dataset) and the event sent for an entry."""

    pixel_id: str = Field(pattern=DIGITS)
    event_name: str = Field(min_length=1, max_length=100)
    action_source: ActionSource = "website"
    custom_data: dict[str, JsonValue] | None = None

    @field_validator("pixel_id", mode="before")
    @classmethod
    def _pixel(cls, value: Any) -> Any:
        return _digits(value)


class GoogleConsent(Strict):
    """Data Manager's consent fields (the Ads API sender maps them to its spelling)."""

    ad_user_data: Consent | None = None
    ad_personalization: Consent | None = None


class GoogleDestination(Strict):
    """Google: the Data Manager API (default) or the Google Ads API, and the action."""

    api: Literal["data_manager", "ads"] = "data_manager"
    customer_id: str = Field(pattern=DIGITS)
    conversion_action_id: str = Field(pattern=DIGITS)
    login_customer_id: str | None = Field(default=None, pattern=DIGITS)
    value: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    consent: GoogleConsent | None = None

    @field_validator("customer_id", "login_customer_id", mode="before")
    @classmethod
    def _account(cls, value: Any) -> Any:
        value = _digits(value)
        if isinstance(value, str):
            value = value.replace("-", "")
        return value or None

    @field_validator("conversion_action_id", mode="before")
    @classmethod
    def _action(cls, value: Any) -> Any:
        return _digits(value)

    @model_validator(mode="after")
    def _value_has_a_currency(self) -> GoogleDestination:
        if self.value is not None and self.currency is None:
            raise ValueError("value needs a currency (an ISO 4217 code such as USD)")
        return self


class Destinations(Strict):
    meta: MetaDestination | None = None
    google: GoogleDestination | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Destinations:
        if self.meta is None and self.google is None:
            raise ValueError("name at least one destination: meta or google")
        return self
