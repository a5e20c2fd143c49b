"""``dbprobe slow``: every query over the threshold, live, and a digest on exit."""

from __future__ import annotations

import argparse
import sys
import time

from dbprobe import report
from dbprobe.cli_options import OutputOptions, add_output_options, add_target_options, parse_threshold_ns
from dbprobe.collector import KernelTotals, LatencyHistogram
from dbprobe.correlate import Correlator
from dbprobe.digest import QueryDigest, SlowQuerySummary
from dbprobe.events import RawQuery
from dbprobe.model import Query
from dbprobe.session import ServerWatch, Trace, TraceRequest, run, status, stop_on_signals

DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLD = "100ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report queries at least this long: 50ms, 1s, 250us; "
                             f"a plain number is milliseconds (default {DEFAULT_THRESHOLD})")
    add_output_options(parser, digest="the digest")


class SlowQueryWatch:
    """Prints each slow query as it completes and keeps the digest of the window."""

    def __init__(self, output: OutputOptions, threshold_ms: float):
        self._output = output
        self._threshold_ms = threshold_ms
        self._window = QueryDigest()
        self._whole = QueryDigest()

    def on_query(self, query: Query) -> None:
        self._window.add(query)
        self._whole.add(query)
        if self._output.json:
            print(report.query_json(query, show_literals=self._output.show_literals), flush=True)
        else:
            print(report.live_line(query, show_literals=self._output.show_literals,
                                   width=self._output.width), flush=True)

    def take_window(self) -> QueryDigest:
        window, self._window = self._window, QueryDigest()
        return window

    @property
    def whole(self) -> QueryDigest:
        return self._whole

    def print_summary(self, summary: SlowQuerySummary) -> None:
        if self._output.json:
            print(report.summary_json(summary, show_literals=self._output.show_literals), flush=True)
        else:
            print("\n" + report.digest_text(summary, width=self._output.width), flush=True)


class KernelWindow:
    """Kernel counters and histogram for a window: the difference of two readings."""

    def __init__(self, trace: Trace):
        self._trace = trace
        self.started = trace.started
        self._totals = KernelTotals()
        self._histogram = LatencyHistogram.empty()

    def take(self) -> tuple[float, float, KernelTotals, LatencyHistogram]:
        totals, histogram = self._trace.collector.totals(), self._trace.collector.histogram()
        now = time.time()
        window = (self.started, now, totals - self._totals, histogram - self._histogram)
        self.started, self._totals, self._histogram = now, totals, histogram
        return window


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    output = OutputOptions.from_args(args)
    watch = SlowQueryWatch(output, threshold_ns / 1e6)
    request = TraceRequest(families=("query",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, threshold_ns=threshold_ns)
    with stop_on_signals() as stop, Trace(request) as trace:
        correlator = Correlator(trace.sources, trace.backends)
        trace.on(RawQuery, lambda raw: watch.on_query(correlator.query(raw)))
        status(f"tracing queries at or over {threshold_ns / 1e6:g} ms; "
               f"{trace.probes_attached} probes attached")
        for line in trace.describe():
            status(line)
        if not output.json:
            print(report.live_header(output.width), flush=True)
        kernel = KernelWindow(trace)

        def summarise(digest: QueryDigest, started: float, ended: float,
                      totals: KernelTotals, histogram: LatencyHistogram) -> SlowQuerySummary:
            return SlowQuerySummary(started, ended, threshold_ns / 1e6, totals, histogram, digest)

        def print_interval() -> None:
            watch.print_summary(summarise(watch.take_window(), *kernel.take()))

        run(trace, duration_s=args.duration, interval_s=args.interval, on_interval=print_interval,
            stop=stop, watch=ServerWatch(trace.targets, status, filtered=args.pid is not None))
        final_totals, final_histogram = trace.collector.totals(), trace.collector.histogram()
    digest = watch.take_window() if args.interval else watch.whole
    started = kernel.started if args.interval else trace.started
    if args.interval:
        final_totals, final_histogram = (final_totals - kernel._totals, final_histogram - kernel._histogram)
    watch.print_summary(summarise(digest, started, time.time(), final_totals, final_histogram))
    return 0
