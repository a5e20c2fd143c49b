"""The traces of one command, read as one: the first, and those attached since.

A server restarted on a replaced binary (a new inode at the same path) runs a file the
first program is not attached to, and the new file may be another build: it gets a program
of its own (a Trace), added here. The reports read a TraceSet as they read one Trace: its
records reach the same handlers, its counters are summed with the others', its backends
and database names are the same directory.

Each program numbers its hooks from 0, so the records of a trace added later have their
hook ids moved past those already known before they reach the handlers.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Callable

from dbprobe.kernel.maps import (ClassCounters, KernelTotals, LatencyHistogram, LastStatement,
                                 QueryCounters, TxnTotals)
from dbprobe.kernel.trace import Trace


class TraceSet:
    def __init__(self, first: Trace):
        self._members: list[tuple[Trace, int]] = []  # each with the offset of its hook ids
        self._handlers: list[tuple[type, Callable[[Any], None]]] = []
        self.targets = []
        self.plans = []
        self.sources: dict = {}
        self.versions: dict = {}
        self.backends = first.backends
        self.databases = first.databases
        self.probes_attached = first.probes_attached
        self.started = first.started
        self.collector = CollectorSet(self)
        self._first = first
        self.add(first)

    @property
    def traces(self) -> list[Trace]:
        return [trace for trace, _ in self._members]

    def add(self, trace: Trace) -> None:
        """Read `trace` with the others from now on."""
        offset = max(self.sources, default=-1) + 1
        self._members.append((trace, offset))
        self.targets.extend(trace.targets)
        self.plans.extend(trace.plans)
        self.sources.update({hook + offset: source for hook, source in trace.sources.items()})
        self.versions.update({hook + offset: version for hook, version in trace.versions.items()})
        if trace is not self._first:
            self.databases.merge(trace.databases)
        for record_type, handler in self._handlers:
            trace.on(record_type, _moved(handler, offset))

    def on(self, record_type: type, handler: Callable[[Any], None]) -> None:
        self._handlers.append((record_type, handler))
        for trace, offset in self._members:
            trace.on(record_type, _moved(handler, offset))

    def describe(self) -> list[str]:
        return self._first.describe()

    def close_added(self) -> None:
        """Detach every trace added after the first (whose owner closes it), the others
        too when one fails to."""
        failure = None
        for trace, _ in reversed(self._members[1:]):
            try:
                trace.close()
            except BaseException as error:
                failure = failure or error
        if failure is not None:
            raise failure


def _moved(handler: Callable[[Any], None], offset: int) -> Callable[[Any], None]:
    if offset == 0:
        return handler
    return lambda record: handler(replace(record, hook=record.hook + offset))


class CollectorSet:
    """The collectors of a TraceSet's traces: polled together, their counters summed."""

    def __init__(self, traces: TraceSet):
        self._traces = traces

    def _collectors(self):
        return [trace.collector for trace in self._traces.traces]

    def poll(self, timeout_ms: int) -> None:
        """Wait on the newest trace's records (a restarted server's), then take the others'."""
        *others, newest = self._collectors()
        newest.poll(timeout_ms)
        for collector in others:
            collector.drain()

    def drain(self) -> None:
        for collector in self._collectors():
            collector.drain()

    def totals(self) -> KernelTotals:
        return sum_totals([collector.totals() for collector in self._collectors()])

    def query_counters(self) -> QueryCounters:
        counters = [collector.query_counters() for collector in self._collectors()]
        return QueryCounters(sum_totals([each.totals for each in counters]),
                             sum_histograms([each.histogram for each in counters]))

    def txn_totals(self) -> TxnTotals:
        totals = [collector.txn_totals() for collector in self._collectors()]
        return TxnTotals(sum(each.commits for each in totals), sum(each.aborts for each in totals),
                         sum(each.total_ns for each in totals),
                         tuple(map(sum, zip(*(each.histogram for each in totals)))))

    def last_statement(self, pid: int) -> LastStatement | None:
        for collector in reversed(self._collectors()):
            found = collector.last_statement(pid)
            if found is not None:
                return found
        return None

    def lwlock_totals(self) -> list:
        return [totals for collector in self._collectors() for totals in collector.lwlock_totals()]

    def class_counters(self) -> ClassCounters:
        """Every program's statement classes: a restarted server's are its own (its
        postmaster's pid is in their key), so the maps are joined, and summed where equal."""
        classes: dict = {}
        untracked = deferred = waits_untracked = 0
        for collector in self._collectors():
            counters = collector.class_counters()
            untracked += counters.untracked
            deferred += counters.samples_deferred
            waits_untracked += counters.waits_untracked
            for key, stats in counters.classes.items():
                classes[key] = stats + classes[key] if key in classes else stats
        return ClassCounters(classes, untracked, deferred, waits_untracked)

    def items(self, table: str) -> list:
        return [item for collector in self._collectors() for item in collector.items(table)]


def sum_totals(totals: list[KernelTotals]) -> KernelTotals:
    return KernelTotals(**{field.name: sum(getattr(each, field.name) for each in totals)
                           for field in fields(KernelTotals)})


def sum_histograms(histograms: list[LatencyHistogram]) -> LatencyHistogram:
    protocols = histograms[0].slots
    return LatencyHistogram({protocol: tuple(map(sum, zip(*(each.slots[protocol] for each in histograms))))
                             for protocol in protocols})
