"""The statistics of interleaved benchmark rounds: medians, spreads, paired ratios.

Runs are interleaved (A B A B ...) so that slow drifts of the machine hit every
configuration alike; each configuration is then compared with the baseline *of the same
round*, and the median of those per-round figures is reported with its range.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


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


def paired_ratios(baseline: Mapping[Key, float], measured: Mapping[Key, float]) -> list[float]:
    """measured / baseline for every round both have, in the baseline's order; rounds whose baseline
    is zero have no ratio."""
    return [measured[key] / baseline[key] for key in _common_keys(baseline, measured)
            if baseline[key] != 0]


def paired_differences(baseline: Mapping[Key, float], measured: Mapping[Key, float]) -> list[float]:
    """measured - baseline for every round both have, in the baseline's order."""
    return [measured[key] - baseline[key] for key in _common_keys(baseline, measured)]


def median_of_ratios(baseline: Mapping[Key, float], measured: Mapping[Key, float]) -> Spread | None:
    """The per-round ratios summarised; None when no round has both figures."""
    ratios = paired_ratios(baseline, measured)
    return spread(ratios) if ratios else None


def per_unit_us(cpu_seconds: float, units: int) -> float | None:
    """Microseconds of CPU per transaction (or per event); None when there were none."""
    return cpu_seconds * 1e6 / units if units > 0 else None


def _common_keys(first: Mapping[Key, float], second: Mapping[Key, float]) -> list[Key]:
    return [key for key in first if key in second]
