"""Realistic Segment events for the demo, the tests and the benchmarks.

The emails' local parts steer the project's Clearbit-compatible server
(``processor.devkit.clearbit_server``): ``notfound...`` answers 404,
``invalid...`` 422, ``queued...`` 202 twice, ``error...`` 500, and any other
address is found.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

COMPANY_DOMAINS = ("initech.example", "globex.example", "umbrella.example", "hooli.example",
                   "vandelay.example", "acme.example")
FIRST_NAMES = ("ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken",
               "radia", "tim", "frances", "john")


def identify(email: str | None, *, user_id: str | None = None, anonymous_id: str | None = None,
             message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """One raw Identify call as Segment's HTTP API would carry it."""
    event: dict[str, Any] = {
        "type": "identify",
        "messageId": message_id or f"ajs-{uuid.uuid4()}",
        "timestamp": "2026-11-23T09:30:00.000Z",
        "context": {"library": {"name": "analytics.js", "version": "4.1.0"},
                    "ip": "203.0.113.7"},
        "traits": {"plan": "pro", "logins": 5},
    }
    if user_id is not None:
        event["userId"] = user_id
    if anonymous_id is not None:
        event["anonymousId"] = anonymous_id
    if email is not None:
        event["traits"]["email"] = email
    event.update(extra)
    return event


def person_email(i: int, domain_count: int = len(COMPANY_DOMAINS)) -> str:
    """A deterministic, found-by-default address for person number ``i``."""
    name = FIRST_NAMES[i % len(FIRST_NAMES)]
    return f"{name}.{i}@{COMPANY_DOMAINS[i % domain_count]}"


def demo_events() -> list[tuple[str, bytes | None, bytes]]:
    """The handful ``make run`` sends: (what it shows, key, value)."""
    import orjson  # noqa: PLC0415 - devkit only

    def item(label: str, key: str | None, event: Any) -> tuple[str, bytes | None, bytes]:
        value = event if isinstance(event, bytes) else orjson.dumps(event)
        return label, key.encode() if key else None, value

    return [
        item("found: person and company", "user-101",
             identify("ada.lovelace@initech.example", user_id="user-101")),
        item("found: free-mail address, person only", "user-102",
             identify("grace.hopper@gmail.com", user_id="user-102")),
        item("found: anonymous visitor, no key", None,
             identify("alan.turing@globex.example", anonymous_id="anon-7f3a")),
        item("the same email again: served from the cache", "user-101",
             identify("Ada.Lovelace@Initech.example ", user_id="user-101")),
        item("skipped: no email trait", "user-103", identify(None, user_id="user-103")),
        item("skipped: not an identify", "user-104",
             {"type": "track", "event": "Order Completed", "userId": "user-104"}),
        item("skipped: Clearbit turned off for this call", "user-105",
             identify("edsger@hooli.example", user_id="user-105",
                      integrations={"All": True, "Clearbit Enrichment": False})),
        item("skipped: Clearbit has no record (404)", "user-106",
             identify("notfound.nobody@vandelay.example", user_id="user-106")),
        item("dead letter: the value is not JSON", "user-107", b'{"type": "identify", "traits": '),
        item("dead letter: the email is not valid", "user-108",
             identify("barbara@@liskov", user_id="user-108")),
        item("dead letter: neither userId nor anonymousId", None,
             identify("donald@acme.example")),
    ]


def stream(count: int, distinct_emails: int, *, seed: int = 0
           ) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``count`` enrichable identifies cycling over ``distinct_emails`` addresses."""
    for i in range(count):
        person = (i * 7919 + seed) % distinct_emails
        yield (f"user-{person}".encode(),
               identify(person_email(person), user_id=f"user-{person}", message_id=f"m-{seed}-{i}"))


DAY = 86_400


def iso(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, as Segment writes timestamps."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


@dataclass(frozen=True)
class ConversionStory:
    """The conversions demo's one (invented) visitor, from an ad click to an MQL, told
    relative to ``now``: a landing page three days ago, an identify a day ago, the
    lifecycle change two minutes ago."""

    now: float
    user_id: str = "user-201"
    anonymous_id: str = "anon-5c1e9a"
    email: str = "margaret.hamilton@initech.example"  # found, at a 180-person company
    gclid: str = "Cj0KCQiA-demo-gclid-201"
    fbclid: str = "IwAR-demo-fbclid-201"
    ip: str = "203.0.113.9"
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"

    @property
    def clicked_at(self) -> int:
        return int(self.now) - 3 * DAY

    @property
    def mql_at(self) -> int:
        return int(self.now) - 120

    def _context(self, url: str | None = None) -> dict[str, Any]:
        context: dict[str, Any] = {"library": {"name": "analytics.js", "version": "4.1.0"},
                                   "ip": self.ip, "userAgent": self.user_agent}
        if url is not None:
            context["page"] = {"url": url, "search": f"?{url.partition('?')[2]}"}
        return context

    def page_view(self) -> dict[str, Any]:
        """The anonymous landing from an ad that carried both click IDs."""
        url = f"https://shop.example/pricing?gclid={self.gclid}&fbclid={self.fbclid}"
        return {"type": "page", "messageId": f"ajs-{uuid.uuid4()}", "name": "Pricing",
                "anonymousId": self.anonymous_id, "timestamp": iso(self.clicked_at),
                "context": self._context(url)}

    def identify(self) -> dict[str, Any]:
        """The sign-up: the browser's anonymousId linked to a userId, with an email."""
        return identify(self.email, user_id=self.user_id, anonymous_id=self.anonymous_id,
                        timestamp=iso(self.now - DAY), context=self._context())

    def becomes_mql(self) -> dict[str, Any]:
        """The CRM's trait change that enters the audience (no email: not enriched)."""
        return identify(None, user_id=self.user_id, timestamp=iso(self.now),
                        context={"library": {"name": "analytics-python", "version": "2.3.3"}},
                        traits={"lifecycle": "MQL", "mql_at": iso(self.mql_at)})


