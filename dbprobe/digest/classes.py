"""Every statement by class: what the kernel counted, merged by fingerprint and ranked.

The kernel counts each finished statement in its class (a hash of its text with literals,
comments and spacing taken out) and sends the first text of a class once, as its sample.
Two kernel classes can be one fingerprint (``IN (1, 2)`` and ``IN (1, 2, 3)``); they are
merged here by the fingerprint of their samples. Percentiles come from the kernel's log2
histogram, so they are exact to the slot: within a factor of two, interpolated inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.correlate.statements import in_milliseconds
from dbprobe.kernel.records import HIST_SLOTS, Breakdown
from dbprobe.model import TimeBreakdown, WaitTime

_NS_PER_US = 1000
_NS_PER_MS = 1_000_000
QUANTILES = (0.50, 0.95, 0.99)


@dataclass(slots=True)
class ClassTotals:
    """One statement class over a window: every call, whatever its duration."""

    fingerprint: Fingerprint
    sample: str  # the first text seen, with its literals: shown only when asked for
    database: str | None
    calls: int = 0
    total_ns: int = 0
    max_ns: int = 0
    errors: int = 0
    slow_calls: int = 0  # calls at or over the query threshold
    slots: list[int] = field(default_factory=lambda: [0] * HIST_SLOTS)
    breakdown: Breakdown | None = None  # with the breakdown on: summed over `timed` calls
    timed: int = 0
    waits: dict[str, list[float]] = field(default_factory=dict)  # by name: [count, ms]

    def add(self, calls: int, total_ns: int, max_ns: int, errors: int, slow_calls: int,
            slots: tuple[int, ...] | list[int], breakdown: Breakdown | None = None,
            timed: int = 0, waits: Sequence[WaitTime] = ()) -> None:
        self.calls += calls
        self.total_ns += total_ns
        self.max_ns = max(self.max_ns, max_ns)
        self.errors += errors
        self.slow_calls += slow_calls
        for slot, count in enumerate(slots):
            self.slots[slot] += count
        if breakdown is not None:
            self.breakdown = breakdown if self.breakdown is None else self.breakdown + breakdown
            self.timed += timed
        for wait in waits:
            summed = self.waits.setdefault(wait.event, [0, 0.0])
            summed[0] += wait.count
            summed[1] += wait.ms

    @property
    def time(self) -> TimeBreakdown | None:
        """Where the class's time went, in milliseconds, when the trace counted it."""
        if self.breakdown is None:
            return None
        waits = sorted((WaitTime(event, int(count), ms) for event, (count, ms) in self.waits.items()),
                       key=lambda wait: -wait.ms)
        return in_milliseconds(self.breakdown, tuple(waits))

    @property
    def total_ms(self) -> float:
        return self.total_ns / _NS_PER_MS

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0

    @property
    def max_ms(self) -> float:
        return self.max_ns / _NS_PER_MS

    def percentile_ms(self, fraction: float) -> float:
        return slot_percentile_ns(self.slots, fraction, self.max_ns) / _NS_PER_MS


def slot_percentile_ns(slots: list[int] | tuple[int, ...], fraction: float, max_ns: int) -> float:
    """The duration under which ``fraction`` of the calls fall, from log2 slots of
    microseconds (slot 0: under 1 us; slot k: [2^(k-1), 2^k) us), interpolated inside its
    slot and never above the longest call."""
    count = sum(slots)
    if not count:
        return 0.0
    rank = max(1.0, fraction * count)
    seen = 0
    for slot, in_slot in enumerate(slots):
        if in_slot and seen + in_slot >= rank:
            low = 0.0 if slot == 0 else float(1 << (slot - 1))
            high = float(1 << slot)
            within = (rank - seen) / in_slot
            value_ns = (low + (high - low) * within) * _NS_PER_US
            return min(value_ns, float(max_ns)) if max_ns else value_ns
        seen += in_slot
    return float(max_ns)


@dataclass(slots=True)
class ClassDigest:
    """Statement classes over one window, keyed by database and fingerprint."""

    classes: dict[tuple[str | None, str], ClassTotals] = field(default_factory=dict)
    untracked: int = 0  # statements the kernel's full class map counted in no class
    waits_untracked: int = 0  # a class's wait events the kernel's full class_waits did not keep
    seconds: float = 0.0  # the window's length

    def add(self, fingerprint: Fingerprint, sample: str, database: str | None, *, calls: int,
            total_ns: int, max_ns: int, errors: int, slow_calls: int,
            slots: tuple[int, ...] | list[int], breakdown: Breakdown | None = None,
            timed: int = 0, waits: Sequence[WaitTime] = ()) -> None:
        key = (database, fingerprint.id)
        totals = self.classes.get(key)
        if totals is None:
            totals = self.classes[key] = ClassTotals(fingerprint, sample, database)
        totals.add(calls, total_ns, max_ns, errors, slow_calls, slots, breakdown, timed, waits)

    def ranked(self, by: str = "total") -> list[ClassTotals]:
        """The classes, the largest first by ``by``: total, mean, calls, p99 or errors."""
        return sorted(self.classes.values(), key=SORT_KEYS[by], reverse=True)

    @property
    def calls(self) -> int:
        return sum(totals.calls for totals in self.classes.values())

    @property
    def total_ns(self) -> int:
        return sum(totals.total_ns for totals in self.classes.values())


SORT_KEYS = {
    "total": lambda t: (t.total_ns, t.calls),
    "mean": lambda t: (t.mean_ms, t.calls),
    "calls": lambda t: (t.calls, t.total_ns),
    "p99": lambda t: (t.percentile_ms(0.99), t.total_ns),
    "errors": lambda t: (t.errors, t.total_ns),
}
