"""Invented Clearbit person and company records, the same every time for the same email.

Why generated rather than stored: the benchmarks look up thousands of distinct
addresses, and every one must come back with a complete, realistic body (the
fields of ``shared/reference/clearbit-api.md``, some of them null as in real
answers) so the mapping is exercised end to end. A seed taken from the email's
hash makes each record deterministic: a test can compare what the processor
emitted with ``person_record(email)`` without talking to the server.

A few fixture companies (the domains of ``processor.devkit.samples``) have
hand-picked names and figures; any other domain gets a generated company, and
free-mail domains (gmail.com, ...) get no company at all, as Clearbit does.
All people, companies, handles and figures are made up.

Bodies are cached as serialized JSON (``orjson``): the server sends bytes and
does no per-request encoding for an email it has seen before.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com",
    "icloud.com", "aol.com", "protonmail.com", "proton.me", "gmx.com", "mail.com",
})


class Place(NamedTuple):
    city: str
    state: str
    state_code: str
    country: str
    country_code: str
    lat: float
    lng: float
    time_zone: str
    utc_offset: int
    postal_code: str


PLACES = (
    Place("San Francisco", "California", "CA", "United States", "US", 37.7749295, -122.4194155,
          "America/Los_Angeles", -8, "94107"),
    Place("Austin", "Texas", "TX", "United States", "US", 30.267153, -97.7430608,
          "America/Chicago", -6, "78701"),
    Place("New York", "New York", "NY", "United States", "US", 40.7127753, -74.0059728,
          "America/New_York", -5, "10013"),
    Place("Boston", "Massachusetts", "MA", "United States", "US", 42.3600825, -71.0588801,
          "America/New_York", -5, "02110"),
    Place("Toronto", "Ontario", "ON", "Canada", "CA", 43.653226, -79.3831843,
          "America/Toronto", -5, "M5V 2T6"),
    Place("London", "England", "ENG", "United Kingdom", "GB", 51.5072178, -0.1275862,
          "Europe/London", 0, "EC2A 4NE"),
    Place("Berlin", "Berlin", "BE", "Germany", "DE", 52.5200066, 13.404954,
          "Europe/Berlin", 1, "10115"),
    Place("Lisbon", "Lisbon", "11", "Portugal", "PT", 38.7222524, -9.1393366,
          "Europe/Lisbon", 0, "1100-148"),
    Place("Bengaluru", "Karnataka", "KA", "India", "IN", 12.9715987, 77.5945627,
          "Asia/Kolkata", 5, "560001"),
    Place("Sydney", "New South Wales", "NSW", "Australia", "AU", -33.8688197, 151.2092955,
          "Australia/Sydney", 10, "2000"),
)


class Industry(NamedTuple):
    sector: str
    group: str
    industry: str
    sub_industry: str
    sic: str
    naics: str
    gics: str
    sic4: str
    naics6: str
    tags: tuple[str, ...]
    tech: tuple[str, ...]


INDUSTRIES = (
    Industry("Information Technology", "Software & Services", "Internet Software & Services",
             "Internet Software & Services", "73", "51", "45102010", "7372", "511210",
             ("Technology", "SAAS", "B2B", "Enterprise"),
             ("google_analytics", "segment", "stripe", "aws_route_53", "hubspot", "zendesk")),
    Industry("Industrials", "Commercial & Professional Services", "Professional Services",
             "Consulting", "87", "54", "20202010", "8742", "541611",
             ("Consulting", "Professional Services", "B2B"),
             ("google_apps", "salesforce", "linkedin_ads", "wordpress")),
    Industry("Consumer Discretionary", "Retailing", "Internet & Catalog Retail",
             "Internet & Catalog Retail", "59", "45", "25502020", "5961", "454110",
             ("E-commerce", "Retail", "B2C", "Consumer Goods"),
             ("shopify", "google_tag_manager", "facebook_advertiser", "klaviyo")),
    Industry("Health Care", "Pharmaceuticals, Biotechnology & Life Sciences", "Biotechnology",
             "Biotechnology", "28", "32", "35201010", "2836", "325414",
             ("Biotechnology", "Health Care", "Research", "B2B"),
             ("microsoft_office_365", "workday", "okta")),
    Industry("Financials", "Diversified Financials", "Capital Markets",
             "Asset Management & Custody Banks", "62", "52", "40203010", "6282", "523920",
             ("Finance", "Investment", "B2B", "Financial Services"),
             ("microsoft_exchange_online", "marketo", "cloudflare")),
    Industry("Materials", "Materials", "Chemicals", "Specialty Chemicals", "28", "32",
             "15101050", "2899", "325998", ("Manufacturing", "Chemicals", "B2B"),
             ("sap", "google_apps", "microsoft_iis")),
)

TECH_CATEGORIES = ("analytics", "payment", "dns", "marketing_automation", "customer_support",
                   "advertising", "email_delivery_service", "security")
EMPLOYEE_RANGES = ((10, "1-10"), (50, "11-50"), (250, "51-250"), (1000, "251-1K"),
                   (5000, "1K-5K"), (10000, "5K-10K"), (50000, "10K-50K"),
                   (100000, "50K-100K"))
REVENUE_RANGES = ((1_000_000, "$0-$1M"), (10_000_000, "$1M-$10M"), (50_000_000, "$10M-$50M"),
                  (100_000_000, "$50M-$100M"), (250_000_000, "$100M-$250M"),
                  (500_000_000, "$250M-$500M"), (1_000_000_000, "$500M-$1B"),
                  (10_000_000_000, "$1B-$10B"))
GIVEN_NAMES = ("Avery", "Bea", "Caspian", "Delphine", "Emeric", "Farah", "Gideon", "Hollis",
               "Ines", "Jarek", "Kalani", "Linnea", "Mireille", "Nikolai", "Odessa", "Pallas",
               "Quilla", "Rosalind", "Soren", "Tamsin", "Ulric", "Vesna", "Wendeline", "Yara")
FAMILY_NAMES = ("Abernathy", "Brightwater", "Castellanos", "Dunmore", "Eskildsen", "Falconer",
                "Grünewald", "Halloran", "Ivanova", "Jessup", "Kowalczyk", "Lindqvist",
                "Marchetti", "Nakashima", "Okonkwo", "Pemberton", "Quaresma", "Rasmussen",
                "Szabo", "Thorne", "Underhill", "Valdivia", "Whitlock", "Zeller")
ROLES = (  # (role, subRole, titles)
    ("engineering", "software_engineer", ("Software Engineer", "Senior Software Engineer",
                                          "Staff Engineer")),
    ("engineering", "devops_engineer", ("Site Reliability Engineer", "Platform Engineer")),
    ("marketing", "marketing_manager", ("Growth Marketing Manager", "Product Marketing Lead")),
    ("sales", "account_executive", ("Account Executive", "Enterprise Account Executive")),
    ("product", "product_manager", ("Product Manager", "Senior Product Manager")),
    ("finance", "accountant", ("Accountant", "Financial Controller")),
    ("human_resources", "recruiter", ("Technical Recruiter", "People Partner")),
    ("leadership", "ceo", ("Chief Executive Officer", "Co-founder & CEO")),
)
SENIORITIES = ("executive", "director", "manager", None)


def _rng(*parts: str) -> random.Random:
    """A generator seeded from ``parts``: the same text always gives the same record."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).digest()
    return random.Random(digest)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timestamp(rng: random.Random) -> str:
    return (f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.000Z")


def _bucket(value: int, ranges: tuple[tuple[int, str], ...], top: str) -> str:
    return next((label for limit, label in ranges if value <= limit), top)


def _geo(place: Place) -> dict[str, Any]:
    return {"city": place.city, "state": place.state, "stateCode": place.state_code,
            "country": place.country, "countryCode": place.country_code,
            "lat": place.lat, "lng": place.lng}


def _company_name(domain: str) -> str:
    """The fixture's name, else one made from the domain: ``blue-harbor.io`` -> ``Blue Harbor``."""
    fixture = FIXTURE_COMPANIES.get(domain)
    if fixture:
        return str(fixture["name"])
    label = domain.partition(".")[0]
    return " ".join(word.capitalize() for word in label.replace("_", "-").split("-") if word)


# Fixture companies: fields that replace the generated ones for these domains.
FIXTURE_COMPANIES: dict[str, dict[str, Any]] = {
    "initech.example": {"name": "Initech", "legalName": "Initech Software Services, Inc.",
                        "foundedYear": 1994, "industry": 0, "employees": 180,
                        "description": "Initech builds report-processing software for "
                                       "mid-sized enterprises.", "place": 1},
    "globex.example": {"name": "Globex", "legalName": "Globex Corporation", "foundedYear": 1989,
                       "industry": 5, "employees": 12400, "type": "public", "ticker": "GLBX",
                       "description": "Globex makes specialty chemicals and industrial "
                                      "coatings.", "place": 2},
    "umbrella.example": {"name": "Umbrella", "legalName": "Umbrella Biosciences plc",
                         "foundedYear": 2003, "industry": 3, "employees": 2300,
                         "description": "Umbrella researches vaccines and diagnostics.",
                         "place": 5},
    "hooli.example": {"name": "Hooli", "legalName": "Hooli, Inc.", "foundedYear": 1998,
                      "industry": 0, "employees": 61000, "type": "public", "ticker": "HOOL",
                      "description": "Hooli runs a search engine and a cloud platform.",
                      "place": 0},
    "vandelay.example": {"name": "Vandelay Industries", "legalName": "Vandelay Industries LLC",
                         "foundedYear": 2011, "industry": 2, "employees": 42,
                         "description": "Vandelay imports and sells household goods online.",
                         "place": 2, "parent": "globex.example"},
    "acme.example": {"name": "Acme", "legalName": "Acme Consulting GmbH", "foundedYear": 1972,
                     "industry": 1, "employees": 640,
                     "description": "Acme advises manufacturers on operations.", "place": 6},
}


def company_record(domain: str) -> dict[str, Any] | None:
    """The company behind ``domain`` (a fresh dict), or None for a free-mail domain."""
    body = company_body(domain.strip().lower())
    return None if body == b"null" else orjson.loads(body)


def person_record(email: str) -> dict[str, Any]:
    """The person behind ``email`` (a fresh dict), as the server answers it."""
    return orjson.loads(person_body(email.strip().lower()))  # type: ignore[no-any-return]


def combined_body(email: str, *, with_company: bool = True) -> bytes:
    """The 200 body of ``/v2/combined/find`` for a normalized (lower-case) email."""
    company = company_body(email.rpartition("@")[2]) if with_company else b"null"
    return b'{"person":' + person_body(email) + b',"company":' + company + b"}"


@lru_cache(maxsize=4096)
def company_body(domain: str) -> bytes:
    """Serialized company for a normalized domain; ``b"null"`` for free-mail domains."""
    if domain in FREE_MAIL_DOMAINS:
        return b"null"
    return _compact(orjson.dumps(_company(domain)))


@lru_cache(maxsize=8192)
def person_body(email: str) -> bytes:
    """Serialized person for a normalized email.

    Bounded (about 12 MB when full): benchmarks look up many distinct emails, and
    building a person again costs only some 25 microseconds.
    """
    return _compact(orjson.dumps(_person(email)))


def _compact(body: bytes) -> bytes:
    """A right-sized copy: orjson's bytes keep their whole write buffer (8 KB for a
    1.3 KB person), which a cache would otherwise hold on to."""
    return memoryview(body).tobytes()


def _company(domain: str) -> dict[str, Any]:
    rng = _rng("company", domain)
    fixture = FIXTURE_COMPANIES.get(domain, {})
    name = _company_name(domain)
    industry = INDUSTRIES[fixture.get("industry", rng.randrange(len(INDUSTRIES)))]
    place = PLACES[fixture.get("place", rng.randrange(len(PLACES)))]
    employees: int = fixture.get("employees") or int(rng.lognormvariate(5, 1.6)) + 2
    revenue = employees * rng.randint(90_000, 260_000)
    handle = domain.partition(".")[0].replace("-", "")
    street_number, street = str(rng.randint(1, 2400)), rng.choice(
        ("Market Street", "Harbour Road", "Elm Avenue", "Industrial Parkway", "King Street"))
    tech = sorted(rng.sample(industry.tech, k=min(len(industry.tech), rng.randint(2, 5))))
    return {
        "id": _uuid(rng),
        "name": name,
        "legalName": fixture.get("legalName") or (f"{name}, Inc." if rng.random() < 0.7 else None),
        "domain": domain,
        "domainAliases": [f"{handle}.net", f"get{handle}.com"][: rng.randint(0, 2)],
        "site": {"phoneNumbers": [f"+1 555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"],
                 "emailAddresses": [f"hello@{domain}"]},
        "category": {"sector": industry.sector, "industryGroup": industry.group,
                     "industry": industry.industry, "subIndustry": industry.sub_industry,
                     "sicCode": industry.sic, "naicsCode": industry.naics,
                     "gicsCode": industry.gics, "sic4Codes": [industry.sic4],
                     "naics6Codes": [industry.naics6]},
        "tags": list(industry.tags),
        "description": fixture.get("description")
        or f"{name} is a {industry.industry.lower()} company based in {place.city}.",
        "foundedYear": fixture.get("foundedYear") or rng.randint(1950, 2022),
        "location": f"{street_number} {street}, {place.city}, {place.state_code} "
                    f"{place.postal_code}, {place.country}",
        "timeZone": place.time_zone,
        "utcOffset": place.utc_offset,
        "geo": {"streetNumber": street_number, "streetName": street, "subPremise": None,
                "streetAddress": f"{street_number} {street}", "city": place.city,
                "postalCode": place.postal_code, "state": place.state,
                "stateCode": place.state_code, "country": place.country,
                "countryCode": place.country_code, "lat": place.lat, "lng": place.lng},
        "logo": f"https://logo.clearbit.example/{domain}",
        "facebook": {"handle": handle, "likes": None},
        "linkedin": {"handle": f"company/{handle}"},
        "twitter": {"handle": handle, "id": str(rng.randint(10**7, 10**9)),
                    "bio": f"News and updates from {name}.", "followers": rng.randint(50, 90000),
                    "following": rng.randint(0, 900), "location": place.city,
                    "site": f"https://{domain}", "avatar": None},
        "crunchbase": {"handle": f"organization/{handle}"},
        "emailProvider": False,
        "type": fixture.get("type", "private"),
        "ticker": fixture.get("ticker"),
        "identifiers": {"usEIN": f"{rng.randint(10, 99)}-{rng.randint(1000000, 9999999)}"
                        if place.country_code == "US" else None, "usCIK": None},
        "phone": None,
        "metrics": {"alexaUsRank": None, "alexaGlobalRank": rng.randint(1000, 900000),
                    "trafficRank": rng.choice(("low", "medium", "high", "very_high")),
                    "employees": employees,
                    "employeesRange": _bucket(employees, EMPLOYEE_RANGES, "100K+"),
                    "marketCap": None, "raised": rng.choice((None, rng.randint(1, 400) * 10**6)),
                    "annualRevenue": None,
                    "estimatedAnnualRevenue": _bucket(revenue, REVENUE_RANGES, "$10B+"),
                    "fiscalYearEnd": 12},
        "indexedAt": _timestamp(rng),
        "tech": tech,
        "techCategories": sorted(rng.sample(TECH_CATEGORIES, k=3)),
        "parent": {"domain": fixture.get("parent")},
        "ultimateParent": {"domain": fixture.get("parent")},
    }


class _Traits(NamedTuple):
    """The parts of a person that need not depend on the email, drawn once per pool slot."""

    given: str
    family: str
    place: Place
    role: str
    sub_role: str
    title: str
    seniority: str | None
    bio: str
    has_site: bool
    has_facebook: bool
    github_follows: tuple[int, int]
    twitter_counts: tuple[int, int, int, int]
    indexed_at: str


PERSON_POOL_SIZE = 1024


@lru_cache(maxsize=1)
def _trait_pool() -> tuple[_Traits, ...]:
    """Drawn once: a person then costs a hash and a dict, not a dozen random draws."""
    pool = []
    for slot in range(PERSON_POOL_SIZE):
        rng = random.Random(slot)
        role, sub_role, titles = rng.choice(ROLES)
        title = rng.choice(titles)
        pool.append(_Traits(
            rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES), rng.choice(PLACES), role,
            sub_role, title, rng.choice(SENIORITIES),
            f"{title}. Writes about {rng.choice(('data', 'tea', 'cycling', 'maps'))}.",
            rng.random() < 0.4, rng.random() < 0.3, (rng.randint(0, 3000), rng.randint(0, 300)),
            (rng.randint(0, 20000), rng.randint(0, 2000), rng.randint(0, 40000),
             rng.randint(0, 9000)),
            _timestamp(rng)))
    return tuple(pool)


