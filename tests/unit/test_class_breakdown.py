"""Where each class's time went: the kernel's sums per class, read, merged and shown in the
digest, its JSON, `top` and the agent's metrics."""

from __future__ import annotations

import json
import textwrap

import pytest

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.digest.classes import ClassDigest
from dbprobe.digest.queries import QueryDigest, SlowQuerySummary
from dbprobe.kernel.maps import ClassCounters, ClassKey, ClassStats, KernelTotals, LatencyHistogram
from dbprobe.kernel.records import HIST_SLOTS, Breakdown
from dbprobe.render import queries as render_queries
from dbprobe.model import TimeBreakdown, WaitTime
from dbprobe.render.top import TopHeader, TopView, mostly, screen

MS = 1_000_000


def breakdown(cpu_ms: float = 0, reads: int = 0, read_bytes: int = 0, **off_ms: float) -> Breakdown:
    off = {name: round(off_ms.get(name, 0) * MS) for name in ("io", "lock", "lwlock", "client", "runq", "other")}
    return Breakdown(cpu_ns=round(cpu_ms * MS), off_ns=off, reads=reads, read_bytes=read_bytes)


def stats(calls: int, total_ms: float, parts: Breakdown | None, timed: int | None = None) -> ClassStats:
    slots = [0] * HIST_SLOTS
    slots[round(total_ms * 1000 / calls).bit_length()] = calls  # every call of the mean's length
    return ClassStats(calls, round(total_ms * MS), round(total_ms * MS / calls), 0, 0, tuple(slots),
                      parts, calls if timed is None else timed)


def test_a_window_is_what_grew_part_by_part() -> None:
    key = ClassKey(700, 5, 0xABC)
    before = ClassCounters({key: stats(2, 20, breakdown(cpu_ms=5, io=15, reads=3, read_bytes=24576))})
    after = ClassCounters({key: stats(5, 80, breakdown(cpu_ms=20, io=50, lock=10, reads=9, read_bytes=73728))})
    grown = (after - before).classes[key]
    assert (grown.calls, grown.timed) == (3, 3)
    assert grown.breakdown.cpu_ns == 15 * MS
    assert grown.breakdown.off_ns == {"io": 35 * MS, "lock": 10 * MS, "lwlock": 0, "client": 0,
                                      "runq": 0, "other": 0}
    assert (grown.breakdown.reads, grown.breakdown.read_bytes) == (6, 49152)


def test_a_program_without_the_breakdown_has_none() -> None:
    key = ClassKey(700, 5, 0xABC)
    grown = (ClassCounters({key: stats(4, 8, None)}) - ClassCounters.empty()).classes[key]
    assert grown.breakdown is None and grown.timed == 4  # timed is what the caller set


def _digest(*entries: tuple[str, ClassStats]) -> ClassDigest:
    made = ClassDigest(seconds=2.0)
    for text, counted in entries:
        made.add(fingerprint(text), text, "app", calls=counted.calls, total_ns=counted.total_ns,
                 max_ns=counted.max_ns, errors=0, slow_calls=0, slots=counted.slots,
                 breakdown=counted.breakdown, timed=counted.timed)
    return made


SLEEP = "select pg_sleep(0.1)"
SCAN = "select sum(x) from big where y < 10"


def test_kernel_classes_of_one_fingerprint_add_their_parts() -> None:
    digest = _digest(("select * from t where id in (1, 2)", stats(2, 4, breakdown(cpu_ms=3, io=1))),
                     ("select * from t where id in (1, 2, 3)", stats(1, 2, breakdown(cpu_ms=2))))
    (merged,) = digest.classes.values()
    assert (merged.calls, merged.timed) == (3, 3)
    assert merged.time.cpu_ms == 5.0 and merged.time.io_ms == 1.0


def test_the_digest_shows_each_class_parts_before_its_statement() -> None:
    digest = _digest((SLEEP, stats(3, 303, breakdown(cpu_ms=1.2, other=301.8))),
                     (SCAN, stats(2, 900, breakdown(cpu_ms=300, io=600, reads=4000, read_bytes=32_768_000))))
    text = render_queries._profile_table(digest.ranked(), digest.total_ns, 120, False)
    lines = text.splitlines()
    assert lines[3].strip() == "[cpu 300ms io 600ms(4000 reads) lock 0 lwlock 0] select sum(x) from big where y < ?"
    assert lines[5].strip() == "[cpu 1.2ms io 0 lock 0 lwlock 0 other 302ms] select pg_sleep(?)"


def test_the_digest_json_has_each_class_parts() -> None:
    digest = _digest((SCAN, stats(2, 900, breakdown(cpu_ms=300, io=600, reads=4000, read_bytes=32_768_000), timed=2)))
    (entry,) = json.loads(render_queries.summary_json(_summary(digest), show_literals=False))["classes"]
    assert {key: entry[key] for key in ("cpu_ms", "io_ms", "lock_ms", "other_ms", "reads", "read_bytes",
                                        "timed_calls")} == {
        "cpu_ms": 300.0, "io_ms": 600.0, "lock_ms": 0.0, "other_ms": 0.0, "reads": 4000,
        "read_bytes": 32_768_000, "timed_calls": 2}


def test_without_the_breakdown_the_digest_is_as_before() -> None:
    digest = _digest((SLEEP, stats(3, 303, None)))
    text = render_queries._profile_table(digest.ranked(), digest.total_ns, 120, False)
    assert text.splitlines()[3].strip() == "select pg_sleep(?)"
    (entry,) = json.loads(render_queries.summary_json(_summary(digest), show_literals=False))["classes"]
    assert "cpu_ms" not in entry and "timed_calls" not in entry


