"""Statement classes per server: counted from slow statements, bounded to a top K and other."""

from __future__ import annotations

from dbprobe.agent.classes import OTHER, ClassCounts, SlowStatementClasses
from dbprobe.agent.ranking import HALF_LIFE_S, RERANK_EVERY_S, ClassTable
from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.kernel.records import HIST_SLOTS
from dbprobe.model import Query


def query(text: str, ms: float, error: bool = False) -> Query:
    return Query(end=0.0, duration_ms=ms, pid=10, tid=10, ns_pid=None, db="postgresql",
                 database="shop", text=text, fingerprint=fingerprint(text), protocol="simple",
                 mechanism="usdt", error=error, truncated=False)


def counts(fingerprint_id: str, calls: int, total_ms: float, server: str = "s") -> ClassCounts:
    slots = [0] * HIST_SLOTS
    slots[10] = calls
    return ClassCounts(server, fingerprint_id, f"SELECT {fingerprint_id}", calls,
                       round(total_ms * 1e6), 0, tuple(slots))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slow_statements_are_counted_by_server_and_fingerprint() -> None:
    source = SlowStatementClasses()
    source.statement("a", query("SELECT * FROM t WHERE id = 1", 150.0))
    source.statement("a", query("select *  from t where id = 2", 250.0, error=True))
    source.statement("b", query("SELECT * FROM t WHERE id = 3", 1.5))
    drained = {(c.server, c.text): c for c in source.drain()}
    a = drained[("a", "SELECT * FROM t WHERE id = ?")]
    assert (a.calls, a.total_ns, a.errors) == (2, 400_000_000, 1)
    # 150 ms and 250 ms both lie in [2^17, 2^18) us: slot 18.
    assert a.slots[18] == 2 and sum(a.slots) == 2
    b = drained[("b", "SELECT * FROM t WHERE id = ?")]
    assert b.calls == 1 and b.slots[11] == 1  # 1500 us: [1024, 2048)
    assert a.fingerprint == b.fingerprint == fingerprint("SELECT * FROM t WHERE id = 1").id
    assert source.drain() == []  # drained means forgotten


def test_a_full_source_counts_the_rest_in_other_and_says_how_many() -> None:
    source = SlowStatementClasses(max_pending=2)
    for number in range(5):
        source.statement("a", query(f"SELECT * FROM t{number}", 1.0))
    drained = {c.fingerprint: c for c in source.drain()}
    assert len(drained) == 3 and drained[OTHER].calls == 3
    assert source.untracked == 3
    assert sum(c.calls for c in drained.values()) == 5


def test_top_k_then_other() -> None:
    table = ClassTable(top_k=2, clock=Clock())
    for name in ("a", "b", "c", "d"):
        table.add(counts(name, 1, 1.0))
    series = {s.fingerprint: s for s in table.series()}
    assert set(series) == {"a", "b", OTHER}
    assert series[OTHER].totals.calls == 2
    assert series["a"].text == "SELECT a"
    assert series[OTHER].totals.slots[10] == 2


def test_a_heavier_class_takes_the_weakest_series_at_the_next_rerank() -> None:
    clock = Clock()
    table = ClassTable(top_k=2, clock=clock)
    table.add(counts("a", 1, 10.0))
    table.add(counts("b", 1, 1.0))
    table.add(counts("c", 5, 100.0))  # no room: in other for now
    assert {s.fingerprint for s in table.series()} == {"a", "b", OTHER}
    clock.now += RERANK_EVERY_S
    table.add(counts("c", 2, 40.0))
    series = {s.fingerprint: s for s in table.series()}
    assert set(series) == {"a", "c", OTHER}
    # Its series counts from when it got it; what came before stays in other.
    assert series["c"].totals.calls == 2
    assert series[OTHER].totals.calls == 5


def test_every_statement_is_in_exactly_one_series() -> None:
    clock = Clock()
    table = ClassTable(top_k=3, clock=clock)
    sent = 0
    for step in range(400):
        name = f"c{(step * 7) % 23}"
        weight = 1 + (step % 5)
        table.add(counts(name, weight, weight * 2.0))
        sent += weight
        clock.now += 1.7
    series = table.series()
    assert len(series) <= 4
    # Series only grow; the sum of their counts is what was sent, minus the counts of
    # classes that gave their series up (those went with their series, already exported).
    assert sum(s.totals.calls for s in series) <= sent


def test_near_the_boundary_classes_do_not_flap() -> None:
    clock = Clock()
    table = ClassTable(top_k=1, clock=clock)
    table.add(counts("a", 1, 10.0))
    table.add(counts("b", 1, 11.0))  # ahead, but not clearly
    clock.now += RERANK_EVERY_S
    table.rerank(clock.now)
    assert [s.fingerprint for s in table.series()] == ["a", OTHER]


def test_old_heavy_classes_decay_away() -> None:
    clock = Clock()
    table = ClassTable(top_k=1, clock=clock)
    table.add(counts("batch", 1, 10_000.0))
    clock.now += 10 * HALF_LIFE_S  # ten half-lives: 10 s of yesterday weigh 10 ms today
    table.rerank(clock.now)
    table.add(counts("today", 100, 100.0))
    clock.now += RERANK_EVERY_S
    table.rerank(clock.now)
    assert table.series()[0].fingerprint == "today"


def test_memory_stays_bounded_whatever_the_number_of_classes() -> None:
    clock = Clock()
    table = ClassTable(top_k=5, clock=clock)
    for number in range(20_000):
        table.add(counts(f"c{number}", 1, 1.0))
        clock.now += 0.01
    assert len(table._scores) <= 64 and len(table._texts) <= 64
    assert len(table.series()) == 6


def test_a_smaller_top_k_drops_the_weakest_series_at_once() -> None:
    table = ClassTable(top_k=3, clock=Clock())
    for name, ms in (("a", 3.0), ("b", 1.0), ("c", 2.0)):
        table.add(counts(name, 1, ms))
    table.set_top_k(1)
    assert [s.fingerprint for s in table.series()] == ["a"]
    table.add(counts("b", 1, 1.0))
    assert [s.fingerprint for s in table.series()] == ["a", OTHER]
