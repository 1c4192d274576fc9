"""Scrubbing of text that leaves the process (logs, dead-letter headers, exceptions).

Provider error messages sometimes quote the email they refused, and an API key
can end up in an exception text. Everything we did not write ourselves goes
through ``redact`` before it is logged or put in a header.
"""

from __future__ import annotations

import hashlib
import re

_EMAIL_LIKE = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+")
_KEY_LIKE = re.compile(r"\b(?:sk|pk)_[A-Za-z0-9_]+")
MAX_MESSAGE = 500


def redact(text: str) -> str:
    """``text`` with email-like and key-like tokens replaced, and bounded in length."""
    text = _KEY_LIKE.sub("<key>", text)
    text = _EMAIL_LIKE.sub("<email>", text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def email_hash(normalised_email: str) -> str:
    """A short stable hash that identifies an email in logs without revealing it."""
    return hashlib.sha256(normalised_email.encode()).hexdigest()[:12]
