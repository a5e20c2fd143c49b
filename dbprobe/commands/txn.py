"""``dbprobe txn``: transactions over the threshold, live, and a digest on exit."""

from __future__ import annotations

import argparse
import time

from dbprobe import txnreport
from dbprobe.cli_options import OutputOptions, add_output_options, add_target_options, parse_threshold_ns
from dbprobe.correlate import Correlator
from dbprobe.events import HIST_SLOTS, RawTxn
from dbprobe.model import Transaction
from dbprobe.session import ServerWatch, Trace, TraceRequest, run, status, stop_on_signals
from dbprobe.txnreport import TxnDigest, TxnTotals

DATABASES = ("postgresql",)
DEFAULT_THRESHOLD = "0ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="report transactions at least this long (default 0ms: all; the "
                             "digest's counts and histogram always include every transaction)")
    add_output_options(parser, digest="the transaction digest")


def kernel_totals(trace: Trace) -> TxnTotals:
    counters = trace.collector.summed("txn_totals")
    return TxnTotals(counters["commits"], counters["aborts"], counters["total_ns"],
                     trace.collector.counts("txn_hist", HIST_SLOTS))


class TxnWatch:
    def __init__(self, output: OutputOptions):
        self._output = output
        self.window = TxnDigest()
        self.whole = TxnDigest()

    def on_transaction(self, txn: Transaction) -> None:
        self.window.add(txn)
        self.whole.add(txn)
        if self._output.json:
            print(txnreport.txn_json(txn, show_literals=self._output.show_literals), flush=True)
        else:
            print(txnreport.live_line(txn, show_literals=self._output.show_literals,
                                      width=self._output.width), flush=True)

    def take_window(self) -> TxnDigest:
        window, self.window = self.window, TxnDigest()
        return window


def run_command(args: argparse.Namespace) -> int:
    threshold_ns = parse_threshold_ns(args.threshold)
    output = OutputOptions.from_args(args)
    watch = TxnWatch(output)
    request = TraceRequest(families=("txn",), databases=DATABASES, pid=args.pid,
                           binary=args.binary, threshold_ns=threshold_ns)
    with stop_on_signals() as stop, Trace(request) as trace:
        correlator = Correlator(trace.sources, trace.backends)
        trace.on(RawTxn, lambda raw: watch.on_transaction(correlator.transaction(raw)))
        status(f"tracing transactions at or over {threshold_ns / 1e6:g} ms; "
               f"{trace.probes_attached} probes attached")
        for line in trace.describe():
            status(line)
        if not output.json:
            print(txnreport.live_header(output.width), flush=True)
        window = {"started": trace.started, "totals": TxnTotals(0, 0, 0, (0,) * HIST_SLOTS)}

        def print_digest(digest: TxnDigest, started: float, totals: TxnTotals) -> None:
            common = dict(started=started, ended=time.time(), threshold_ms=threshold_ns / 1e6,
                          lost=trace.collector.totals().lost, show_literals=output.show_literals)
            if output.json:
                print(txnreport.summary_json(digest, totals, **common), flush=True)
            else:
                print("\n" + txnreport.digest_text(digest, totals, width=output.width, **common), flush=True)

        def on_interval() -> None:
            now_totals = kernel_totals(trace)
            print_digest(watch.take_window(), window["started"], now_totals - window["totals"])
            window.update(started=time.time(), totals=now_totals)

        run(trace, duration_s=args.duration, interval_s=args.interval, on_interval=on_interval,
            stop=stop, watch=ServerWatch(trace.targets, status, filtered=args.pid is not None))
        final = kernel_totals(trace)
        if args.interval:
            print_digest(watch.take_window(), window["started"], final - window["totals"])
        else:
            print_digest(watch.whole, trace.started, final)
    return 0
