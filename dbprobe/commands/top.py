"""``dbprobe top``: statement classes live, full screen, like top for queries."""

from __future__ import annotations

import argparse

from dbprobe.commands.options import add_target_options, seconds
from dbprobe.kernel.trace import TraceRequest
from dbprobe.render.output import Output
from dbprobe.render.top import SORTS, TopHeader, TopView
from dbprobe.reports.top import (STATEMENT_CLASSES, LiveScreen, PlainTables, Screen, run_top,
                                 stdout_is_terminal)

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_INTERVAL_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--interval", type=seconds, default=DEFAULT_INTERVAL_S, metavar="S",
                        help=f"refresh every S seconds (1, 2s, 500ms; default {DEFAULT_INTERVAL_S:g})")
    parser.add_argument("--sort", choices=SORTS, default=SORTS[0],
                        help="rank classes by total time (the default), mean, calls, p99 or errors")
    parser.add_argument("--duration", type=seconds, metavar="S",
                        help="stop after this long (30, 30s, 5m); default: until q or Ctrl-C")
    parser.add_argument("--breakdown", action="store_true",
                        help="add where each class's time went (its largest part: cpu, io, lock, "
                             "lwlock, client, runq or other), counted in the kernel per thread, "
                             "at some 2 us of CPU per statement: see README")
    parser.add_argument("--show-literals", action="store_true",
                        help="show a sample statement of each class as sent, literals included "
                             "(they can hold secrets)")


def run_command(args: argparse.Namespace) -> int:
    request = TraceRequest(families=("query",), databases=DATABASES, pid=args.pid,
                           binary=args.binary,
                           thresholds_ns={"query": STATEMENT_CLASSES.query_threshold_ns},
                           breakdown=args.breakdown)
    view = TopView(sort=args.sort, show_literals=args.show_literals)
    interactive = stdout_is_terminal()

    def screen_for(header: TopHeader) -> Screen:
        if interactive:
            return LiveScreen(header, view)
        return PlainTables(Output(json=False, show_literals=args.show_literals, width=None),
                           header, view)

    run_top(request, STATEMENT_CLASSES, interval_s=args.interval, duration_s=args.duration,
            screen_for=screen_for)
    return 0
