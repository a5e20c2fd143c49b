"""The correlation engine, from recorded event streams: clocks, Query records, span pairing,
and the backend directory. No BPF; every outside dependency is a function passed in."""

from __future__ import annotations

import ctypes
import json
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

from dbprobe.discover.backends import RECHECK_SECONDS, Backend, BackendDirectory
from dbprobe.correlate.statements import Clock, Correlator, Open, Span, SpanPairer
from dbprobe.digest.queries import QueryDigest
from dbprobe.discover.processes import BackendInfo
from dbprobe.kernel.records import QF_ERROR, QF_TRUNCATED, RawQuery, decode, encode_query
from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.model import Query, Source

STREAMS = Path(__file__).resolve().parent.parent / "fixtures" / "streams"

BOOT_WALL = 1_700_000_000.0  # wall-clock time when the monotonic clock read BOOT_MONOTONIC
BOOT_MONOTONIC = 1_000.0
SOURCES = {
    0: Source(db="postgresql", binary="/usr/lib/postgresql/15/bin/postgres", mechanism="usdt"),
    1: Source(db="postgresql", binary="/opt/pg/bin/postgres", mechanism="uprobe"),
}


def fixed_clock() -> Clock:
    return Clock(wall=lambda: BOOT_WALL, monotonic=lambda: BOOT_MONOTONIC)


@dataclass
class Processes:
    """The processes a BackendDirectory sees, as plain data the test changes."""

    started: dict[int, float] = field(default_factory=dict)
    databases: dict[int, str] = field(default_factory=dict)
    ns_pids: dict[int, int] = field(default_factory=dict)
    now: float = 0.0
    described: Counter = field(default_factory=Counter)

    def directory(self) -> BackendDirectory:
        return BackendDirectory(clock=lambda: self.now, started=self.started.get,
                                describe=self.describe, ns_pid=self.ns_pids.get)

    def describe(self, pid: int) -> BackendInfo | None:
        self.described[pid] += 1
        if pid not in self.started or pid not in self.databases:
            return None
        return BackendInfo(pid=pid, kind="client backend", user="app",
                           database=self.databases[pid])


def raw(text: bytes = b"SELECT 1", **changes: object) -> RawQuery:
    fields = dict(pid=101, tid=101, hook=0, start_ns=1_000_000_000_000,
                  end_ns=1_000_250_000_000, protocol="simple", flags=0, text=text)
    fields.update(changes)
    return RawQuery(**fields)


# --- the clock -------------------------------------------------------------------------------


def test_clock_converts_monotonic_nanoseconds_to_wall_seconds() -> None:
    clock = fixed_clock()
    assert clock.wall(1_000_000_000_000) == pytest.approx(BOOT_WALL)
    assert clock.wall(1_002_500_000_000) == pytest.approx(BOOT_WALL + 2.5)
    assert clock.wall(999_000_000_000) == pytest.approx(BOOT_WALL - 1.0)


def test_clock_reads_its_offset_once() -> None:
    readings = iter([100.0, 200.0])
    clock = Clock(wall=lambda: 5_000.0, monotonic=lambda: next(readings))
    assert clock.wall(0) == pytest.approx(4_900.0)
    assert clock.wall(0) == pytest.approx(4_900.0)


# --- Query records ---------------------------------------------------------------------------


def correlator(processes: Processes) -> Correlator:
    return Correlator(SOURCES, processes.directory(), fixed_clock())


def test_query_record_from_a_raw_record() -> None:
    processes = Processes(started={101: 50.0}, databases={101: "shop"}, ns_pids={101: 7})
    query = correlator(processes).query(
        raw(b"SELECT * FROM orders WHERE id = 42", end_ns=1_001_000_000_000,
            start_ns=1_000_750_000_000, tid=105, protocol="extended"))
    assert query == Query(
        end=pytest.approx(BOOT_WALL + 1.0), duration_ms=250.0, pid=101, tid=105, ns_pid=7,
        db="postgresql", database="shop", text="SELECT * FROM orders WHERE id = 42",
        fingerprint=fingerprint("SELECT * FROM orders WHERE id = 42"), protocol="extended",
        mechanism="usdt", error=False, truncated=False,
    )
    assert query.fingerprint.text == "SELECT * FROM orders WHERE id = ?"
    assert query.start == pytest.approx(BOOT_WALL + 0.75)


