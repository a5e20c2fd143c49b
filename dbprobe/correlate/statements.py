"""The correlation engine: from kernel records to domain records.

Pure Python, no BPF: it is tested from recorded event streams. It converts kernel clocks
to wall-clock time, names the source of each record, identifies backends, fingerprints
statement text, and pairs start and done records per thread where the kernel sends both
(lock waits, which matter live while they last). Pairing survives what real streams do:
a done without its start (attached mid-wait, or the start was lost), a start without its
done (the backend died, or the done was lost), and a thread id reused by a new process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Mapping, Sequence, TypeVar

from dbprobe.discover.backends import BackendDirectory, DatabaseNames
from dbprobe.kernel.records import QF_ERROR, QF_TRUNCATED, WAIT_EVENT_MORE, Breakdown, RawQuery, RawTxn
from dbprobe.engines.base import Engine
from dbprobe.engines.registry import engine_for
from dbprobe.model import Query, Source, Statement, TimeBreakdown, Transaction, WaitTime

T = TypeVar("T")


class Clock:
    """Kernel CLOCK_MONOTONIC nanoseconds to wall-clock seconds."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._offset = wall() - monotonic()

    def wall(self, monotonic_ns: int) -> float:
        return self._offset + monotonic_ns / 1e9


class Correlator:
    """Turns raw query records into Query records."""

    def __init__(self, sources: Mapping[int, Source], backends: BackendDirectory,
                 clock: Clock | None = None, databases: DatabaseNames | None = None,
                 versions: Mapping[int, str | None] | None = None):
        self._sources = sources
        self._versions = versions or {}  # server versions by hook, to name wait events
        self._backends = backends
        self._clock = clock or Clock()
        self._databases = databases or DatabaseNames()

    def query(self, raw: RawQuery) -> Query:
        source = self._sources[raw.hook]
        backend = self._backends.lookup(raw.pid)
        text = raw.text.decode("utf-8", errors="replace")
        engine = engine_for(source.db)
        return Query(
            end=self._clock.wall(raw.end_ns),
            duration_ms=raw.duration_ns / 1e6,
            pid=raw.pid,
            tid=raw.tid,
            ns_pid=backend.ns_pid,
            db=source.db,
            database=self._databases.resolve(source.binary, raw.database_oid,
                                             backend.info.database if backend.info else None),
            text=text,
            fingerprint=engine.fingerprint(text),
            protocol=raw.protocol,
            mechanism=source.mechanism,
            error=bool(raw.flags & QF_ERROR),
            truncated=bool(raw.flags & QF_TRUNCATED),
            breakdown=(time_breakdown(raw.breakdown, engine, self._versions.get(raw.hook))
                       if raw.breakdown is not None else None),
        )


    def transaction(self, raw: RawTxn) -> Transaction:
        source = self._sources[raw.hook]
        backend = self._backends.lookup(raw.pid)
        texts = (text.decode("utf-8", errors="replace") for text in raw.texts)
        engine = engine_for(source.db)
        return Transaction(
            pid=raw.pid, tid=raw.tid, db=source.db,
            database=backend.info.database if backend.info else None,
            vxid=f"{raw.backend_id}/{raw.lxid}" if raw.lxid else None,
            start=self._clock.wall(raw.start_ns), end=self._clock.wall(raw.end_ns),
            outcome=raw.outcome, statement_count=raw.statements,
            statements=tuple(Statement(text, engine.fingerprint(text)) for text in texts if text),
            idle_ms=raw.idle_ns / 1e6, mechanism=source.mechanism,
        )


def time_breakdown(raw: Breakdown, engine: Engine, version: str | None) -> TimeBreakdown:
    """The kernel's counts in milliseconds, the wait events named for the server's version."""
    return in_milliseconds(raw, named_waits(raw.waits, engine, version))


