"""The agent's counts as Prometheus metrics, with prometheus_client, served on /metrics.

Names follow Prometheus's conventions (base units, ``_total`` for counters, ``_info`` for
text) and OpenTelemetry's database conventions where they fit: the server's kind is
``db_system`` (``postgresql``, ``mariadb``, ``mysql``), its port ``server_port``.
Histograms have the kernel's buckets: log2 slots of microseconds, so a bucket's upper
bound is 2^k µs; what lies over the last bucket shown is counted in ``+Inf``.

Series per server are labelled ``server`` (the agent's stable name for it: its data
directory, and its container when it has one). What the kernel counts for every server of
one binary (all statements, transactions, events sent and lost) is labelled by ``binary``
and ``container``; ``dbprobe_server_info`` joins the two.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily, Metric, StateSetMetricFamily)
from prometheus_client.utils import floatToGoString

from dbprobe import __version__
from dbprobe.agent.stats import AgentStats, BinaryLabel
from dbprobe.kernel.records import OFF_CPU_CLASSES, Breakdown

# Buckets up to 2^26 µs (67 s): longer statements are counted in +Inf only.
LAST_BUCKET_SLOT = 26
QUERY_TEXT_MAX = 512  # characters of normalised text in dbprobe_class_info
SERVER_STATES = ("attaching", "attached", "error", "gone")
BUCKET_BOUNDS = tuple(floatToGoString((1 << slot) / 1e6) for slot in range(LAST_BUCKET_SLOT + 1))


@dataclass(frozen=True, slots=True)
class ServerView:
    id: str
    db: str
    state: str
    pid: int
    version: str | None
    port: int | None
    container: str
    binary: str
    families: tuple[str, ...]  # traced in its binary


@dataclass(frozen=True, slots=True)
class BinaryView:
    label: BinaryLabel
    state: str


@dataclass(frozen=True, slots=True)
class AgentView:
    """What a scrape shows, as of the loop's last pass."""

    stats: AgentStats
    servers: Sequence[ServerView]
    binaries: Sequence[BinaryView]
    thresholds_ns: dict[str, int]
    top_k: int
    spares: int = 0  # compiled programs held ready for the next binary of a build


def buckets(slots: Sequence[int]) -> list[tuple[str, float]]:
    """Cumulative counts at each bucket's upper bound, from per-slot counts."""
    cumulative, running = [], 0
    for slot, bound in enumerate(BUCKET_BOUNDS):
        running += slots[slot]
        cumulative.append((bound, running))
    cumulative.append(("+Inf", sum(slots)))
    return cumulative


class AgentCollector:
    """A prometheus_client collector that renders the agent's view on every scrape."""

    def __init__(self, lock: threading.Lock, view: Callable[[], AgentView]):
        self._lock = lock
        self._view = view

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            view = self._view()
            families = [*_class_families(view), *_lock_families(view), *_server_families(view),
                        *_binary_families(view), *_agent_families(view)]
        return iter(families)


