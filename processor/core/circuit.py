"""A circuit breaker: stop calling a provider that keeps failing, probe for recovery.

``closed``: calls go through; ``failure_threshold`` consecutive failures open it.
``open``: no calls at all for ``reset_timeout`` seconds.
``half_open``: one probe call goes through; success closes the circuit, failure
opens it again for another ``reset_timeout``.

The lookup pool uses one breaker for provider failures (5xx, timeouts,
refused connections) and a second with a threshold of one for an exhausted
quota (402), whose probe is simply the next record's lookup.
"""

from __future__ import annotations

from enum import IntEnum

from processor.core.clock import Clock


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(self, failure_threshold: int, reset_timeout: float, clock: Clock) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self._threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = CircuitState.CLOSED

    def admit(self) -> float:
        """0 when a call may go now (claiming the probe when half open), else seconds to wait."""
        if self.state is CircuitState.CLOSED:
            return 0.0
        now = self._clock.monotonic()
        if self.state is CircuitState.OPEN:
            remaining = self._opened_at + self._reset_timeout - now
            if remaining > 0:
                return remaining
            self.state = CircuitState.HALF_OPEN
        if self._probing:
            # Someone else's probe is out; check back soon.
            return min(1.0, self._reset_timeout)
        self._probing = True
        return 0.0

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        self.state = CircuitState.CLOSED

    def failure(self) -> None:
        self._failures += 1
        if self.state is CircuitState.HALF_OPEN or self._failures >= self._threshold:
            self.state = CircuitState.OPEN
            self._opened_at = self._clock.monotonic()
        self._probing = False

    def release(self) -> None:
        """An admitted call ended with no verdict on the provider's health (e.g. a 429)."""
        self._probing = False
