"""``dbprobe waits``: a wait-event profile of the whole server, and by statement class."""

from __future__ import annotations

import argparse

from dbprobe.commands.options import (add_output_options, add_target_options, output_from_args,
                                      parse_threshold_ns)
from dbprobe.kernel.trace import TraceRequest
from dbprobe.reports.runner import trace_reports
from dbprobe.reports.waits import WaitProfileReport

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLD = "0ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="statements at least this long make the per-class profile "
                             "(default 0ms: all, at some 30 us of dbprobe's CPU each); the "
                             "whole-server profile is counted in the kernel whatever it is")
    add_output_options(parser, digest="the profile")


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("query",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, thresholds_ns={"query": threshold_ns},
                           ringbuf_bytes=args.ring_buffer, breakdown=True, wait_profile=True)
    trace_reports([WaitProfileReport(output_from_args(args))], request,
                  duration_s=args.duration, interval_s=args.interval)
    return 0
