"""The statistics of interleaved benchmark runs: medians, spreads, paired figures.

Runs alternate between the baseline and the configurations (A B A C A D ... A), so every
configuration's run has a baseline run just before and just after it. Each run is compared
with the mean of those two neighbours, which cancels the machine's drifts that are slower
than a couple of runs; the median of these per-run figures is reported with its range.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

@dataclass(frozen=True, slots=True)
class Spread:
    """The median of some figures with their lowest and highest."""

    median: float
    low: float
    high: float
    count: int

    @property
    def width(self) -> float:
        return self.high - self.low


def spread(values: Iterable[float]) -> Spread:
    figures = sorted(values)
    if not figures:
        raise ValueError("no figures to summarise")
    return Spread(median=statistics.median(figures), low=figures[0], high=figures[-1],
                  count=len(figures))


def bracketing_baselines(series: Sequence[tuple[bool, float]]) -> list[float | None]:
    """For each entry of a time-ordered series of (is_baseline, value): the mean of the
    nearest baseline value before it and the nearest after it (one of them at the ends);
    None for the baseline entries themselves and when the series has no baseline."""
    before: list[float | None] = []
    last: float | None = None
    for is_baseline, value in series:
        before.append(last)
        if is_baseline:
            last = value
    after: list[float | None] = [None] * len(series)
    last = None
    for index in range(len(series) - 1, -1, -1):
        after[index] = last
        if series[index][0]:
            last = series[index][1]
    references: list[float | None] = []
    for (is_baseline, _), earlier, later in zip(series, before, after):
        neighbours = [value for value in (earlier, later) if value is not None]
        references.append(None if is_baseline or not neighbours else statistics.fmean(neighbours))
    return references


def per_unit_us(cpu_seconds: float, units: int) -> float | None:
    """Microseconds of CPU per transaction (or per event); None when there were none."""
    return cpu_seconds * 1e6 / units if units > 0 else None
