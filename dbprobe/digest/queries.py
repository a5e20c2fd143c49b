"""Aggregates of slow queries by fingerprint, in the spirit of pt-query-digest."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dbprobe.digest.classes import ClassDigest
from dbprobe.digest.distribution import DurationDistribution
from dbprobe.kernel.maps import KernelTotals, LatencyHistogram
from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.model import Query


@dataclass(slots=True)
class QueryClass:
    """Every slow execution of one fingerprint."""

    fingerprint: Fingerprint
    durations: DurationDistribution = field(default_factory=DurationDistribution)
    errors: int = 0
    databases: Counter = field(default_factory=Counter)
    worst: Query | None = None

    def add(self, query: Query) -> None:
        self.durations.add(query.duration_ms)
        self.errors += query.error
        if query.database:
            self.databases[query.database] += 1
        if self.worst is None or query.duration_ms > self.worst.duration_ms:
            self.worst = query

    @property
    def calls(self) -> int:
        return self.durations.count


@dataclass(slots=True)
class QueryDigest:
    """Slow queries grouped by fingerprint over one window of time."""

    classes: dict[str, QueryClass] = field(default_factory=dict)
    first_end: float | None = None
    last_end: float | None = None

    def add(self, query: Query) -> None:
        key = query.fingerprint.id
        query_class = self.classes.get(key)
        if query_class is None:
            query_class = self.classes[key] = QueryClass(query.fingerprint)
        query_class.add(query)
        self.first_end = query.end if self.first_end is None else min(self.first_end, query.end)
        self.last_end = query.end if self.last_end is None else max(self.last_end, query.end)

    @property
    def count(self) -> int:
        return sum(query_class.calls for query_class in self.classes.values())

    @property
    def total_ms(self) -> float:
        return sum(query_class.durations.total_ms for query_class in self.classes.values())

    def ranked(self) -> list[QueryClass]:
        """Classes by total time, the costliest first (ties by id, for stable output)."""
        return sorted(self.classes.values(),
                      key=lambda c: (-c.durations.total_ms, c.fingerprint.id))


@dataclass(frozen=True, slots=True)
class SlowQuerySummary:
    """Everything the slow-query digest shows for one window."""

    started: float  # wall-clock seconds
    ended: float
    threshold_ms: float
    kernel: KernelTotals  # all statements the kernel saw in the window
    histogram: LatencyHistogram
    digest: QueryDigest  # the statements at or over the threshold that reached user space
    classes: ClassDigest  # every statement, by class, as the kernel counted them

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 0.0)
