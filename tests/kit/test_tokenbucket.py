"""The one token bucket: as a refusing limiter it decides exactly as a classic bucket of
`burst` tokens refilled at `rate` (what the sandbox carrier had before it used this one).
The pacing mode is tested with the delivery rate limiter (tests/delivery/test_ratelimit.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koinonia.kit.tokenbucket import Grant, TokenBucket

PROPERTY = settings(max_examples=300, deadline=None, database=None)


class ClassicBucket:
    """Tokens refilled at `rate` up to `capacity`; a send takes one."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.updated = rate, capacity, capacity, now

    def take(self, now: float) -> float | None:
        """None when a send may go now, else the seconds until one may."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def refuse_or_take(bucket: TokenBucket, burst: float, now: float) -> float | None:
    tolerance = (burst - 1) * bucket.interval
    grant = bucket.take("n", 1, now, tolerance)
    return None if grant.granted else grant.wait - tolerance


# Powers of two and times in 1/64 s keep every sum exact, so the two may be compared exactly.
@PROPERTY
@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 4.0, 16.0]),
    burst=st.integers(min_value=1, max_value=8),
    steps=st.lists(st.integers(min_value=0, max_value=128), min_size=1, max_size=60),
)
def test_a_refusing_bucket_decides_as_a_classic_token_bucket(
    rate: float, burst: int, steps: list[int]
) -> None:
    now = 1000.0
    classic = ClassicBucket(rate, burst, now)
    gcra = TokenBucket(rate, late_credit=0.0)
    for step in steps:
        now += step / 64
        assert refuse_or_take(gcra, burst, now) == classic.take(now)


def test_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(2.0, late_credit=0.0)  # 2/s, bursts of 3
    assert [refuse_or_take(bucket, 3, 10.0) for _ in range(4)] == [None, None, None, 0.5]
    assert refuse_or_take(bucket, 3, 10.5) is None
    assert refuse_or_take(bucket, 3, 10.5) == 0.5


def test_keys_have_their_own_buckets() -> None:
    bucket = TokenBucket(1.0, late_credit=0.0)
    assert bucket.take("a", 1, 5.0, 0.0) == Grant(1, 0.0, 5.0)
    assert bucket.take("a", 1, 5.0, 0.0).granted == 0
    assert bucket.take("b", 1, 5.0, 0.0) == Grant(1, 0.0, 5.0)


def test_a_rate_and_a_credit_are_checked() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="late_credit"):
        TokenBucket(1.0, late_credit=-1.0)
    assert TokenBucket(4.0).credit == 0.125  # half an interval by default
