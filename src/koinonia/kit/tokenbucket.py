"""Token buckets in GCRA form, one per key, on any clock in seconds.

One number per key, its "theoretical arrival time" (TAT): the moment the key's next slot is
due. A bucket of `rate` slots a second hands out slots `1 / rate` apart. `take` grants the
slots that start within `horizon` of now, so the horizon is how far ahead a caller may book:

- a pacer (the delivery rate limiter) books a few milliseconds ahead and sleeps until each
  slot, so the slots keep the rate however the callers arrive;
- a refusing limiter (the sandbox carrier's 429s) takes one slot with
  `horizon = (burst - 1) / rate`, which is exactly a classic bucket of `burst` tokens refilled
  at `rate`: a send goes when the bucket holds a token, else it is told when one will.

`late_credit` is how late a slot may be taken while keeping the schedule: a pacer woken a
little late by its timer keeps the mean rate (half an interval by default); a key idle for
longer, or a clock that stalled, restarts from now, so late callers never go out in a
catch-up burst. A refusing limiter passes 0: its tolerance is all in the horizon.
"""

from __future__ import annotations

from typing import NamedTuple

_PRUNE_AT = 10_000  # keys kept before idle ones are dropped


class Grant(NamedTuple):
    granted: int  # slots given (0: none within the horizon)
    wait: float  # seconds from now to the first slot (the next one when none was given)
    first_slot: float  # that slot on the bucket's clock; the others follow `interval` apart


class TokenBucket:
    """The GCRA arithmetic (delivery/ratelimit.py runs the same steps in Lua on Redis)."""

    def __init__(self, rate: float, *, late_credit: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.credit = self.interval / 2 if late_credit is None else late_credit
        if self.credit < 0:
            raise ValueError("late_credit must not be negative")
        self._tat: dict[str, float] = {}

    def take(self, key: str, wanted: int, now: float, horizon: float) -> Grant:
        """Up to `wanted` slots starting within `horizon` of `now`."""
        tat = self._tat.get(key, 0.0)
        if now - tat > self.credit:
            tat = now
        wait = tat - now
        if wait > horizon:
            return Grant(0, wait, tat)
        granted = min(wanted, int((horizon - wait) / self.interval) + 1)
        if len(self._tat) >= _PRUNE_AT:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._tat[key] = tat + granted * self.interval
        return Grant(granted, wait, tat)