def _names(local: str, traits: _Traits) -> tuple[str, str]:
    """Names from a ``first.last`` mailbox when it has letters, else invented ones."""
    words = [w for w in local.partition("+")[0].replace("_", ".").replace("-", ".").split(".")
             if w.isalpha()]
    given = words[0].capitalize() if words else traits.given
    family = words[1].capitalize() if len(words) > 1 else traits.family
    return given, family


def _person(email: str) -> dict[str, Any]:
    digest = hashlib.blake2b(email.encode(), digest_size=32, person=b"person").digest()
    traits = _trait_pool()[int.from_bytes(digest[16:18]) % PERSON_POOL_SIZE]
    local, _, domain = email.partition("@")
    given, family = _names(local, traits)
    place = traits.place
    free_mail = domain in FREE_MAIL_DOMAINS
    handle = f"{given}{family}".lower()[:15] + str(digest[18] % 99 + 1)
    person_id = str(uuid.UUID(bytes=digest[:16], version=4))
    gravatar = f"https://gravatar.example/avatar/{digest[:16].hex()}"
    followers, following, statuses, favorites = traits.twitter_counts
    return {
        "id": person_id,
        "name": {"fullName": f"{given} {family}", "givenName": given, "familyName": family},
        "email": email,
        "location": f"{place.city}, {place.state_code}, {place.country_code}",
        "timeZone": place.time_zone,
        "utcOffset": place.utc_offset,
        "geo": _geo(place),
        "bio": traits.bio,
        "site": f"https://{handle}.example" if traits.has_site else None,
        "avatar": f"https://avatars.clearbit.example/{person_id}",
        "employment": {
            "domain": None if free_mail else domain,
            "name": None if free_mail else _company_name(domain),
            "title": None if free_mail else traits.title,
            "role": None if free_mail else traits.role,
            "subRole": None if free_mail else traits.sub_role,
            "seniority": None if free_mail else traits.seniority,
        },
        "facebook": {"handle": handle if traits.has_facebook else None},
        "github": {"handle": handle, "id": int.from_bytes(digest[19:23]) % 10**8,
                   "avatar": f"https://avatars.github.example/u/{handle}", "company": None,
                   "blog": None, "followers": traits.github_follows[0],
                   "following": traits.github_follows[1]},
        "twitter": {"handle": handle, "id": str(int.from_bytes(digest[23:27]) % 10**9),
                    "bio": None, "followers": followers, "following": following,
                    "statuses": statuses, "favorites": favorites, "location": place.city,
                    "site": None, "avatar": None},
        "linkedin": {"handle": f"in/{handle}"},
        "googleplus": {"handle": None},
        "gravatar": {"handle": handle, "urls": [], "avatar": gravatar,
                     "avatars": [{"url": gravatar, "type": "thumbnail"}]},
        "fuzzy": False,
        "emailProvider": free_mail,
        "indexedAt": traits.indexed_at,
        "phone": None,
    }
