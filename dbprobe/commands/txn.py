"""``dbprobe txn``: transactions over the threshold, live, and a digest on exit."""

from __future__ import annotations

import argparse

from dbprobe.commands.options import (add_output_options, add_target_options, output_from_args,
                                      parse_threshold_ns)
from dbprobe.kernel.trace import TraceRequest
from dbprobe.reports.runner import trace_reports
from dbprobe.reports.txns import TxnReport

DATABASES = ("postgresql",)
DEFAULT_THRESHOLD = "0ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report transactions at least this long (default 0ms: all; the "
                             "digest's counts and histogram always include every transaction)")
    add_output_options(parser, digest="the transaction digest")


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("txn",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, thresholds_ns={"txn": threshold_ns},
                           ringbuf_bytes=args.ring_buffer)
    trace_reports([TxnReport(output_from_args(args), threshold_ns)], request,
                  duration_s=args.duration, interval_s=args.interval)
    return 0