@pytest.mark.parametrize(
    ("flags", "error", "truncated"),
    [(0, False, False), (QF_ERROR, True, False), (QF_TRUNCATED, False, True),
     (QF_ERROR | QF_TRUNCATED, True, True), (4, False, False)],
)
def test_flags(flags: int, error: bool, truncated: bool) -> None:
    query = correlator(Processes()).query(raw(flags=flags))
    assert (query.error, query.truncated) == (error, truncated)


def test_mechanism_comes_from_the_hook_source() -> None:
    queries = [correlator(Processes()).query(raw(hook=hook)) for hook in (0, 1)]
    assert [q.mechanism for q in queries] == ["usdt", "uprobe"]


def test_unknown_backend_has_no_database_and_no_ns_pid() -> None:
    query = correlator(Processes()).query(raw())
    assert (query.database, query.ns_pid) == (None, None)


def test_text_that_is_not_utf8_is_replaced_not_refused() -> None:
    query = correlator(Processes()).query(raw(b"SELECT '\xff' /* cut mid-charact\xc3"))
    assert query.text == "SELECT '\ufffd' /* cut mid-charact\ufffd"
    assert query.fingerprint.text == "SELECT ?"


def test_duration_in_milliseconds_keeps_fractions() -> None:
    query = correlator(Processes()).query(raw(start_ns=0, end_ns=1_234_567))
    assert query.duration_ms == pytest.approx(1.234567)


def read_stream(path: Path) -> list[RawQuery]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [RawQuery(**{**record, "text": record["text"].encode()}) for record in records]


def through_ring_buffer(records: Iterable[RawQuery]) -> list[RawQuery]:
    """Each record encoded as the kernel lays it out and decoded from memory."""
    decoded = []
    for record in records:
        data = encode_query(record)
        buffer = ctypes.create_string_buffer(data, len(data))
        decoded.append(decode(ctypes.addressof(buffer), len(data)))
    return decoded


def test_recorded_stream_to_digest() -> None:
    processes = Processes(started={101: 1.0, 102: 2.0, 103: 3.0, 104: 4.0},
                          databases={101: "shop", 102: "shop", 103: "analytics"})
    engine = correlator(processes)
    digest = QueryDigest()
    for record in through_ring_buffer(read_stream(STREAMS / "slow_queries.jsonl")):
        digest.add(engine.query(record))

    orders = fingerprint("SELECT * FROM orders WHERE id = 1").id
    stock = fingerprint("UPDATE stock SET n = n - 1 WHERE item = 'x'").id
    sleep = fingerprint("SELECT pg_sleep(2)").id
    audit = fingerprint("INSERT INTO audit VALUES (1, 'aaaaaaaa").id
    assert digest.count == 7
    assert set(digest.classes) == {orders, stock, sleep, audit}
    # stock and sleep tie at 2 s: the tie goes by fingerprint id.
    assert [c.fingerprint.id for c in digest.ranked()] == [*sorted([stock, sleep]), orders, audit]
    by_id = digest.classes
    assert (by_id[orders].calls, by_id[orders].durations.total_ms) == (3, pytest.approx(600.0))
    assert by_id[orders].databases == Counter({"shop": 2, "analytics": 1})
    assert by_id[orders].worst.text == "SELECT * FROM orders WHERE id = 2"
    assert (by_id[stock].calls, by_id[stock].errors) == (2, 2)
    assert by_id[audit].worst.truncated and by_id[audit].databases == Counter()
    assert {q.mechanism for q in (by_id[stock].worst, by_id[audit].worst)} == {"uprobe"}
    assert digest.first_end == pytest.approx(BOOT_WALL + 0.2)
    assert digest.last_end == pytest.approx(BOOT_WALL + 2.7)
    # Each backend was described once although it sent several records.
    assert processes.described == Counter({101: 1, 102: 1, 103: 1, 104: 1})


