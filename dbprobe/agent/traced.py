"""One attached program, from its records to the agent's counts and events.

A traced binary owns one trace (every server running that file). Its ring buffer is drained
without waiting, so one loop serves every binary in turn; its records are correlated as
the reports do (statements fingerprinted, lock waits paired and given their blockers),
attributed to their server by pid, counted, and the slow ones written as events.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Sequence

from dbprobe.agent.classes import ClassSource, KernelClasses, SlowStatementClasses
from dbprobe.agent.config import AgentConfig
from dbprobe.agent.events import EventSink, with_server
from dbprobe.agent.servers import ServerDirectory
from dbprobe.agent.stats import AgentStats, BinaryLabel, Distribution, KernelCounts
from dbprobe.correlate.lockwaits import LockWaitTracker
from dbprobe.correlate.statements import Correlator
from dbprobe.engines.base import NO_MODE
from dbprobe.kernel.records import RawLockEvent, RawQuery, RawTxn
from dbprobe.kernel.trace import Trace
from dbprobe.model import Deadlock, LockWait, Query
from dbprobe.render import locks as render_locks
from dbprobe.render import queries as render_queries

ANNOUNCE_AFTER_S = 1.0  # a lock wait still going after this long is an event before it ends
SWEEP_EVERY_S = 1.0  # how often waits of backends that exited are closed
PRUNE_EVERY_S = 300.0  # how often backends that exited are forgotten
MAX_WAITING_FOR_SCAN = 100_000  # records kept until a scan names their server
GIVE_UP_WAITING_S = 5.0
UNKNOWN_MODE = "unknown"  # MySQL and MariaDB do not say in which mode a lock is asked for

_traced_ids = itertools.count(1)


class TracedBinary:
    def __init__(self, trace: Trace, label: BinaryLabel, families: Sequence[str], *,
                 config: AgentConfig, stats: AgentStats, servers: ServerDirectory,
                 sink: EventSink, request_scan: Callable[[], None]):
        self.id = next(_traced_ids)
        self.trace = trace
        self.label = label
        self.families = tuple(families)
        self.config = config  # replaced on reload
        self.server_ids: tuple[str, ...] = ()  # the running servers of this binary
        self._stats = stats
        self._servers = servers
        self._sink = sink
        self._request_scan = request_scan
        self._correlator = Correlator(trace.sources, trace.backends, databases=trace.databases)
        # The per-class counts: the kernel's class map, or the slow statements where the
        # program has none (dbprobe.agent.classes).
        self._class_source: ClassSource = (
            KernelClasses(trace, servers.server_of, self._only_server) if trace.counts_classes
            else SlowStatementClasses())
        self._untracked_seen = 0
        self._waits_untracked_seen = 0
        self._tracker = (LockWaitTracker(trace.sources, trace.versions, trace.backends,
                                         trace.collector.last_statement)
                         if "locks" in self.families else None)
        self._announced: set[tuple[int, float]] = set()
        self._waiting_for_scan: list[tuple[int, Callable[[str], None], float]] = []
        self._next_sweep = 0.0
        self._next_prune = PRUNE_EVERY_S
        trace.on(RawQuery, self._on_query)
        trace.on(RawLockEvent, self._on_lock_record)
        trace.on(RawTxn, self._on_txn)

    # -- records ---------------------------------------------------------------------------

    def consume(self) -> None:
        """Handle every record already in the ring buffer, without waiting for more."""
        self.trace.collector.drain()

    def _for_server(self, pid: int, action: Callable[[str], None]) -> None:
        """Do `action` with the server of `pid`. A pid of no known server most likely
        belongs to a server started since the last scan: the action waits for the scan
        that is asked for now (and gives up after a while)."""
        server = self._servers.server_of(pid)
        if server is not None:
            action(server)
        elif len(self._waiting_for_scan) < MAX_WAITING_FOR_SCAN:
            self._waiting_for_scan.append((pid, action, time.monotonic()))
            self._request_scan()
        else:
            self._unattributed(pid, action)

    def scanned(self) -> None:
        """A scan has just named the host's servers: attribute what waited for it."""
        waiting, self._waiting_for_scan = self._waiting_for_scan, []
        for pid, action, _since in waiting:
            server = self._servers.server_of(pid)
            if server is not None:
                action(server)
            else:
                self._unattributed(pid, action)

    def _unattributed(self, pid: int, action: Callable[[str], None]) -> None:
        """No server has this pid (one gone already, or a one-off such as initdb's
        bootstrap); with one server on the binary, it is that one's."""
        if len(self.server_ids) == 1:
            action(self.server_ids[0])
        else:
            self._stats.binary(self.label).unattributed += 1

    def _only_server(self) -> str | None:
        return self.server_ids[0] if len(self.server_ids) == 1 else None

    def _on_query(self, raw: RawQuery) -> None:
        query = self._correlator.query(raw)
        self._for_server(raw.pid, lambda server: self._count_query(server, query))

    def _count_query(self, server: str, query: Query) -> None:
        self._class_source.statement(server, query)
        if query.duration_ms * 1e6 >= self.config.thresholds_ns["query"]:
            self._write("query", render_queries.query_json(query, show_literals=False), server)

    def _on_lock_record(self, raw: RawLockEvent) -> None:
        if self._tracker is None:
            return
        result = self._tracker.record(raw)
        if isinstance(result, Deadlock):
            self._for_server(result.victim, lambda server: self._deadlock(server, result))
        elif isinstance(result, LockWait) and result.end is not None:
            self._for_server(result.pid, lambda server: self._wait_ended(server, result))

    def _on_txn(self, raw: RawTxn) -> None:
        self._for_server(raw.pid, lambda server: self._count_txn(server, raw.idle_ns))

    def _count_txn(self, server: str, idle_ns: int) -> None:
        self._stats.server(server).idle_in_txn_ns += idle_ns

    def _wait_ended(self, server: str, wait: LockWait) -> None:
        self._count_wait(server, wait)
        ordinary = wait.outcome in render_locks.ORDINARY_OUTCOMES
        if (wait.wait_ms or 0.0) * 1e6 >= self.config.thresholds_ns["locks"] or not ordinary:
            self._write("lock_wait", render_locks.wait_json(wait, show_literals=False), server)

    def _count_wait(self, server: str, wait: LockWait) -> None:
        self._announced.discard((wait.tid, wait.start))
        mode = UNKNOWN_MODE if wait.mode == NO_MODE else wait.mode
        waits = self._stats.server(server).lock_waits
        waits.setdefault((wait.target.locktype, mode), Distribution()).add(
            round((wait.wait_ms or 0.0) * 1e6))

    def _deadlock(self, server: str, deadlock: Deadlock) -> None:
        self._count_wait(server, deadlock.waits[0])  # the victim's wait ended in it
        self._stats.server(server).deadlocks += 1
        self._write("deadlock", render_locks.deadlock_json(deadlock, show_literals=False), server)

    def _write(self, kind: str, line: str, server: str) -> None:
        if self._sink.write(with_server(line, server)):
            self._stats.events[kind] += 1
        elif self._sink.path is not None:
            self._stats.events_failed += 1

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Close waits of backends that exited, announce long waits, count waits going on."""
        if self._waiting_for_scan and time.monotonic() - self._waiting_for_scan[0][2] > GIVE_UP_WAITING_S:
            self.scanned()
        if self._tracker is None:
            return
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            for gone in self._tracker.sweep(self.trace.backends.alive):
                self._for_server(gone.pid, lambda server, wait=gone: self._wait_ended(server, wait))
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            self.trace.backends.prune()
        self._announce_long_waits()

    def _announce_long_waits(self) -> None:
        wall = time.time()
        waiting: dict[str, int] = dict.fromkeys(self.server_ids, 0)
        for wait in self._tracker.waiting():
            server = self._servers.server_of(wait.pid)
            if server is not None:
                waiting[server] = waiting.get(server, 0) + 1
            waited_ms = (wall - wait.start) * 1000
            key = (wait.tid, wait.start)
            if key in self._announced or server is None:
                continue
            if waited_ms >= max(self.config.thresholds_ns["locks"] / 1e6, ANNOUNCE_AFTER_S * 1000):
                self._announced.add(key)
                self._write("lock_waiting", render_locks.wait_json(wait, show_literals=False,
                                                                   waited_ms=waited_ms), server)
        for server, count in waiting.items():
            self._stats.server(server).waiting = count

    # -- counters --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the kernel's counters and hand the class counts to the servers' tables."""
        self._stats.binary(self.label).live[self.id] = self.read_kernel_counts()
        for counts in self._class_source.drain():
            self._stats.server(counts.server).classes.add(counts)
        untracked = self._class_source.untracked
        self._stats.untracked_statements += untracked - self._untracked_seen
        self._untracked_seen = untracked
        waits_untracked = self._class_source.waits_untracked
        self._stats.untracked_waits += waits_untracked - self._waits_untracked_seen
        self._waits_untracked_seen = waits_untracked

    def read_kernel_counts(self) -> KernelCounts:
        collector = self.trace.collector
        counts = KernelCounts()
        if "query" in self.families:
            query = collector.query_counters()
            counts.statements = {protocol: sum(slots) for protocol, slots in query.histogram.slots.items()}
            counts.statement_ns = query.totals.query_ns
            counts.statement_slots = list(query.histogram.combined())
        totals = collector.totals()
        counts.emitted, counts.lost = totals.emitted, totals.lost
        if "txn" in self.families:
            txn = collector.txn_totals()
            counts.commits, counts.aborts, counts.txn_ns = txn.commits, txn.aborts, txn.total_ns
            counts.txn_slots = list(txn.histogram)
        return counts

    def finish(self) -> None:
        """The last records and counts, before the trace is closed (that may be elsewhere)."""
        try:
            self.consume()
            self.scanned()
        finally:
            self.refresh()
            self._stats.binary(self.label).retire(self.id)
