"""The statement classes of one server that get series of their own: a bounded top K.

Label cardinality must stay bounded over days, whatever the workload sends. Each server
keeps at most K classes with series of their own, ranked by total time with an hour's
half-life, so that yesterday's heavy batch gives way to today's; every other class's
statements are added to one ``other`` series. A class that gets a series counts from
then on (its earlier statements are in ``other``), so every counter only grows and the sum
over a server's series is every statement counted. Candidates are remembered in a pool a
few times K large; a class with a series gives it up only to a candidate clearly ahead of
it, so classes near the boundary do not flap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from dbprobe.agent.classes import OTHER, OTHER_TEXT, ClassCounts
from dbprobe.kernel.records import HIST_SLOTS, Breakdown

RERANK_EVERY_S = 10.0
HALF_LIFE_S = 3600.0
OVERTAKE_FACTOR = 1.25  # how far ahead a candidate must be to take a class's series
MIN_POOL = 64
POOL_PER_SERIES = 4


@dataclass(slots=True)
class ClassTotals:
    calls: int = 0
    total_ns: int = 0
    errors: int = 0
    slots: list[int] = field(default_factory=lambda: [0] * HIST_SLOTS)
    breakdown: Breakdown | None = None  # with the breakdown on
    waits: dict[str, list[float]] = field(default_factory=dict)  # wait event: [count, seconds]

    def add(self, counts: ClassCounts) -> None:
        self.calls += counts.calls
        self.total_ns += counts.total_ns
        self.errors += counts.errors
        for index, number in enumerate(counts.slots):
            if number:
                self.slots[index] += number
        if counts.breakdown is not None:
            self.breakdown = (counts.breakdown if self.breakdown is None
                              else self.breakdown + counts.breakdown)
        for wait in counts.waits:
            summed = self.waits.setdefault(wait.event, [0, 0.0])
            summed[0] += wait.count
            summed[1] += wait.ms / 1000


@dataclass(frozen=True, slots=True)
class ClassSeries:
    fingerprint: str
    text: str
    totals: ClassTotals


class ClassTable:
    def __init__(self, top_k: int, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._top_k = top_k
        self._scores: dict[str, float] = {}  # the pool of candidates, decayed total ns
        self._texts: dict[str, str] = {}
        self._members: dict[str, ClassTotals] = {}
        self._other = ClassTotals()
        self._ranked_at = clock()

    @property
    def top_k(self) -> int:
        return self._top_k

    def set_top_k(self, top_k: int) -> None:
        self._top_k = top_k
        for fingerprint in sorted(self._members, key=self._score)[: max(len(self._members) - top_k, 0)]:
            del self._members[fingerprint]
        self._trim_pool()

    def add(self, counts: ClassCounts) -> None:
        now = self._clock()
        if now - self._ranked_at >= RERANK_EVERY_S:
            self.rerank(now)
        fingerprint = counts.fingerprint
        if fingerprint == OTHER:
            self._other.add(counts)
            return
        self._scores[fingerprint] = self._scores.get(fingerprint, 0.0) + counts.total_ns
        self._texts.setdefault(fingerprint, counts.text)
        totals = self._members.get(fingerprint)
        if totals is None and len(self._members) < self._top_k:
            totals = self._members[fingerprint] = ClassTotals()
        (totals if totals is not None else self._other).add(counts)
        self._trim_pool()

    def rerank(self, now: float) -> None:
        """Decay the scores, then let candidates clearly ahead take the weakest series."""
        decay = 0.5 ** ((now - self._ranked_at) / HALF_LIFE_S)
        self._ranked_at = now
        for fingerprint in self._scores:
            self._scores[fingerprint] *= decay
        candidates = sorted((f for f in self._scores if f not in self._members), key=self._score,
                            reverse=True)
        weakest = sorted(self._members, key=self._score)
        for candidate in candidates:
            if len(self._members) < self._top_k:
                self._members[candidate] = ClassTotals()
                continue
            if not weakest or self._score(candidate) <= self._score(weakest[0]) * OVERTAKE_FACTOR:
                break
            del self._members[weakest.pop(0)]
            self._members[candidate] = ClassTotals()

    def series(self) -> list[ClassSeries]:
        """The classes with series of their own, then ``other`` once anything went there."""
        found = [ClassSeries(fingerprint, self._texts.get(fingerprint, ""), totals)
                 for fingerprint, totals in self._members.items()]
        if self._other.calls:
            found.append(ClassSeries(OTHER, OTHER_TEXT, self._other))
        return found

    def _score(self, fingerprint: str) -> float:
        return self._scores.get(fingerprint, 0.0)

    def _trim_pool(self) -> None:
        limit = max(MIN_POOL, POOL_PER_SERIES * self._top_k)
        if len(self._scores) <= limit:
            return
        outside = sorted((f for f in self._scores if f not in self._members), key=self._score)
        for fingerprint in outside[: len(self._scores) - limit]:
            del self._scores[fingerprint]
            self._texts.pop(fingerprint, None)