# --- span pairing ----------------------------------------------------------------------------

# A stream is a list of steps: ("start"|"done", tid, pid, ts_ns, payload),
# ("exit", pid) for a process that exited, ("sweep", alive_pids) for a periodic sweep.


def replay(steps: list[tuple]) -> tuple[SpanPairer[str], list[Span[str]], list[Open[str]]]:
    pairer: SpanPairer[str] = SpanPairer()
    spans: list[Span[str]] = []
    dropped: list[Open[str]] = []
    for step in steps:
        if step[0] == "start":
            pairer.start(*step[1:])
        elif step[0] == "done":
            span = pairer.done(*step[1:])
            if span is not None:
                spans.append(span)
        elif step[0] == "exit":
            dropped += pairer.drop_process(step[1])
        elif step[0] == "sweep":
            alive_pids = step[1]
            dropped += pairer.sweep(lambda pid: pid in alive_pids)
        else:
            raise AssertionError(f"unknown step {step}")
    return pairer, spans, dropped


def summary(spans: list[Span[str]]) -> list[tuple]:
    return [(s.tid, s.pid, s.start_ns, s.end_ns, s.start, s.done, s.duration_ns) for s in spans]


def counts(pairer: SpanPairer) -> tuple[int, int, int]:
    return pairer.counts.paired, pairer.counts.unmatched_starts, pairer.counts.unmatched_dones


def test_pairs_per_tid_with_interleaved_threads() -> None:
    pairer, spans, _ = replay([
        ("start", 1, 100, 10, "wait a"),
        ("start", 2, 200, 12, "wait b"),
        ("start", 3, 100, 13, "wait c"),  # another thread of process 100
        ("done", 2, 200, 20, "got b"),
        ("done", 1, 100, 30, "got a"),
        ("done", 3, 100, 31, "got c"),
    ])
    assert summary(spans) == [
        (2, 200, 12, 20, "wait b", "got b", 8),
        (1, 100, 10, 30, "wait a", "got a", 20),
        (3, 100, 13, 31, "wait c", "got c", 18),
    ]
    assert counts(pairer) == (3, 0, 0)
    assert pairer.open_spans() == []


def test_a_done_without_start_is_counted_and_dropped() -> None:
    pairer, spans, _ = replay([
        ("done", 1, 100, 10, "attached mid-wait"),
        ("start", 1, 100, 20, "next"),
        ("done", 1, 100, 25, "next done"),
    ])
    assert summary(spans) == [(1, 100, 20, 25, "next", "next done", 5)]
    assert counts(pairer) == (1, 0, 1)


def test_a_done_from_before_the_start_does_not_close_it() -> None:
    # The done of an earlier wait whose start was lost arrives after the next start.
    pairer, spans, _ = replay([
        ("start", 1, 100, 50, "second wait"),
        ("done", 1, 100, 40, "first wait's done"),
        ("done", 1, 100, 60, "second wait's done"),
    ])
    assert summary(spans) == [(1, 100, 50, 60, "second wait", "second wait's done", 10)]
    assert counts(pairer) == (1, 0, 1)


def test_a_newer_start_replaces_an_unmatched_one() -> None:
    pairer: SpanPairer[str] = SpanPairer()
    assert pairer.start(1, 100, 10, "lost its done") is None
    replaced = pairer.start(1, 100, 20, "current")
    assert replaced == Open(1, 100, 10, "lost its done")
    span = pairer.done(1, 100, 30, "done")
    assert (span.start, span.start_ns, span.duration_ns) == ("current", 20, 10)
    assert counts(pairer) == (1, 1, 0)