def named_waits(waits: Sequence[tuple[int, int, int]], engine: Engine,
                version: str | None) -> tuple[WaitTime, ...]:
    """The kernel's (wait_event_info, count, ns) named for the server's version, longest first."""
    return tuple(sorted(
        (WaitTime("other wait events" if info == WAIT_EVENT_MORE else engine.wait_event_name(info, version),
                  count, ns / 1e6)
         for info, count, ns in waits),
        key=lambda wait: -wait.ms))


def in_milliseconds(raw: Breakdown, waits: tuple[WaitTime, ...] = ()) -> TimeBreakdown:
    off = raw.off_ns
    return TimeBreakdown(
        cpu_ms=raw.cpu_ns / 1e6, io_ms=off.get("io", 0) / 1e6, lock_ms=off.get("lock", 0) / 1e6,
        lwlock_ms=off.get("lwlock", 0) / 1e6, client_ms=off.get("client", 0) / 1e6,
        runq_ms=off.get("runq", 0) / 1e6, other_ms=off.get("other", 0) / 1e6,
        reads=raw.reads, read_bytes=raw.read_bytes, read_ms=raw.read_ns / 1e6,
        writes=raw.writes, write_bytes=raw.write_bytes, write_ms=raw.write_ns / 1e6,
        waits=waits, workers=raw.workers, workers_cpu_ms=raw.workers_cpu_ns / 1e6,
        workers_io_ms=raw.workers_io_ns / 1e6, workers_read_bytes=raw.workers_read_bytes,
    )


@dataclass(frozen=True, slots=True)
class Span(Generic[T]):
    """A start paired with its done."""

    tid: int
    pid: int
    start_ns: int
    end_ns: int
    start: T
    done: T

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class Open(Generic[T]):
    """A start still waiting for its done."""

    tid: int
    pid: int
    start_ns: int
    start: T


@dataclass(slots=True)
class PairingCounts:
    paired: int = 0
    unmatched_starts: int = 0  # superseded by a newer start or dropped with their process
    unmatched_dones: int = 0


@dataclass(slots=True)
class SpanPairer(Generic[T]):
    """Pairs start and done records per thread id."""

    counts: PairingCounts = field(default_factory=PairingCounts)
    _open: dict[int, Open[T]] = field(default_factory=dict)

    def start(self, tid: int, pid: int, ts_ns: int, payload: T) -> Open[T] | None:
        """Open a span; returns the unmatched start it replaces, if any."""
        replaced = self._open.pop(tid, None)
        if replaced is not None:
            self.counts.unmatched_starts += 1
        self._open[tid] = Open(tid, pid, ts_ns, payload)
        return replaced

    def done(self, tid: int, pid: int, ts_ns: int, payload: T) -> Span[T] | None:
        """Close the thread's span; None when there was no start to pair with."""
        opened = self._open.get(tid)
        if opened is not None and opened.pid != pid:
            # The thread id now belongs to another process: the old start will never end.
            del self._open[tid]
            self.counts.unmatched_starts += 1
            opened = None
        if opened is None or ts_ns < opened.start_ns:
            self.counts.unmatched_dones += 1
            return None
        del self._open[tid]
        self.counts.paired += 1
        return Span(tid, pid, opened.start_ns, ts_ns, opened.start, payload)

    def drop_process(self, pid: int) -> list[Open[T]]:
        """Forget the open spans of a process that exited; they will never complete."""
        dropped = [opened for opened in self._open.values() if opened.pid == pid]
        for opened in dropped:
            del self._open[opened.tid]
        self.counts.unmatched_starts += len(dropped)
        return dropped

    def open_spans(self) -> list[Open[T]]:
        return sorted(self._open.values(), key=lambda opened: opened.start_ns)

    def sweep(self, alive: Callable[[int], bool]) -> list[Open[T]]:
        """Drop the open spans of every process that is gone."""
        gone = {opened.pid for opened in self._open.values() if not alive(opened.pid)}
        return [opened for pid in sorted(gone) for opened in self.drop_process(pid)]
