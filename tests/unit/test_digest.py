"""Slow-query aggregates: duration distributions, query classes, the kernel's counters."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from dbprobe.kernel.maps import KernelTotals, LatencyHistogram
from dbprobe.digest.classes import ClassDigest
from dbprobe.digest.queries import DurationDistribution, QueryDigest, SlowQuerySummary
from dbprobe.kernel.records import HIST_SLOTS, PROTOCOLS
from dbprobe.correlate.fingerprint import Fingerprint, fingerprint
from dbprobe.model import Query


def query(text: str, duration_ms: float, *, end: float = 1_700_000_000.0, error: bool = False,
          database: str | None = "shop", print_as: Fingerprint | None = None) -> Query:
    return Query(end=end, duration_ms=duration_ms, pid=4242, tid=4242, ns_pid=None,
                 db="postgresql", database=database, text=text,
                 fingerprint=print_as or fingerprint(text), protocol="simple",
                 mechanism="usdt", error=error, truncated=False)


def distribution(samples: list[float]) -> DurationDistribution:
    durations = DurationDistribution()
    for sample in samples:
        durations.add(sample)
    return durations


def exact_percentile(samples: list[float], fraction: float) -> float:
    """Nearest rank: the smallest sample with at least `fraction` of the samples at or under it."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


# --- duration distributions --------------------------------------------------------------------

FRACTIONS = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