def test_a_process_that_exits_drops_its_open_spans() -> None:
    pairer, spans, dropped = replay([
        ("start", 1, 100, 10, "a1"),
        ("start", 2, 100, 11, "a2"),
        ("start", 3, 200, 12, "b"),
        ("exit", 100),
        ("done", 1, 100, 20, "late a1"),
        ("done", 3, 200, 21, "b done"),
    ])
    assert sorted((o.tid, o.start) for o in dropped) == [(1, "a1"), (2, "a2")]
    assert summary(spans) == [(3, 200, 12, 21, "b", "b done", 9)]
    assert counts(pairer) == (1, 2, 1)


def test_dropping_a_process_without_open_spans_changes_nothing() -> None:
    pairer, _, dropped = replay([("start", 1, 100, 10, "a"), ("exit", 999)])
    assert dropped == []
    assert counts(pairer) == (0, 0, 0)
    assert [o.tid for o in pairer.open_spans()] == [1]


def test_sweep_drops_the_spans_of_processes_gone() -> None:
    pairer, _, dropped = replay([
        ("start", 5, 300, 10, "c"),
        ("start", 1, 100, 11, "a"),
        ("start", 2, 200, 12, "b"),
        ("start", 3, 300, 13, "c2"),
        ("sweep", {200}),
    ])
    assert [(o.pid, o.tid) for o in dropped] == [(100, 1), (300, 5), (300, 3)]
    assert [o.tid for o in pairer.open_spans()] == [2]
    assert counts(pairer) == (0, 3, 0)


def test_sweep_asks_about_each_process() -> None:
    asked: list[int] = []
    pairer: SpanPairer[str] = SpanPairer()
    for tid, pid in ((1, 100), (2, 100), (3, 200)):
        pairer.start(tid, pid, tid, "x")
    assert pairer.sweep(lambda pid: asked.append(pid) or True) == []
    assert sorted(set(asked)) == [100, 200]
    assert len(pairer.open_spans()) == 3


def test_pid_reuse_drops_the_stale_start_and_the_foreign_done() -> None:
    # Thread 7 of process 100 started a wait, the process died unseen, and a new process 300
    # got thread id 7: its done is not the end of the old wait.
    pairer, spans, _ = replay([
        ("start", 7, 100, 10, "old process"),
        ("done", 7, 300, 40, "new process"),
        ("start", 7, 300, 50, "new wait"),
        ("done", 7, 300, 55, "new done"),
    ])
    assert summary(spans) == [(7, 300, 50, 55, "new wait", "new done", 5)]
    assert counts(pairer) == (1, 1, 1)


def test_open_spans_oldest_first() -> None:
    pairer, _, _ = replay(
        [("start", 1, 1, 30, "c"), ("start", 2, 1, 10, "a"), ("start", 3, 2, 20, "b")])
    assert [o.start for o in pairer.open_spans()] == ["a", "b", "c"]


@pytest.mark.parametrize("seed", range(5))
def test_counts_add_up_on_a_random_stream(seed: int) -> None:
    generator = random.Random(seed)
    steps: list[tuple] = []
    for ts in range(2_000):
        tid = generator.randrange(8)
        pid = 100 + tid + 50 * generator.choice((0, 0, 0, 0, 1))  # sometimes a reused tid
        choice = generator.random()
        if choice < 0.45:
            steps.append(("start", tid, pid, ts, f"s{ts}"))
        elif choice < 0.9:
            steps.append(("done", tid, pid, ts - generator.choice((0, 0, 0, 5)), f"d{ts}"))
        elif choice < 0.95:
            steps.append(("exit", pid))
        else:
            steps.append(("sweep", {p for p in range(100, 200) if generator.random() < 0.8}))
    pairer, spans, dropped = replay(steps)
    starts = sum(step[0] == "start" for step in steps)
    dones = sum(step[0] == "done" for step in steps)
    paired, unmatched_starts, unmatched_dones = counts(pairer)
    assert paired == len(spans)
    assert starts == paired + unmatched_starts + len(pairer.open_spans())
    assert dones == paired + unmatched_dones
    assert all(span.end_ns >= span.start_ns for span in spans)
    assert len(dropped) <= unmatched_starts
    assert min(paired, unmatched_starts, unmatched_dones) > 0  # the stream exercises every path


