"""``dbprobe slow``: every query over the threshold, live, and a digest on exit."""

from __future__ import annotations

import argparse

from dbprobe.commands.options import (add_output_options, add_target_options, output_from_args,
                                      parse_threshold_ns)
from dbprobe.kernel.trace import TraceRequest
from dbprobe.reports.queries import SlowQueryReport
from dbprobe.reports.runner import trace_reports

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLD = "100ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report queries at least this long: 50ms, 1s, 250us; "
                             f"a plain number is milliseconds (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--breakdown", action="store_true",
                        help="add where each slow statement's time went: CPU, I/O, locks, "
                             "LWLocks, client, wait events (counted in the kernel per thread, "
                             "at some 1.5 us of CPU per statement: see README)")
    add_output_options(parser, digest="the digest")


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("query",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, thresholds_ns={"query": threshold_ns},
                           ringbuf_bytes=args.ring_buffer, breakdown=args.breakdown)
    trace_reports([SlowQueryReport(output_from_args(args), threshold_ns)], request,
                  duration_s=args.duration, interval_s=args.interval)
    return 0
