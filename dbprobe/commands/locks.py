"""``dbprobe locks``: every lock wait with its blockers, live, and a digest on exit."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dbprobe.discover import processes as discovery
from dbprobe.render import locks as lockreport
from dbprobe.engines.postgresql.catalog import PostgresCatalog
from dbprobe.commands.options import OutputOptions, add_output_options, add_target_options, parse_threshold_ns
from dbprobe.reports.runner import trace_reports
from dbprobe.errors import DbprobeError
from dbprobe.kernel.records import RawLockEvent
from dbprobe.digest.locks import LockDigest
from dbprobe.render.locks import LWLockStats
from dbprobe.correlate.lockwaits import Catalog, LastStatement, LockWaitTracker
from dbprobe.model import Deadlock, LockWait
from dbprobe.discover.memory import read_c_string
from dbprobe.kernel.trace import Trace, TraceRequest, status

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLD = "0ms"
ANNOUNCE_AFTER_S = 1.0  # a wait still going after this long is shown before it ends
SWEEP_EVERY_S = 1.0  # how often to look for waiters that exited


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report waits at least this long (default 0ms: every wait, "
                             "also those shorter than deadlock_timeout that log_lock_waits misses)")
    parser.add_argument("--dsn", metavar="DSN",
                        help="PostgreSQL only: connect (libpq conninfo) to name relations and "
                             "databases and to ask pg_blocking_pids(); optional, never fatal")
    add_output_options(parser, digest="the lock digest")


class LockReport:
    """Prints waits as they end (and long ones while they last); digests by target and mode."""

    def __init__(self, output: OutputOptions, threshold_ns: int, catalog: Catalog | None = None):
        self._output = output
        self._threshold_ms = threshold_ns / 1e6
        self._catalog = catalog
        self.description = f"lock waits at or over {self._threshold_ms:g} ms"
        self._announced: set[tuple[int, float]] = set()
        self._digest = LockDigest()  # since the last digest printed
        self._next_sweep = 0.0
        self._trace: Trace | None = None
        self._tracker: LockWaitTracker | None = None
        self._window_started = 0.0

    def attach_to(self, trace: Trace) -> None:
        self._trace = trace
        self._tracker = LockWaitTracker(trace.sources, trace.versions, trace.backends,
                                        self._last_statement, catalog=self._catalog)
        trace.on(RawLockEvent, self.on_record)
        self._window_started = trace.started

    def start(self) -> None:
        pass

    def on_record(self, raw: RawLockEvent) -> None:
        result = self._tracker.record(raw)
        if isinstance(result, Deadlock):
            self._deadlock(result)
        elif isinstance(result, LockWait) and result.end is not None:
            self._ended(result)

    def tick(self, now: float) -> None:
        self._announce_long_waits(now)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            for gone in self._tracker.sweep(self._trace.backends.alive):
                self._ended(gone)

    def _ended(self, wait: LockWait) -> None:
        self._announced.discard((wait.tid, wait.start))
        self._digest.add(wait)
        if (wait.wait_ms or 0) >= self._threshold_ms or wait.outcome not in lockreport.ORDINARY_OUTCOMES:
            self._print_wait(wait)

    def _deadlock(self, deadlock: Deadlock) -> None:
        self._digest.add(deadlock.waits[0])
        self._digest.add_deadlock(deadlock)
        options = dict(show_literals=self._output.show_literals)
        if self._output.json:
            self._output.emit(lockreport.deadlock_json(deadlock, **options))
        else:
            self._output.emit("\n".join(lockreport.deadlock_lines(deadlock, width=self._output.width,
                                                                  **options)))

    def _print_wait(self, wait: LockWait, waited_ms: float | None = None) -> None:
        options = dict(show_literals=self._output.show_literals, waited_ms=waited_ms)
        if self._output.json:
            self._output.emit(lockreport.wait_json(wait, **options))
        else:
            self._output.emit("\n".join(lockreport.wait_lines(wait, width=self._output.width, **options)))

    def _announce_long_waits(self, now: float) -> None:
        """Show once each wait that has lasted long enough, before it ends."""
        for wait in self._tracker.waiting():
            waited_ms = (now - wait.start) * 1000
            key = (wait.tid, wait.start)
            if key in self._announced or waited_ms < max(self._threshold_ms, ANNOUNCE_AFTER_S * 1000):
                continue
            self._announced.add(key)
            self._print_wait(wait, waited_ms=waited_ms)

    def print_digest(self) -> None:
        """The digest since the last one (the whole run, without --interval)."""
        now = time.time()
        digest, started = self._digest, self._window_started
        self._digest, self._window_started = LockDigest(), now
        common = dict(started=started, ended=now, still_waiting=len(self._tracker.waiting()),
                      lost=self._trace.collector.totals().lost)
        lwlocks = self._lwlock_stats()
        if self._output.json:
            self._output.emit(lockreport.summary_json(digest, lwlocks, **common))
        else:
            self._output.emit("\n" + lockreport.digest_text(digest, lwlocks, width=self._output.width,
                                                            **common))

    def _last_statement(self, pid: int) -> LastStatement | None:
        activity = self._trace.collector.backend_activity(pid)
        if activity is None:
            return None
        return LastStatement(text=activity.text.decode("utf-8", errors="replace"),
                             start_ns=activity.start_ns, end_ns=activity.end_ns,
                             idle_state=activity.idle_state)

    def _lwlock_stats(self) -> list[LWLockStats]:
        """The kernel's LWLock wait counts, tranche names read from a server's memory."""
        if not any(target.db == "postgresql" for target in self._trace.targets):
            return []  # only PostgreSQL's program counts them
        server_pids = [server.pid for target in self._trace.targets for server in target.servers]
        stats = []
        for key, value in self._trace.collector.items("pg_lwlock_totals"):
            name = next(filter(None, (read_c_string(pid, key.tranche) for pid in server_pids)), None)
            stats.append(LWLockStats(name or f"tranche at {key.tranche:#x}", key.mode, value.waits,
                                     value.total_ns, value.max_ns))
        return stats


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("locks",), databases=_databases(args.dsn, args.pid, args.binary),
                           pid=args.pid, binary=args.binary,
                           ringbuf_bytes=args.ring_buffer)
    catalog = PostgresCatalog(args.dsn, warn=status) if args.dsn else None
    try:
        report = LockReport(OutputOptions.from_args(args), threshold_ns, catalog)
        trace_reports([report], request, duration_s=args.duration, interval_s=args.interval)
    finally:
        if catalog is not None:
            catalog.close()
    return 0


_SERVER_NAMES = {"mariadb": "MariaDB", "mysql": "MySQL"}


def _databases(dsn: str | None, pid: int | None, binary: str | None) -> tuple[str, ...]:
    """The servers to trace: --dsn is a libpq conninfo, which only a PostgreSQL server has."""
    if not dsn:
        return DATABASES
    if pid is not None:
        named, what = discovery.server_for_pid(pid).db, f"pid {pid}"
    elif binary is not None and Path(binary).is_file():
        named, what = discovery.identify_binary(binary)[0], binary
    else:
        return ("postgresql",)
    if named in _SERVER_NAMES:
        raise DbprobeError(f"--dsn is a PostgreSQL connection string, and {what} is a "
                           f"{_SERVER_NAMES[named]} server: leave --dsn out")
    return ("postgresql",)
