"""Email normalisation and a local syntax check, so no paid lookup is spent on junk.

The check is deliberately the common "dot-atom" subset of RFC 5321/5322 that
enrichment providers accept: ASCII only, no quoted local parts, no IP-literal
domains, a dotted domain whose last label is alphabetic (or an IDNA ``xn--``
label). Anything else is refused locally; Clearbit would answer 422 for it and
charge nothing, but it would still cost a request against the rate limit.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64

_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
_ADDRESS = re.compile(rf"({_LOCAL})@((?:{_LABEL}\.)+{_TLD})", re.ASCII)


def normalise(email: str) -> str:
    """The form used for lookups and cache keys: surrounding blanks trimmed, lower case."""
    return email.strip().lower()


@lru_cache(maxsize=65_536)
def is_valid(normalised: str) -> bool:
    """True when ``normalised`` (see ``normalise``) is an address worth looking up."""
    if len(normalised) > MAX_ADDRESS_LENGTH:
        return False
    match = _ADDRESS.fullmatch(normalised)
    return match is not None and len(match.group(1)) <= MAX_LOCAL_LENGTH
