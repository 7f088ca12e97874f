"""Many short-lived deadlines, one watcher task.

Every request on the hot path gets deadlines (its headers, its body) that almost never expire.
A timer each (`loop.call_later` + `cancel`, or `asyncio.timeout`) cost 4-20 µs of CPU per
request, measured: cancelled timers stay in the loop's heap until it is cleaned. Here a
deadline is a dict entry (~0.3 µs to add and remove) and one task wakes every `tick` to act on
the expired ones, so a deadline is kept to within a tick: a quarter of the shortest deadline
seen, at most one second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(self, on_expiry: Callable[[K], None]) -> None:
        self.on_expiry = on_expiry
        self.due: dict[K, float] = {}
        self.tick = 1.0
        self.watcher: asyncio.Task[None] | None = None

    def add(self, key: K, seconds: float) -> None:
        """`on_expiry(key)` in `seconds` (within a tick) unless `discard(key)` comes first."""
        loop = asyncio.get_running_loop()
        if self.watcher is None or self.watcher.done() or self.watcher.get_loop() is not loop:
            self.due.clear()  # anything left belongs to a loop that is gone
            self.watcher = loop.create_task(self._watch(loop))
        self.due[key] = loop.time() + seconds
        if seconds < self.tick * 4:
            self.tick = seconds / 4

    def discard(self, key: K) -> None:
        self.due.pop(key, None)

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self.due:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for key in [key for key, due in self.due.items() if due <= now]:
                del self.due[key]
                self.on_expiry(key)
