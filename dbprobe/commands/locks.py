"""``dbprobe locks``: every lock wait with its blockers, live, and a digest on exit."""

from __future__ import annotations

import argparse
import time

from dbprobe import lockreport
from dbprobe.catalog import PostgresCatalog
from dbprobe.cli_options import OutputOptions, add_output_options, add_target_options, parse_threshold_ns
from dbprobe.events import RawLockEvent
from dbprobe.lockdigest import LockDigest
from dbprobe.lockreport import LWLockStats
from dbprobe.lockwaits import LastStatement, LockWaitTracker
from dbprobe.model import Deadlock, LockWait
from dbprobe.procmem import read_c_string
from dbprobe.session import ServerWatch, Trace, TraceRequest, run, status, stop_on_signals

DATABASES = ("postgresql",)
DEFAULT_THRESHOLD = "0ms"
ANNOUNCE_AFTER_S = 1.0  # a wait still going after this long is shown before it ends
SWEEP_EVERY_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report waits at least this long (default 0ms: every wait, "
                             "also those shorter than deadlock_timeout that log_lock_waits misses)")
    parser.add_argument("--dsn", metavar="DSN",
                        help="connect (libpq conninfo) to name relations and databases and to ask "
                             "pg_blocking_pids(); optional, never fatal")
    add_output_options(parser, digest="the lock digest")


class LockWatch:
    """Prints waits as they end (and long ones while they last) and keeps the digest."""

    def __init__(self, tracker: LockWaitTracker, output: OutputOptions, threshold_ms: float):
        self.tracker = tracker
        self._output = output
        self._threshold_ms = threshold_ms
        self._announced: set[tuple[int, float]] = set()
        self.window = LockDigest()
        self.whole = LockDigest()

    def on_record(self, raw: RawLockEvent) -> None:
        result = self.tracker.record(raw)
        if isinstance(result, Deadlock):
            self._deadlock(result)
        elif isinstance(result, LockWait) and result.end is not None:
            self.ended(result)

    def ended(self, wait: LockWait) -> None:
        self._announced.discard((wait.tid, wait.start))
        for digest in (self.window, self.whole):
            digest.add(wait)
        if (wait.wait_ms or 0) >= self._threshold_ms or wait.outcome != "granted":
            self._print_wait(wait)

    def _deadlock(self, deadlock: Deadlock) -> None:
        for digest in (self.window, self.whole):
            digest.add(deadlock.waits[0])
            digest.add_deadlock(deadlock)
        if self._output.json:
            print(lockreport.deadlock_json(deadlock, show_literals=self._output.show_literals), flush=True)
        else:
            print("\n".join(lockreport.deadlock_lines(deadlock, show_literals=self._output.show_literals,
                                                      width=self._output.width)), flush=True)

    def _print_wait(self, wait: LockWait, waited_ms: float | None = None) -> None:
        if self._output.json:
            print(lockreport.wait_json(wait, show_literals=self._output.show_literals,
                                       waited_ms=waited_ms), flush=True)
        else:
            print("\n".join(lockreport.wait_lines(wait, show_literals=self._output.show_literals,
                                                  width=self._output.width, waited_ms=waited_ms)),
                  flush=True)

    def announce_long_waits(self, now: float) -> None:
        """Show once each wait that has lasted long enough, before it ends."""
        for wait in self.tracker.waiting():
            waited_ms = (now - wait.start) * 1000
            key = (wait.tid, wait.start)
            if key in self._announced or waited_ms < max(self._threshold_ms, ANNOUNCE_AFTER_S * 1000):
                continue
            self._announced.add(key)
            self._print_wait(wait, waited_ms=waited_ms)

    def take_window(self) -> LockDigest:
        window, self.window = self.window, LockDigest()
        return window


def _last_statement_reader(trace: Trace):
    def last_statement(pid: int) -> LastStatement | None:
        value = trace.collector.lookup("pg_last_statements", pid)
        if value is None:
            return None
        text = bytes(value.text)[: value.len].decode("utf-8", errors="replace")
        return LastStatement(text=text, start_ns=value.start_ns, end_ns=value.end_ns)
    return last_statement


def _lwlock_stats(trace: Trace) -> list[LWLockStats]:
    server_pids = [server.pid for target in trace.targets for server in target.servers]
    stats = []
    for key, value in trace.collector.items("pg_lwlock_totals"):
        name = next((read_c_string(pid, key.tranche) for pid in server_pids
                     if read_c_string(pid, key.tranche)), None)
        stats.append(LWLockStats(name or f"tranche at {key.tranche:#x}", key.mode, value.waits,
                                 value.total_ns, value.max_ns))
    return stats


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    output = OutputOptions.from_args(args)
    request = TraceRequest(families=("locks",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, threshold_ns=threshold_ns)
    catalog = PostgresCatalog(args.dsn, warn=status) if args.dsn else None
    try:
        with stop_on_signals() as stop, Trace(request) as trace:
            tracker = LockWaitTracker(trace.sources, trace.versions, trace.backends,
                                      _last_statement_reader(trace), catalog=catalog)
            watch = LockWatch(tracker, output, threshold_ns / 1e6)
            trace.on(RawLockEvent, watch.on_record)
            status(f"tracing lock waits at or over {threshold_ns / 1e6:g} ms; "
                   f"{trace.probes_attached} probes attached")
            for line in trace.describe():
                status(line)
            window_started = trace.started
            next_sweep = time.monotonic() + SWEEP_EVERY_S

            def print_digest(digest: LockDigest, started: float) -> None:
                ended = time.time()
                waiting = len(tracker.waiting())
                lost = trace.collector.totals().lost
                lwlocks = _lwlock_stats(trace)
                if output.json:
                    print(lockreport.summary_json(digest, lwlocks, started=started, ended=ended,
                                                  still_waiting=waiting, lost=lost), flush=True)
                else:
                    print("\n" + lockreport.digest_text(digest, lwlocks, started=started, ended=ended,
                                                        still_waiting=waiting, lost=lost,
                                                        width=output.width), flush=True)

            def on_interval() -> None:
                nonlocal window_started
                print_digest(watch.take_window(), window_started)
                window_started = time.time()

            def on_tick() -> None:
                nonlocal next_sweep
                watch.announce_long_waits(time.time())
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                    for gone in tracker.sweep(trace.backends.alive):
                        watch.ended(gone)

            run(trace, duration_s=args.duration, interval_s=args.interval, on_interval=on_interval,
                stop=stop, watch=ServerWatch(trace.targets, status, filtered=args.pid is not None),
                on_tick=on_tick)
            print_digest(watch.take_window() if args.interval else watch.whole,
                         window_started if args.interval else trace.started)
    finally:
        if catalog is not None:
            catalog.close()
    return 0
