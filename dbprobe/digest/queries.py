"""Aggregates of slow queries by fingerprint, in the spirit of pt-query-digest."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from dbprobe.kernel.maps import KernelTotals, LatencyHistogram
from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.model import Query

_BUCKET_GROWTH = 1.01  # percentiles exact to 1% without keeping every duration


@dataclass(slots=True)
class DurationDistribution:
    """Durations in logarithmic buckets 1% wide: bounded memory, percentiles to 1%."""

    count: int = 0
    total_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0
    _buckets: Counter = field(default_factory=Counter)

    def add(self, duration_ms: float) -> None:
        self.count += 1
        self.total_ms += duration_ms
        self.min_ms = min(self.min_ms, duration_ms)
        self.max_ms = max(self.max_ms, duration_ms)
        self._buckets[_bucket_of(duration_ms)] += 1

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0

    def percentile(self, fraction: float) -> float:
        """The duration under which `fraction` of the samples fall (nearest rank)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(max(_bucket_value(bucket), self.min_ms), self.max_ms)
        return self.max_ms


def _bucket_of(duration_ms: float) -> int:
    return math.floor(math.log(max(duration_ms, 1e-6)) / math.log(_BUCKET_GROWTH))


def _bucket_value(bucket: int) -> float:
    return _BUCKET_GROWTH ** (bucket + 0.5)


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
    digest: QueryDigest

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 0.0)
