"""``dbprobe slow``: every query over the threshold, live, and a digest on exit."""

from __future__ import annotations

import argparse
import time

from dbprobe.render import queries as report
from dbprobe.commands.options import OutputOptions, add_output_options, add_target_options, parse_threshold_ns
from dbprobe.kernel.maps import KernelTotals, LatencyHistogram
from dbprobe.reports.runner import trace_reports
from dbprobe.correlate.statements import Correlator
from dbprobe.digest.queries import QueryDigest, SlowQuerySummary
from dbprobe.kernel.records import RawQuery
from dbprobe.model import Query
from dbprobe.kernel.trace import Trace, TraceRequest

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLD = "100ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report queries at least this long: 50ms, 1s, 250us; "
                             f"a plain number is milliseconds (default {DEFAULT_THRESHOLD})")
    add_output_options(parser, digest="the digest")


class SlowQueryReport:
    """Prints each slow query as it completes; digests by fingerprint with the kernel's counts."""

    def __init__(self, output: OutputOptions, threshold_ns: int):
        self._output = output
        self._threshold_ms = threshold_ns / 1e6
        self.description = f"queries at or over {self._threshold_ms:g} ms"
        self._digest = QueryDigest()  # since the last digest printed
        self._trace: Trace | None = None
        self._window_start = (0.0, KernelTotals(), LatencyHistogram.empty())

    def attach_to(self, trace: Trace) -> None:
        self._trace = trace
        correlator = Correlator(trace.sources, trace.backends, databases=trace.databases)
        trace.on(RawQuery, lambda raw: self.on_query(correlator.query(raw)))
        self._window_start = (trace.started, KernelTotals(), LatencyHistogram.empty())

    def start(self) -> None:
        if not self._output.json:
            self._output.emit(report.live_header(self._output.width))

    def tick(self, now: float) -> None:
        pass

    def on_query(self, query: Query) -> None:
        self._digest.add(query)
        if self._output.json:
            self._output.emit(report.query_json(query, show_literals=self._output.show_literals))
        else:
            self._output.emit(report.live_line(query, show_literals=self._output.show_literals,
                                               width=self._output.width))

    def print_digest(self) -> None:
        """The digest since the last one (the whole run, without --interval)."""
        now = time.time()
        totals, histogram = self._trace.collector.totals(), self._trace.collector.histogram()
        started, earlier_totals, earlier_histogram = self._window_start
        self._window_start = (now, totals, histogram)
        digest, self._digest = self._digest, QueryDigest()
        totals, histogram = totals - earlier_totals, histogram - earlier_histogram
        summary = SlowQuerySummary(started, now, self._threshold_ms, totals, histogram, digest)
        if self._output.json:
            self._output.emit(report.summary_json(summary, show_literals=self._output.show_literals))
        else:
            self._output.emit("\n" + report.digest_text(summary, width=self._output.width))


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("query",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, thresholds_ns={"query": threshold_ns},
                           ringbuf_bytes=args.ring_buffer)
    trace_reports([SlowQueryReport(OutputOptions.from_args(args), threshold_ns)], request,
                  duration_s=args.duration, interval_s=args.interval)
    return 0