def _summary(digest: ClassDigest) -> SlowQuerySummary:
    return SlowQuerySummary(started=0.0, ended=2.0, threshold_ms=100.0, kernel=KernelTotals(),
                            histogram=LatencyHistogram.empty(), digest=QueryDigest(), classes=digest)


@pytest.mark.parametrize("parts, timed, shown", [
    (breakdown(cpu_ms=1, io=3), 2, "io 75%"),
    (breakdown(cpu_ms=10), 2, "cpu 100%"),
    (breakdown(cpu_ms=1, lwlock=2, lock=1), 2, "lwlock 50%"),
    (breakdown(), 0, "-"),  # no statement of it followed
])
def test_top_names_the_largest_part(parts: Breakdown, timed: int, shown: str) -> None:
    (totals,) = _digest((SCAN, stats(2, 4, parts, timed))).classes.values()
    assert mostly(totals) == shown


SCREEN_WITH_BREAKDOWN = """
|dbprobe top  22:13:20  PostgreSQL server pid 709  every 2 s                     |
|2.5 statements/s   601.5 ms/s   2 classes   0 untracked                         |
|sorted by MS/S (total)   database all                                           |
|CALLS/S    MS/S   MEAN    P95    P99 ERR/S MOSTLY      DATABASE QUERY           |
|    1.0   450.0  450ms  450ms  450ms     0 io 67%      app      select sum(x) f…|
|    1.5   151.5  101ms  101ms  101ms     0 other 100%  app      select pg_sleep…|
|1-5 s S sort   d database   space p pause   q quit                              |
"""


def test_top_with_the_breakdown_at_80_columns(utc) -> None:
    digest = _digest((SLEEP, stats(3, 303, breakdown(cpu_ms=1.2, other=301.8))),
                     (SCAN, stats(2, 900, breakdown(cpu_ms=300, io=600))))
    lines = screen(digest, TopHeader("PostgreSQL server pid 709", 2.0, 1_700_000_000.0), TopView(),
                   width=80, height=7)
    assert "\n".join(f"|{line}|" for line in lines) == textwrap.dedent(SCREEN_WITH_BREAKDOWN).strip("\n")


def test_wait_events_are_summed_event_by_event_and_a_window_keeps_what_grew() -> None:
    io, lock = 0x0A000000 | 17, 0x03000004
    before = Breakdown(cpu_ns=1, off_ns={}, waits=((io, 2, 20), (lock, 1, 5)))
    after = before + Breakdown(cpu_ns=2, off_ns={}, waits=((io, 3, 30),))
    assert sorted(after.waits) == [(lock, 1, 5), (io, 5, 50)]
    assert (after - before).waits == ((io, 3, 30),)  # the lock's did not grow: not kept


def test_a_class_names_its_wait_events_merges_them_and_shows_the_longest() -> None:
    scan = stats(2, 900, breakdown(cpu_ms=300, io=600, reads=4000))
    digest = ClassDigest(seconds=2.0)
    for text, waits in ((SCAN, (WaitTime("IO:DataFileRead", 3000, 500.0), WaitTime("LWLock:BufferMapping", 2, 0.5))),
                        ("select sum(x) from big where y < 11", (WaitTime("IO:DataFileRead", 1000, 100.0),))):
        digest.add(fingerprint(text), text, "app", calls=scan.calls, total_ns=scan.total_ns, max_ns=scan.max_ns,
                   errors=0, slow_calls=0, slots=scan.slots, breakdown=scan.breakdown, timed=scan.timed,
                   waits=waits)
    (totals,) = digest.classes.values()
    assert [(w.event, w.count, w.ms) for w in totals.time.waits] == [("IO:DataFileRead", 4000, 600.0),
                                                                    ("LWLock:BufferMapping", 2, 0.5)]
    text = render_queries._profile_table(digest.ranked(), digest.total_ns, 160, False)
    assert text.splitlines()[3].strip().startswith(
        "[cpu 600ms io 1.2s(8000 reads) lock 0 lwlock 0 top IO:DataFileRead 600ms] select sum(x)")
    (entry,) = json.loads(render_queries.summary_json(_summary(digest), show_literals=False))["classes"]
    assert entry["waits"] == [{"event": "IO:DataFileRead", "count": 4000, "ms": 600.0},
                              {"event": "LWLock:BufferMapping", "count": 2, "ms": 0.5}]


def test_a_longest_wait_event_that_rounds_to_nothing_is_not_shown() -> None:
    tiny = TimeBreakdown(cpu_ms=80, io_ms=0.01, lock_ms=0, lwlock_ms=0, client_ms=0, runq_ms=0,
                         other_ms=0, reads=1, waits=(WaitTime("IO:DataFileRead", 1, 0.01),))
    assert render_queries.breakdown_text(tiny) == "cpu 80ms io 0(1 reads) lock 0 lwlock 0"


def test_parallel_workers_are_shown_beside_the_leaders_parts() -> None:
    parts = TimeBreakdown(cpu_ms=80, io_ms=2, lock_ms=0, lwlock_ms=0, client_ms=0, runq_ms=0,
                          other_ms=0, workers=2, workers_cpu_ms=150, workers_io_ms=4.5)
    assert render_queries.breakdown_text(parts) == "cpu 80ms io 2.0ms lock 0 lwlock 0 +2 workers: cpu 150ms io 4.5ms"
    fields = render_queries.breakdown_fields(parts)
    assert (fields["workers"], fields["workers_cpu_ms"], fields["workers_io_ms"]) == (2, 150.0, 4.5)
    summed = Breakdown(cpu_ns=1, off_ns={}, workers=1, workers_cpu_ns=5) + Breakdown(cpu_ns=1, off_ns={}, workers=2,
                                                                                     workers_cpu_ns=7)
    assert (summed.workers, summed.workers_cpu_ns) == (3, 12)
