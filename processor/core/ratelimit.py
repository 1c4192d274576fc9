"""A pool-wide request limiter: requests spread evenly, everyone held back after a 429.

One instance is shared by every lookup worker, so the pool as a whole keeps
to the provider's limit and a 429 slows all workers at once instead of each
discovering it alone. Requests are spaced evenly (no bursts): a steady backlog
then runs just under the limit instead of bursting into it and being told off.

``headroom`` keeps the rate a little under the configured limit, because the
provider counts arrivals, and network jitter can bring two evenly spaced
requests closer together than they were sent.
"""

from __future__ import annotations

from processor.core.clock import Clock


class RateLimiter:
    def __init__(self, per_minute: float, clock: Clock, headroom: float = 0.01) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be >= 0")
        self._clock = clock
        self._interval = 60.0 / per_minute * (1.0 + headroom) if per_minute else 0.0
        self._next = clock.monotonic()
        self._hold_until = 0.0

    @property
    def interval(self) -> float:
        return self._interval

    def reserve(self) -> float:
        """Book the next request slot; returns how long to wait before sending (s)."""
        now = self._clock.monotonic()
        start = max(self._next, now, self._hold_until)
        self._next = start + self._interval
        return start - now

    def hold_until(self, moment: float) -> None:
        """No request before ``moment`` (monotonic s): a 429's Retry-After or reset time."""
        if moment > self._hold_until:
            self._hold_until = moment
            self._next = max(self._next, moment)

    def held(self) -> bool:
        """True while a hold is in force (a slot booked before it must be booked again)."""
        return self._clock.monotonic() < self._hold_until

    def hold_remaining(self) -> float:
        return max(0.0, self._hold_until - self._clock.monotonic())
