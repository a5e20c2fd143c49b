"""``dbprobe txn``: transactions over the threshold, live, and a digest on exit."""

from __future__ import annotations

import argparse
import time

from dbprobe.render import txns as txnreport
from dbprobe.commands.options import OutputOptions, add_output_options, add_target_options, parse_threshold_ns
from dbprobe.reports.runner import trace_reports
from dbprobe.correlate.statements import Correlator
from dbprobe.kernel.records import HIST_SLOTS, RawTxn
from dbprobe.model import Transaction
from dbprobe.kernel.trace import Trace, TraceRequest
from dbprobe.render.txns import TxnDigest, TxnTotals

DATABASES = ("postgresql",)
DEFAULT_THRESHOLD = "0ms"
_NO_TOTALS = TxnTotals(0, 0, 0, (0,) * HIST_SLOTS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report transactions at least this long (default 0ms: all; the "
                             "digest's counts and histogram always include every transaction)")
    add_output_options(parser, digest="the transaction digest")


class TxnReport:
    """Prints each transaction over the threshold; digests with the kernel's counts."""

    def __init__(self, output: OutputOptions, threshold_ns: int):
        self._output = output
        self._threshold_ms = threshold_ns / 1e6
        self.description = f"transactions at or over {self._threshold_ms:g} ms"
        self._digest = TxnDigest()  # since the last digest printed
        self._trace: Trace | None = None
        self._window_start = (0.0, _NO_TOTALS)

    def attach_to(self, trace: Trace) -> None:
        self._trace = trace
        correlator = Correlator(trace.sources, trace.backends)
        trace.on(RawTxn, lambda raw: self.on_transaction(correlator.transaction(raw)))
        self._window_start = (trace.started, _NO_TOTALS)

    def start(self) -> None:
        if not self._output.json:
            self._output.emit(txnreport.live_header(self._output.width))

    def tick(self, now: float) -> None:
        pass

    def on_transaction(self, txn: Transaction) -> None:
        self._digest.add(txn)
        options = dict(show_literals=self._output.show_literals)
        if self._output.json:
            self._output.emit(txnreport.txn_json(txn, **options))
        else:
            self._output.emit(txnreport.live_line(txn, width=self._output.width, **options))

    def _kernel_totals(self) -> TxnTotals:
        counters = self._trace.collector.summed("txn_totals")
        return TxnTotals(counters["commits"], counters["aborts"], counters["total_ns"],
                         self._trace.collector.counts("txn_hist", HIST_SLOTS))

    def print_digest(self) -> None:
        """The digest since the last one (the whole run, without --interval)."""
        now, totals = time.time(), self._kernel_totals()
        started, earlier = self._window_start
        self._window_start = (now, totals)
        digest, self._digest = self._digest, TxnDigest()
        totals = totals - earlier
        common = dict(started=started, ended=now, threshold_ms=self._threshold_ms,
                      lost=self._trace.collector.totals().lost, show_literals=self._output.show_literals)
        if self._output.json:
            self._output.emit(txnreport.summary_json(digest, totals, **common))
        else:
            self._output.emit("\n" + txnreport.digest_text(digest, totals, width=self._output.width,
                                                           **common))


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    request = TraceRequest(families=("txn",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, thresholds_ns={"txn": threshold_ns},
                           ringbuf_bytes=args.ring_buffer)
    trace_reports([TxnReport(OutputOptions.from_args(args), threshold_ns)], request,
                  duration_s=args.duration, interval_s=args.interval)
    return 0
