"""Riding out a database outage in the worker: tell an outage from a bug, wait with backoff,
log once per cause, say when it is over.

What counts as an outage (a restart, failover or network cut of PostgreSQL: refused or lost
connections, the server shutting down or starting up, too many connections, an exhausted pool)
is decided by koinonia.db.outage, the same classifier the API's 503 uses. None of it says
anything about the work: the worker waits (exponential backoff with jitter, capped)
and tries again, and nothing it already obtained from a carrier is dropped meanwhile (see
Dispatcher._record). Every loop of a worker process shares one `DatabaseOutage`, so a 10 s
outage is one `database_unavailable` warning per cause and one `database_recovered`, not a
traceback per attempt per loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from koinonia.db.outage import outage_cause
from koinonia.kit.logging import log


class DatabaseOutage:
    """The database's health as one worker process sees it; shared by all its loops."""

    def __init__(
        self,
        *,
        base_s: float = 0.1,
        max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self._clock = clock
        self._rng = rng
        self.failures = 0  # consecutive, since the last success
        self._since: float | None = None
        self._logged: set[str] = set()

    @property
    def down(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException, *, during: str) -> float | None:
        """Account a failure of `during`. Returns seconds to wait before trying again when it
        is an outage (logged the first time its cause is seen in this outage), else None."""
        cause = outage_cause(exc)
        if cause is None:
            return None
        if self._since is None:
            self._since = self._clock()
        self.failures += 1
        if cause not in self._logged:
            self._logged.add(cause)
            log.warning("database_unavailable", cause=cause, during=during, error=str(exc)[:300])
        return self.delay(self.failures)

    def delay(self, failures: int) -> float:
        """Exponential from base_s, capped at max_s, "equal jitter" (half fixed, half random)
        so that the workers of a fleet do not all reconnect in the same millisecond."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(failures - 1, 30))
        return ceiling / 2 + self._rng() * ceiling / 2

    def succeeded(self) -> None:
        """A statement went through: the outage, if any, is over."""
        if self._since is None:
            return
        # At the warning's level: whoever sees that an outage began sees that it ended.
        log.warning(
            "database_recovered",
            failures=self.failures,
            outage_s=round(self._clock() - self._since, 3),
            causes=sorted(self._logged),
        )
        self.failures = 0
        self._since = None
        self._logged.clear()
