"""The window every digest covers: since the last digest printed (the whole run, or one
--interval), with the kernel's counters as they stood at its start."""

from __future__ import annotations

import time
from typing import Callable, Generic, Protocol, TypeVar


class Counters(Protocol):
    def __sub__(self, earlier): ...


C = TypeVar("C", bound=Counters)


class Window(Generic[C]):
    """Reads counters that only grow, and hands out what grew in each window."""

    def __init__(self, read: Callable[[], C], zero: C, started: float,
                 clock: Callable[[], float] = time.time):
        self._read = read
        self._clock = clock
        self._started = started
        self._at_start = zero

    def close(self) -> tuple[float, float, C]:
        """(start, end, what the counters grew by) for the window ending now; the next begins."""
        now, current = self._clock(), self._read()
        started, earlier = self._started, self._at_start
        self._started, self._at_start = now, current
        return started, now, current - earlier