# --- analytics.js-shaped events for the benchmarks -----------------------------------------

EVENT_SIZES = {"small": 400, "medium": 1500, "large": 6000}
"""About how many bytes of JSON an event of each size holds."""

_USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
)
_PAGES = ("/", "/pricing", "/docs/getting-started", "/blog/launch-week", "/signup")
_LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "ja-JP")


def analytics_identify(i: int, email: str, *, user_id: str, message_id: str,
                       size: str = "medium") -> dict[str, Any]:
    """An Identify as analytics.js sends it (``context`` with library, page, userAgent, ip,
    locale), about ``EVENT_SIZES[size]`` bytes of JSON: ``small`` has the bare context,
    ``medium`` the full one with campaign and user-agent data, ``large`` also carries
    the many custom traits some customers identify with."""
    page = _PAGES[i % len(_PAGES)]
    domain = email.rpartition("@")[2]
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "npm:next-1.72.0"},
        "ip": f"203.0.{i % 250}.{i % 200 + 7}", "locale": _LOCALES[i % len(_LOCALES)],
    }
    traits: dict[str, Any] = {"email": email}
    event: dict[str, Any] = {"type": "identify", "messageId": message_id, "userId": user_id,
                             "timestamp": "2026-11-23T09:30:00.000Z", "context": context,
                             "traits": traits}
    if size == "small":
        context["page"] = {"path": page, "url": f"https://www.{domain}{page}"}
        traits.update({"firstName": FIRST_NAMES[i % len(FIRST_NAMES)].title(), "plan": "pro"})
        return event
    context.update({
        "page": {"path": page, "referrer": "https://www.google.com/", "search": "",
                 "title": f"{page.strip('/').title() or 'Home'} | Initech",
                 "url": f"https://www.{domain}{page}"},
        "userAgent": _USER_AGENTS[i % len(_USER_AGENTS)],
        "userAgentData": {"brands": [{"brand": "Chromium", "version": "131"},
                                     {"brand": "Not_A Brand", "version": "24"}],
                          "mobile": False, "platform": "macOS"},
        "timezone": "Europe/London",
        "campaign": {"name": "winter-launch", "source": "newsletter", "medium": "email",
                     "content": f"cta-{i % 7}"},
    })
    traits.update({"firstName": FIRST_NAMES[i % len(FIRST_NAMES)].title(), "lastName": "Doe",
                   "plan": "pro", "logins": i % 50, "createdAt": "2025-03-01T10:00:00.000Z",
                   "title": "Director of Engineering", "phone": "+44 20 7946 0958",
                   "website": f"https://www.{domain}", "avatar": f"https://cdn.{domain}/a/{i}.png",
                   "description": "Runs the platform team; evaluating the enterprise plan."})
    event.update({"anonymousId": str(uuid.UUID(int=i * 7919 + 1)),
                  "originalTimestamp": "2026-11-23T09:29:59.412Z",
                  "sentAt": "2026-11-23T09:29:59.530Z", "receivedAt": "2026-11-23T09:30:00.012Z",
                  "writeKey": "wk_3fa85f6457174562b3fc2c963f66afa6", "version": 2,
                  "integrations": {}, "channel": "client",
                  "_metadata": {"bundled": ["Segment.io"], "unbundled": [],
                                "bundledIds": ["5f3e7a9b2c1d"]}})
    if size == "large":
        traits.update({f"custom_{n:02d}": f"value {n} of a customer-defined trait {i % 13}"
                       for n in range(70)})
        traits["address"] = {"street": "1 Infinite Loop", "city": "Cupertino",
                             "postalCode": "95014", "country": "US"}
        traits["preferences"] = [f"topic-{n}" for n in range(40)]
        traits["company"] = {"name": "Initech", "industry": "Software", "employee_count": 250,
                             "plan": "enterprise"}
    return event