@pytest.mark.parametrize(
    "draw",
    [
        lambda g: g.lognormvariate(3.0, 1.5),  # milliseconds to seconds, a long tail
        lambda g: g.uniform(100.0, 101.0),  # tightly packed
        lambda g: g.expovariate(1 / 5.0),  # sub-millisecond to tens of ms
        lambda g: 10 ** g.uniform(-3, 6),  # a microsecond to 17 minutes
    ],
    ids=["lognormal", "narrow", "exponential", "nine-decades"],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_within_one_and_a_half_percent(draw, seed: int) -> None:
    generator = random.Random(seed)
    samples = [draw(generator) for _ in range(5_000)]
    durations = distribution(samples)
    for fraction in FRACTIONS:
        exact = exact_percentile(samples, fraction)
        assert durations.percentile(fraction) == pytest.approx(exact, rel=0.015), fraction


def test_count_min_max_mean() -> None:
    samples = [12.5, 3.0, 250.0, 7.25, 3.0]
    durations = distribution(samples)
    assert durations.count == 5
    assert (durations.min_ms, durations.max_ms) == (3.0, 250.0)
    assert durations.total_ms == pytest.approx(275.75)
    assert durations.mean_ms == pytest.approx(275.75 / 5)


def test_percentiles_stay_between_min_and_max() -> None:
    generator = random.Random(11)
    for _ in range(200):
        samples = [generator.uniform(1.0, 1.02) for _ in range(generator.randint(1, 5))]
        durations = distribution(samples)
        for fraction in FRACTIONS:
            assert min(samples) <= durations.percentile(fraction) <= max(samples)


def test_one_sample_is_every_percentile() -> None:
    durations = distribution([42.0])
    assert {durations.percentile(f) for f in FRACTIONS} == {42.0}


def test_zero_durations() -> None:
    durations = distribution([0.0, 0.0, 0.0])
    assert (durations.percentile(0.5), durations.min_ms, durations.max_ms, durations.mean_ms) == (
        0.0, 0.0, 0.0, 0.0)


def test_empty_distribution() -> None:
    durations = DurationDistribution()
    assert (durations.count, durations.mean_ms, durations.percentile(0.95)) == (0, 0.0, 0.0)


def test_memory_is_bounded_by_the_range_not_the_count() -> None:
    generator = random.Random(7)
    durations = distribution([generator.uniform(10.0, 20.0) for _ in range(20_000)])
    # 1% buckets: log(2)/log(1.01) is about 70 buckets between 10 and 20 ms.
    assert len(durations._buckets) <= 71


# --- the digest ------------------------------------------------------------------------------


def digest_of(queries: list[Query]) -> QueryDigest:
    digest = QueryDigest()
    for each in queries:
        digest.add(each)
    return digest


def test_queries_group_by_fingerprint() -> None:
    digest = digest_of([
        query("SELECT * FROM orders WHERE id = 1", 100.0),
        query("select * from orders where id = 2", 200.0),
        query("SELECT * FROM orders WHERE id IN (1, 2, 3)", 50.0),
        query("SELECT * FROM stock", 10.0),
    ])
    orders = fingerprint("SELECT * FROM orders WHERE id = 7").id
    assert len(digest.classes) == 3
    assert digest.classes[orders].calls == 2
    assert digest.classes[orders].durations.total_ms == pytest.approx(300.0)
    assert digest.count == 4
    assert digest.total_ms == pytest.approx(360.0)


def test_ranked_by_total_time() -> None:
    digest = digest_of([
        query("SELECT 1", 10.0), query("SELECT 1", 10.0), query("SELECT 1", 10.0),  # 30 total
        query("SELECT * FROM big", 25.0),  # 25 total, the slowest call
        query("UPDATE t SET a = 1", 40.0),  # 40 total
    ])
    assert [c.fingerprint.text for c in digest.ranked()] == [
        "UPDATE t SET a = ?", "SELECT ?", "SELECT * FROM big"]


def test_ties_are_broken_by_fingerprint_id_whatever_the_arrival_order() -> None:
    ids = ["00000000000000bb", "00000000000000aa", "00000000000000cc"]
    queries = [query(f"SELECT {n}", 5.0, print_as=Fingerprint(id, f"q{n}"))
               for n, id in enumerate(ids)]
    for order in (queries, queries[::-1]):
        assert [c.fingerprint.id for c in digest_of(order).ranked()] == sorted(ids)


def test_the_worst_sample_is_kept() -> None:
    digest = digest_of([
        query("SELECT * FROM t WHERE a = 1", 10.0),
        query("SELECT * FROM t WHERE a = 2", 99.0, end=1.0),
        query("SELECT * FROM t WHERE a = 3", 99.0, end=2.0),  # as slow, later: not the worst
        query("SELECT * FROM t WHERE a = 4", 50.0),
    ])
    (only,) = digest.classes.values()
    assert (only.worst.text, only.worst.end) == ("SELECT * FROM t WHERE a = 2", 1.0)


def test_errors_and_databases_are_counted() -> None:
    digest = digest_of([
        query("SELECT 1", 1.0, error=True, database="shop"),
        query("SELECT 2", 1.0, error=False, database="shop"),
        query("SELECT 3", 1.0, error=True, database="billing"),
        query("SELECT 4", 1.0, error=False, database=None),
    ])
    (only,) = digest.classes.values()
    assert only.errors == 2
    assert only.databases == Counter({"shop": 2, "billing": 1})


def test_first_and_last_end_whatever_the_arrival_order() -> None:
    digest = digest_of([query("SELECT 1", 1.0, end=end) for end in (50.0, 20.0, 90.0, 30.0)])
    assert (digest.first_end, digest.last_end) == (20.0, 90.0)


def test_an_empty_digest() -> None:
    digest = QueryDigest()
    assert (digest.count, digest.total_ms, digest.ranked()) == (0, 0, [])
    assert (digest.first_end, digest.last_end) == (None, None)


# --- kernel counters and the window ------------------------------------------------------------


def test_kernel_totals_of_a_window() -> None:
    before = KernelTotals(queries=10, query_ns=5_000, emitted=3, lost=1)
    after = KernelTotals(queries=25, query_ns=12_000, emitted=9, lost=4)
    assert after - before == KernelTotals(queries=15, query_ns=7_000, emitted=6, lost=3)


def histogram(**counts_by_protocol: dict[int, int]) -> LatencyHistogram:
    slots = {}
    for protocol in PROTOCOLS:
        counts = [0] * HIST_SLOTS
        for slot, count in counts_by_protocol.get(protocol, {}).items():
            counts[slot] = count
        slots[protocol] = tuple(counts)
    return LatencyHistogram(slots)


def test_latency_histogram_window_and_combination() -> None:
    before = histogram(simple={3: 2}, extended={5: 1})
    after = histogram(simple={3: 7, 10: 1}, extended={3: 4, 5: 1})
    window = after - before
    assert window == histogram(simple={3: 5, 10: 1}, extended={3: 4})
    combined = window.combined()
    assert len(combined) == HIST_SLOTS
    assert (combined[3], combined[10], sum(combined)) == (9, 1, 10)
    assert window.total == 10


def test_empty_histogram() -> None:
    empty = LatencyHistogram.empty()
    assert set(empty.slots) == set(PROTOCOLS)
    assert empty.total == 0
    assert empty.combined() == (0,) * HIST_SLOTS


@pytest.mark.parametrize(
    ("started", "ended", "seconds"), [(100.0, 160.5, 60.5), (100.0, 90.0, 0.0)])
def test_summary_seconds_are_never_negative(started: float, ended: float, seconds: float) -> None:
    summary = SlowQuerySummary(started=started, ended=ended, threshold_ms=1.0,
                               kernel=KernelTotals(), histogram=LatencyHistogram.empty(),
                               digest=QueryDigest(), classes=ClassDigest())
    assert summary.seconds == pytest.approx(seconds)
