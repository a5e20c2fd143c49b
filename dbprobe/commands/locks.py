"""``dbprobe locks``: every lock wait with its blockers, live, and a digest on exit."""

from __future__ import annotations

import argparse
from pathlib import Path

from dbprobe.commands.options import (add_output_options, add_target_options, output_from_args,
                                      parse_threshold_ns)
from dbprobe.discover import processes as discovery
from dbprobe.engines.postgresql.catalog import PostgresCatalog
from dbprobe.engines.registry import engine_for
from dbprobe.errors import DbprobeError
from dbprobe.kernel.trace import TraceRequest
from dbprobe.render.output import status
from dbprobe.reports.locks import LockReport
from dbprobe.reports.runner import trace_reports

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLD = "0ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report waits at least this long (default 0ms: every wait, "
                             "also those shorter than deadlock_timeout that log_lock_waits misses)")
    parser.add_argument("--dsn", metavar="DSN",
                        help="PostgreSQL only: connect (libpq conninfo) to name relations and "
                             "databases and to ask pg_blocking_pids(); optional, never fatal")
    add_output_options(parser, digest="the lock digest")


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("locks",), databases=_databases(args.dsn, args.pid, args.binary),
                           pid=args.pid, binary=args.binary,
                           ringbuf_bytes=args.ring_buffer)
    catalog = PostgresCatalog(args.dsn, warn=status) if args.dsn else None
    try:
        report = LockReport(output_from_args(args), threshold_ns, catalog)
        trace_reports([report], request, duration_s=args.duration, interval_s=args.interval)
    finally:
        if catalog is not None:
            catalog.close()
    return 0


_CATALOG_DATABASE = "postgresql"  # the server PostgresCatalog asks


def _databases(dsn: str | None, pid: int | None, binary: str | None) -> tuple[str, ...]:
    """The servers to trace: --dsn is a libpq conninfo, which only a PostgreSQL server has."""
    if not dsn:
        return DATABASES
    if pid is not None:
        named, what = discovery.server_for_pid(pid).db, f"pid {pid}"
    elif binary is not None and Path(binary).is_file():
        named, what = discovery.identify_binary(binary)[0], binary
    else:
        return (_CATALOG_DATABASE,)
    if named is not None and named != _CATALOG_DATABASE:
        raise DbprobeError(f"--dsn is a PostgreSQL connection string, and {what} is a "
                           f"{engine_for(named).display_name} server: leave --dsn out")
    return (_CATALOG_DATABASE,)