# --- the backend directory ---------------------------------------------------------------------


def test_lookup_describes_a_backend_once_and_keeps_it() -> None:
    processes = Processes(started={101: 50.0}, databases={101: "shop"}, ns_pids={101: 12})
    directory = processes.directory()
    first = directory.lookup(101)
    assert first == Backend(pid=101, started=50.0,
                            info=BackendInfo(101, "client backend", "app", "shop"), ns_pid=12)
    processes.now = RECHECK_SECONDS / 2
    processes.databases[101] = "changed behind its back"
    assert directory.lookup(101) is first
    assert processes.described[101] == 1


def test_after_the_recheck_interval_the_same_process_keeps_its_entry() -> None:
    processes = Processes(started={101: 50.0}, databases={101: "shop"})
    directory = processes.directory()
    first = directory.lookup(101)
    processes.now = RECHECK_SECONDS
    assert directory.lookup(101) is first
    assert processes.described[101] == 1
    # The recheck renewed the entry: no new check until another interval has passed.
    processes.started[101] = 99.0
    processes.now = RECHECK_SECONDS * 1.5
    assert directory.lookup(101) is first


def test_pid_reuse_is_noticed_by_a_changed_start_time() -> None:
    processes = Processes(started={101: 50.0}, databases={101: "shop"})
    directory = processes.directory()
    directory.lookup(101)
    processes.started[101] = 80.0  # another process now has pid 101
    processes.databases[101] = "billing"
    processes.now = RECHECK_SECONDS + 0.1
    renewed = directory.lookup(101)
    assert (renewed.started, renewed.info.database) == (80.0, "billing")
    assert processes.described[101] == 2


def test_a_gone_process_is_looked_up_again_after_the_interval() -> None:
    processes = Processes()
    directory = processes.directory()
    assert directory.lookup(101) == Backend(pid=101, started=None, info=None, ns_pid=None)
    processes.started[101], processes.databases[101] = 70.0, "shop"
    assert directory.lookup(101).info is None  # still cached
    processes.now = RECHECK_SECONDS
    assert directory.lookup(101).info.database == "shop"


def test_entries_are_per_pid_and_forget_drops_one() -> None:
    processes = Processes(started={101: 1.0, 102: 2.0}, databases={101: "a", 102: "b"})
    directory = processes.directory()
    databases = [directory.lookup(pid).info.database for pid in (101, 102, 101, 102)]
    assert databases == ["a", "b", "a", "b"]
    directory.forget(101)
    directory.forget(999)  # unknown pids are fine
    directory.lookup(101)
    directory.lookup(102)
    assert processes.described == Counter({101: 2, 102: 1})


def test_alive() -> None:
    processes = Processes(started={101: 50.0, 102: 60.0})
    directory = processes.directory()
    directory.lookup(101)
    assert directory.alive(101)
    assert directory.alive(102)  # never looked up, but running
    assert not directory.alive(103)  # no such process
    processes.started[101] = 90.0  # pid 101 now belongs to a newcomer
    assert not directory.alive(101)
    del processes.started[102]
    assert not directory.alive(102)


def test_the_real_directory_survives_a_backend_that_exited() -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    directory = BackendDirectory()
    assert directory.lookup(exited.pid) == Backend(exited.pid, None, None, None)
    assert not directory.alive(exited.pid)


def test_the_real_directory_knows_a_running_process() -> None:
    running = subprocess.Popen(["sleep", "30"])
    try:
        directory = BackendDirectory()
        backend = directory.lookup(running.pid)
        assert backend.started is not None
        assert backend.info is None  # not a PostgreSQL backend
        assert directory.alive(running.pid)
    finally:
        running.kill()
        running.wait()
