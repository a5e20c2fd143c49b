"""Distributions of durations: bounded memory, percentiles to 1%, kernel log2 slots."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from dbprobe.kernel.records import HIST_SLOTS

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


def log2_slot(microseconds: float) -> int:
    """The kernel histograms' slot for a duration: 0 under 1 us, k for [2^(k-1), 2^k) us."""
    whole = int(microseconds)
    return min(whole.bit_length(), HIST_SLOTS - 1)
