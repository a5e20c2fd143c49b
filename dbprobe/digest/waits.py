"""The wait-event profile: time per wait event over the whole server, and per statement class.

The whole-server part comes from the kernel (every off-CPU span and file call of the traced
threads, in statements or idle between them); the per-class part sums the breakdowns of the
statements that reached user space, by fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.model import Query

PARTS = ("cpu", "io", "lock", "lwlock", "client", "runq", "other")


@dataclass(slots=True)
class EventTime:
    count: int = 0
    ms: float = 0.0

    def add(self, count: int, ms: float) -> None:
        self.count += count
        self.ms += ms


@dataclass(frozen=True, slots=True)
class ProfileRow:
    event: str  # "IO:DataFileRead", or a span outside any wait event: "(io, no wait event)"
    count: int
    ms: float


def ranked(events: dict[str, EventTime]) -> list[ProfileRow]:
    return sorted((ProfileRow(name, time.count, time.ms) for name, time in events.items()),
                  key=lambda row: (-row.ms, row.event))


@dataclass(slots=True)
class ClassWaits:
    """One statement class: its calls, its time by part, and by wait event."""

    fingerprint: Fingerprint
    calls: int = 0
    total_ms: float = 0.0
    parts_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    events: dict[str, EventTime] = field(default_factory=dict)

    def add(self, query: Query) -> None:
        breakdown = query.breakdown
        self.calls += 1
        self.total_ms += query.duration_ms
        for part in PARTS:
            self.parts_ms[part] += getattr(breakdown, f"{part}_ms")
        for wait in breakdown.waits:
            self.events.setdefault(wait.event, EventTime()).add(wait.count, wait.ms)


class ClassWaitDigest:
    """The breakdowns of statements, summed by fingerprint."""

    def __init__(self) -> None:
        self.classes: dict[str, ClassWaits] = {}

    def add(self, query: Query) -> None:
        if query.breakdown is None:
            return
        fingerprint = query.fingerprint
        self.classes.setdefault(fingerprint.id, ClassWaits(fingerprint)).add(query)

    def ranked(self) -> list[ClassWaits]:
        return sorted(self.classes.values(), key=lambda item: (-item.total_ms, item.fingerprint.id))


@dataclass(frozen=True, slots=True)
class WaitProfile:
    """What a digest of ``dbprobe waits`` shows."""

    started: float
    ended: float
    events: list[ProfileRow]  # the whole server, from the kernel
    classes: list[ClassWaits]  # by statement class

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 0.0)

    @property
    def total_ms(self) -> float:
        return sum(row.ms for row in self.events)
