"""Where per-class statement counts come from: the seam for the kernel's statement classes.

A ``ClassSource`` hands out, at each drain, what it counted per (server, class) since the
previous drain: calls, total time, errors and a histogram in the kernel's log2 slots. The
agent adds those up per server, keeping the top classes by total time (``ranking``).

``KernelClasses`` reads the kernel's class map (keyed by server, database and class, with
each class's first text sent once as its sample): each drain hands out what grew since the
previous one, the class named by the fingerprint of its sample and the kernel's server key
(a postmaster's or mysqld's pid) by the agent's ``ServerDirectory``. The per-class metrics
cover every statement, at no per-statement cost in user space. Classes idle for a while
are deleted from the kernel's map, so that it never fills up over days.

``SlowStatementClasses`` counts by fingerprint the statements the kernel sends to user
space (those at or over the query threshold), for a program without the class map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Protocol

from dbprobe.correlate.classes import ClassSamples
from dbprobe.digest.distribution import log2_slot
from dbprobe.kernel.maps import ClassCounters, ClassKey
from dbprobe.kernel.records import HIST_SLOTS, Breakdown, RawClassSample
from dbprobe.model import Query, WaitTime

OTHER = "other"  # the fingerprint of everything folded together
OTHER_TEXT = "(statements of every other class)"
# Classes one drain interval may hold per source; past it, statements count in `other`,
# and as untracked, as the kernel's class map counts its overflow.
MAX_PENDING_CLASSES = 4096
EVICT_IDLE_S = 600.0  # a class with no call this long leaves the kernel's map


@dataclass(frozen=True, slots=True)
class ClassCounts:
    """What one class of one server counted between two drains."""

    server: str  # the agent's server id
    fingerprint: str  # the class id, as --json names it; OTHER for an overflow
    text: str  # the normalised statement, never with literals
    calls: int
    total_ns: int
    errors: int
    slots: tuple[int, ...]  # calls per log2 slot of microseconds, HIST_SLOTS of them
    breakdown: Breakdown | None = None  # where their time went, when the program counts it
    waits: tuple[WaitTime, ...] = ()  # and in which wait events, by name (PostgreSQL)


class ClassSource(Protocol):
    def statement(self, server: str, query: Query) -> None:
        """A statement that reached user space (one at or over the threshold). A source fed
        by the kernel's class map has counted it already, and ignores it."""

    def drain(self) -> list[ClassCounts]:
        """Counts since the previous drain; the source forgets them."""

    @property
    def untracked(self) -> int:
        """Statements counted in no class of their own because the table was full, since start."""

    @property
    def waits_untracked(self) -> int:
        """A class's wait events that the kernel's full table of them did not keep, since start."""


class _Pending:
    __slots__ = ("text", "calls", "total_ns", "errors", "slots")

    def __init__(self, text: str):
        self.text = text
        self.calls = 0
        self.total_ns = 0
        self.errors = 0
        self.slots = [0] * HIST_SLOTS

    def add(self, duration_ns: int, error: bool) -> None:
        self.calls += 1
        self.total_ns += duration_ns
        self.errors += error
        self.slots[log2_slot(duration_ns / 1000)] += 1


class SlowStatementClasses:
    """Counts by fingerprint of the statements the kernel sent (at or over the threshold)."""

    def __init__(self, max_pending: int = MAX_PENDING_CLASSES):
        self._max_pending = max_pending
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._untracked = 0

    def statement(self, server: str, query: Query) -> None:
        key = (server, query.fingerprint.id)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._max_pending:
                self._untracked += 1
                key = (server, OTHER)
                pending = self._pending.get(key)
            if pending is None:
                text = OTHER_TEXT if key[1] == OTHER else query.fingerprint.text
                pending = self._pending[key] = _Pending(text)
        pending.add(round(query.duration_ms * 1e6), query.error)

    def drain(self) -> list[ClassCounts]:
        pending, self._pending = self._pending, {}
        return [ClassCounts(server, fingerprint, p.text, p.calls, p.total_ns, p.errors, tuple(p.slots))
                for (server, fingerprint), p in pending.items()]

    @property
    def untracked(self) -> int:
        return self._untracked

    @property
    def waits_untracked(self) -> int:
        return 0  # these classes sum no wait events


class KernelClasses:
    """The kernel's class map of one trace, drained: what grew since the previous drain."""

    def __init__(self, trace, server_of: Callable[[int], str | None],
                 only_server: Callable[[], str | None], clock: Callable[[], float] = time.monotonic):
        self._collector = trace.collector
        self._samples = ClassSamples(trace.sources, trace.backends, trace.databases, trace.versions)
        trace.on(RawClassSample, self._samples.on_sample)
        self._server_of = server_of
        self._only_server = only_server  # the one server of the binary, for an unknown key
        self._clock = clock
        self._last = ClassCounters.empty()
        self._last_grown: dict[ClassKey, float] = {}
        self._untracked = 0
        self._waits_untracked = 0

    def statement(self, server: str, query: Query) -> None:
        pass  # the kernel counted it already

    def drain(self) -> list[ClassCounts]:
        current = self._collector.class_counters()
        grown = current - self._last
        now = self._clock()
        counts, unnamed = [], []
        for key, stats in grown.classes.items():
            self._last_grown[key] = now
            server = (self._server_of(key.server) if key.server else None) or self._only_server()
            if server is None:
                unnamed.append(key)  # a server the agent has not named yet: at a later drain
                continue
            sample = self._samples.sample(key)
            fingerprint = sample.fingerprint.id if sample else f"{key.hash:016x}"
            text = sample.fingerprint.text if sample else OTHER_TEXT
            counts.append(ClassCounts(server, fingerprint, text, stats.calls, stats.total_ns,
                                      stats.errors, stats.slots, stats.breakdown,
                                      ClassSamples.named_waits(stats.breakdown, sample)))
        self._last = self._evict_idle(_holding_back(current, self._last, unnamed), now)
        self._untracked = current.untracked
        self._waits_untracked = current.waits_untracked
        return counts

    def _evict_idle(self, current: ClassCounters, now: float) -> ClassCounters:
        idle = {key for key in current.classes
                if now - self._last_grown.setdefault(key, now) >= EVICT_IDLE_S}
        if not idle:
            return current
        self._collector.delete_classes(idle)
        for key in idle:
            del self._last_grown[key]
        kept = {key: stats for key, stats in current.classes.items() if key not in idle}
        return ClassCounters(kept, current.untracked, current.samples_deferred, current.waits_untracked)

    @property
    def untracked(self) -> int:
        return self._untracked

    @property
    def waits_untracked(self) -> int:
        return self._waits_untracked


def _holding_back(current: ClassCounters, last: ClassCounters, keys: list[ClassKey]) -> ClassCounters:
    """The reading to count the next drain from, where the classes of `keys` keep their
    earlier reading: what they grew by is handed out once their server has a name."""
    if not keys:
        return current
    classes = dict(current.classes)
    for key in keys:
        if key in last.classes:
            classes[key] = last.classes[key]
        else:
            del classes[key]
    return replace(current, classes=classes)
