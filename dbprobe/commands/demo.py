"""``dbprobe demo``: the whole product on a throwaway PostgreSQL, in one command.

It creates a temporary cluster (initdb, its own port and socket, run as the postgres
user; it never touches an existing cluster), runs an application-like workload with slow
queries and lock contention, and traces it with the slow-query (with where each slow
statement's time went), lock and transaction reports together, live and as digests at the
end, and the statement classes as ``dbprobe top`` shows them. Everything is removed on every exit
path, Ctrl-C included, unless --keep.
"""

from __future__ import annotations

import argparse
import sys
import time

from dbprobe.kernel import preflight
from dbprobe.commands.options import at_least_two, seconds
from dbprobe.engines.postgresql.catalog import PostgresCatalog
from dbprobe.render.output import Output, terminal_width
from dbprobe.reports.locks import LockReport
from dbprobe.reports.queries import SlowQueryReport
from dbprobe.reports.runner import trace_reports
from dbprobe.reports.top import TopSnapshot
from dbprobe.reports.txns import TxnReport
from dbprobe.demo.workload import DemoWorkload
from dbprobe.kernel.trace import TraceRequest
from dbprobe.render.output import status
from dbprobe.demo.server import ThrowawayPostgres

SLOW_THRESHOLD_NS = 100_000_000
TXN_THRESHOLD_NS = 500_000_000
PROGRESS_EVERY_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=seconds, default=30.0, metavar="S",
                        help="how long the workload runs while traced (default 30 s)")
    parser.add_argument("--clients", type=at_least_two, default=4, metavar="N",
                        help="concurrent client sessions, one of them the lock holder (default 4)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster running at the end, and say how to reach it")


class Progress:
    """Starts the workload once the probes are attached, then says on stderr every few
    seconds how long is left and how much traffic went out."""

    def __init__(self, workload: DemoWorkload, duration_s: float):
        self._workload = workload
        self._duration_s = duration_s
        self._ends = self._next = float("inf")

    def start_workload(self) -> None:
        self._workload.start()
        self._ends = time.time() + self._duration_s
        self._next = time.time() + PROGRESS_EVERY_S

    def __call__(self, now: float) -> None:
        if now < self._next:
            return
        self._next = now + PROGRESS_EVERY_S
        left = max(self._ends - now, 0)
        status(f"demo: workload running, {left:.0f} s left, "
               f"{self._workload.stats.operations:,} operations sent")


def run_command(args: argparse.Namespace) -> int:
    preflight.require_tracing_ready()
    width = terminal_width()
    status("demo: starting a throwaway PostgreSQL cluster (initdb, port and socket of its own)")
    server = ThrowawayPostgres(keep=args.keep, settings={"deadlock_timeout": "1s"}).start()
    workload = DemoWorkload(server.connect, clients=args.clients)
    catalog = PostgresCatalog(server.dsn, warn=status)
    try:
        status(f"demo: cluster up, pid {server.pid}, port {server.port}; loading demo tables")
        workload.prepare()
        reports = [
            SlowQueryReport(Output(False, False, width, prefix="[slow] "), SLOW_THRESHOLD_NS),
            LockReport(Output(False, False, width, prefix="[lock] "), 0, catalog),
            TxnReport(Output(False, False, width, prefix="[txn]  "), TXN_THRESHOLD_NS),
            TopSnapshot(Output(False, False, width, prefix="[top]  ")),
        ]
        request = TraceRequest(families=("query", "locks", "txn"), databases=("postgresql",),
                               pid=server.pid, breakdown=True,
                               thresholds_ns={"query": SLOW_THRESHOLD_NS, "txn": TXN_THRESHOLD_NS})
        status(f"demo: attaching, then {args.clients} clients for {args.duration:g} s "
               "(Ctrl-C stops early; the digests follow)")
        progress = Progress(workload, args.duration)
        trace_reports(reports, request, duration_s=args.duration, interval_s=None,
                      on_attached=progress.start_workload, on_tick=progress)
    finally:
        workload.stop()
        catalog.close()
        if args.keep:
            server.leave_running()
            status(f"demo: cluster kept: psql \"{server.dsn}\"; stop it with "
                   f"kill -INT {server.pid} and remove {server.workdir}")
        else:
            server.stop()
            status("demo: cluster stopped and removed")
    sys.stdout.flush()
    return 0