def registry_for(collector: AgentCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes
    return registry


def _class_families(view: AgentView) -> list[Metric]:
    labels = ["db_system", "server", "fingerprint"]
    calls = CounterMetricFamily("dbprobe_class_calls", "Statements of a class completed, per server.",
                                labels=labels)
    seconds = CounterMetricFamily("dbprobe_class_seconds", "Time spent in statements of a class.",
                                  labels=labels, unit="seconds")
    errors = CounterMetricFamily("dbprobe_class_errors", "Statements of a class that failed or were cancelled.",
                                 labels=labels)
    latency = HistogramMetricFamily("dbprobe_class_duration_seconds",
                                    "Statement latency by class, in the kernel's log2 buckets.",
                                    labels=labels)
    info = InfoMetricFamily("dbprobe_class", "The normalised text of a class (literals replaced by ?).",
                            labels=labels)
    parts = _ClassBreakdown(labels)
    dbs = {server.id: server.db for server in view.servers}
    for sid, stats in view.stats.servers.items():
        db = dbs.get(sid, "")
        for series in stats.classes.series():
            values = [db, sid, series.fingerprint]
            totals = series.totals
            calls.add_metric(values, totals.calls)
            seconds.add_metric(values, totals.total_ns / 1e9)
            errors.add_metric(values, totals.errors)
            latency.add_metric(values, buckets(totals.slots), totals.total_ns / 1e9)
            info.add_metric(values, {"query": series.text[:QUERY_TEXT_MAX]})
            parts.add(values, totals.breakdown, totals.waits)
    return [calls, seconds, errors, latency, info, *parts.families()]


class _ClassBreakdown:
    """Where each class's time went, with the breakdown on (``breakdown = true``)."""

    def __init__(self, labels: list[str]):
        self.cpu = CounterMetricFamily("dbprobe_class_cpu_seconds", "Time statements of a class spent on CPU.",
                                       labels=labels, unit="seconds")
        self.off_cpu = CounterMetricFamily(
            "dbprobe_class_off_cpu_seconds",
            "Time statements of a class spent off CPU, by what they waited for: io, lock, lwlock, "
            "client, runq (a CPU) or other.", labels=[*labels, "reason"], unit="seconds")
        self.read = CounterMetricFamily("dbprobe_class_read_bytes", "Bytes statements of a class read from files.",
                                        labels=labels, unit="bytes")
        self.written = CounterMetricFamily("dbprobe_class_write_bytes",
                                           "Bytes statements of a class wrote to files.", labels=labels,
                                           unit="bytes")
        self.wait_events = CounterMetricFamily(
            "dbprobe_class_wait_events", "Times statements of a class went off CPU in a wait event "
            "(PostgreSQL's, by name).", labels=[*labels, "wait_event"])
        self.wait_seconds = CounterMetricFamily(
            "dbprobe_class_wait_event_seconds", "Time statements of a class spent off CPU in a wait event.",
            labels=[*labels, "wait_event"], unit="seconds")

    def add(self, values: list[str], breakdown: Breakdown | None,
            waits: dict[str, list[float]]) -> None:
        if breakdown is None:
            return
        for event, (count, seconds) in sorted(waits.items()):
            self.wait_events.add_metric([*values, event], count)
            self.wait_seconds.add_metric([*values, event], seconds)
        self.cpu.add_metric(values, breakdown.cpu_ns / 1e9)
        for reason in OFF_CPU_CLASSES:
            self.off_cpu.add_metric([*values, reason], breakdown.off_ns.get(reason, 0) / 1e9)
        self.read.add_metric(values, breakdown.read_bytes)
        self.written.add_metric(values, breakdown.write_bytes)

    def families(self) -> list[Metric]:
        return [self.cpu, self.off_cpu, self.read, self.written, self.wait_events, self.wait_seconds]


def _lock_families(view: AgentView) -> list[Metric]:
    labels = ["db_system", "server", "lock_kind", "mode"]
    waits = CounterMetricFamily("dbprobe_lock_waits", "Lock waits that ended, by lock kind and mode.",
                                labels=labels)
    seconds = CounterMetricFamily("dbprobe_lock_wait_seconds", "Time spent waiting for locks.",
                                  labels=labels, unit="seconds")
    latency = HistogramMetricFamily("dbprobe_lock_wait_duration_seconds",
                                    "Lock wait durations, in the kernel's log2 buckets.", labels=labels)
    server_labels = ["db_system", "server"]
    deadlocks = CounterMetricFamily("dbprobe_deadlocks", "Deadlocks the server detected.",
                                    labels=server_labels)
    waiting = GaugeMetricFamily("dbprobe_lock_waiting", "Lock waits going on now.", labels=server_labels)
    idle = CounterMetricFamily("dbprobe_idle_in_transaction_seconds",
                               "Time idle in transaction, in transactions at or over the txn threshold.",
                               labels=server_labels, unit="seconds")
    servers = {server.id: server for server in view.servers}
    for sid, stats in view.stats.servers.items():
        server = servers.get(sid)
        db = server.db if server is not None else ""
        for (kind, mode), distribution in sorted(stats.lock_waits.items()):
            values = [db, sid, kind, mode]
            waits.add_metric(values, distribution.count)
            seconds.add_metric(values, distribution.total_ns / 1e9)
            latency.add_metric(values, buckets(distribution.slots), distribution.total_ns / 1e9)
        deadlocks.add_metric([db, sid], stats.deadlocks)
        waiting.add_metric([db, sid], stats.waiting)
        if server is not None and "txn" in server.families:
            idle.add_metric([db, sid], stats.idle_in_txn_ns / 1e9)
    return [waits, seconds, latency, deadlocks, waiting, idle]


def _server_families(view: AgentView) -> list[Metric]:
    info = InfoMetricFamily("dbprobe_server", "A database server the agent follows.",
                            labels=["db_system", "server"])
    state = StateSetMetricFamily("dbprobe_server_state", "Whether the agent traces the server.",
                                 labels=["db_system", "server"])
    pid = GaugeMetricFamily("dbprobe_server_pid", "The pid of the server's main process.",
                            labels=["db_system", "server"])
    counted = GaugeMetricFamily("dbprobe_servers", "Servers followed, by state.", labels=["state"])
    by_state = dict.fromkeys(SERVER_STATES, 0)
    for server in view.servers:
        values = [server.db, server.id]
        info.add_metric(values, {"db_version": server.version or "", "server_port": str(server.port or ""),
                                 "container": server.container, "binary": server.binary})
        state.add_metric(values, {name: name == server.state for name in SERVER_STATES})
        if server.state != "gone":
            pid.add_metric(values, server.pid)
        by_state[server.state] = by_state.get(server.state, 0) + 1
    for name, number in by_state.items():
        counted.add_metric([name], number)
    return [info, state, pid, counted]


def _binary_families(view: AgentView) -> list[Metric]:
    labels = ["db_system", "binary", "container"]
    statements = CounterMetricFamily("dbprobe_statements", "Statements completed, all of them, counted in the kernel.",
                                     labels=[*labels, "protocol"])
    statement_seconds = CounterMetricFamily("dbprobe_statement_seconds", "Time spent in statements, all of them.",
                                            labels=labels, unit="seconds")
    statement_latency = HistogramMetricFamily("dbprobe_statement_duration_seconds",
                                              "Latency of every statement, in the kernel's log2 buckets.",
                                              labels=labels)
    transactions = CounterMetricFamily("dbprobe_transactions", "Transactions ended, by outcome.",
                                       labels=[*labels, "outcome"])
    transaction_latency = HistogramMetricFamily("dbprobe_transaction_duration_seconds",
                                                "Transaction durations, in the kernel's log2 buckets.",
                                                labels=labels)
    sent = CounterMetricFamily("dbprobe_events_sent", "Records the kernel handed to the agent.", labels=labels)
    lost = CounterMetricFamily("dbprobe_events_lost", "Records dropped because the ring buffer was full.",
                               labels=labels)
    unattributed = CounterMetricFamily("dbprobe_unattributed_records",
                                       "Records whose server could not be told.", labels=labels)
    state = StateSetMetricFamily("dbprobe_binary_state", "Whether the binary's probes are attached.",
                                 labels=labels)
    probes = GaugeMetricFamily("dbprobe_probes", "Probes attached to the binary.", labels=labels)
    attaches = CounterMetricFamily("dbprobe_attaches", "Programs attached to the binary.", labels=labels)
    errors = CounterMetricFamily("dbprobe_attach_errors", "Attempts to attach that failed.", labels=labels)
    attach_time = GaugeMetricFamily("dbprobe_attach_duration_seconds",
                                    "How long the last attach took (compiling included).", labels=labels)
    first_attach_time = GaugeMetricFamily("dbprobe_first_attach_duration_seconds",
                                          "How long the attach took that began tracing the binary.",
                                          labels=labels)
    spare_attaches = CounterMetricFamily("dbprobe_spare_attaches",
                                         "Attaches that took a program compiled ahead for the binary's build.",
                                         labels=labels)
    states = {binary.label: binary.state for binary in view.binaries}
    for label, stats in view.stats.binaries.items():
        values = [label.db, label.path, label.container]
        counts = stats.total()
        for protocol, number in counts.statements.items():
            statements.add_metric([*values, protocol], number)
        statement_seconds.add_metric(values, counts.statement_ns / 1e9)
        statement_latency.add_metric(values, buckets(counts.statement_slots), counts.statement_ns / 1e9)
        if "txn" in stats.families:
            transactions.add_metric([*values, "commit"], counts.commits)
            transactions.add_metric([*values, "abort"], counts.aborts)
            transaction_latency.add_metric(values, buckets(counts.txn_slots), counts.txn_ns / 1e9)
        sent.add_metric(values, counts.emitted)
        lost.add_metric(values, counts.lost)
        unattributed.add_metric(values, stats.unattributed)
        attaches.add_metric(values, stats.attaches)
        errors.add_metric(values, stats.attach_errors)
        if label in states:
            state.add_metric(values, {name: name == states[label] for name in ("attaching", "attached", "error")})
            probes.add_metric(values, stats.probes if states[label] == "attached" else 0)
        spare_attaches.add_metric(values, stats.spare_attaches)
        if stats.attach_seconds is not None:
            attach_time.add_metric(values, stats.attach_seconds)
        if stats.first_attach_seconds is not None:
            first_attach_time.add_metric(values, stats.first_attach_seconds)
    return [statements, statement_seconds, statement_latency, transactions, transaction_latency,
            sent, lost, unattributed, state, probes, attaches, errors, attach_time, first_attach_time,
            spare_attaches]


def _agent_families(view: AgentView) -> list[Metric]:
    stats = view.stats
    info = InfoMetricFamily("dbprobe_agent", "The running agent.")
    info.add_metric([], {"version": __version__})
    thresholds = GaugeMetricFamily("dbprobe_threshold_seconds",
                                   "What reaches user space, and is an event, per family.", labels=["family"])
    for family, ns in sorted(view.thresholds_ns.items()):
        thresholds.add_metric([family], ns / 1e9)
    top_k = GaugeMetricFamily("dbprobe_class_series_limit", "Classes with series of their own, per server.")
    top_k.add_metric([], view.top_k)
    overflows = CounterMetricFamily("dbprobe_map_overflows",
                                    "What a full kernel table could not count: statements in no class of their own "
                                    "(classes), a class's wait events (class_waits).",
                                    labels=["map"])
    overflows.add_metric(["classes"], stats.untracked_statements)
    overflows.add_metric(["class_waits"], stats.untracked_waits)
    written = CounterMetricFamily("dbprobe_events_written", "Events written as JSON lines.", labels=["event"])
    for kind in ("query", "lock_wait", "lock_waiting", "deadlock"):
        written.add_metric([kind], stats.events.get(kind, 0))
    failed = CounterMetricFamily("dbprobe_events_write_failures", "Events that could not be written.")
    failed.add_metric([], stats.events_failed)
    reloads = CounterMetricFamily("dbprobe_config_reloads", "Configuration reloads (SIGHUP).", labels=["result"])
    for result in ("success", "failure"):
        reloads.add_metric([result], stats.reloads.get(result, 0))
    last_reload = GaugeMetricFamily("dbprobe_config_last_reload_successful",
                                    "Whether the last reload was taken (1) or refused (0).")
    last_reload.add_metric([], 1 if stats.last_reload_ok else 0)
    scans = CounterMetricFamily("dbprobe_scans", "Discoveries of the host's servers.")
    scans.add_metric([], stats.scans)
    spares = GaugeMetricFamily("dbprobe_spare_programs",
                               "Compiled programs held ready for the next binary of a build.")
    spares.add_metric([], view.spares)
    return [info, thresholds, top_k, overflows, written, failed, reloads, last_reload, scans, spares]

