"""The transaction report: each transaction at or over the threshold live, with its
statements, and a digest with the kernel's counts of every transaction."""

from __future__ import annotations

from dbprobe.correlate.statements import Correlator
from dbprobe.digest.txns import TxnDigest
from dbprobe.kernel.maps import TxnTotals
from dbprobe.kernel.records import RawTxn
from dbprobe.kernel.trace import Trace
from dbprobe.model import Transaction
from dbprobe.render import txns as render
from dbprobe.render.output import Output
from dbprobe.reports.window import Window


class TxnReport:
    def __init__(self, output: Output, threshold_ns: int):
        self._output = output
        self._threshold_ms = threshold_ns / 1e6
        self.description = f"transactions at or over {self._threshold_ms:g} ms"
        self._digest = TxnDigest()  # since the last digest printed
        self._trace: Trace | None = None
        self._window: Window[TxnTotals] | None = None

    def attach_to(self, trace: Trace) -> None:
        self._trace = trace
        correlator = Correlator(trace.sources, trace.backends, databases=trace.databases)
        trace.on(RawTxn, lambda raw: self.on_transaction(correlator.transaction(raw)))
        self._window = Window(trace.collector.txn_totals, TxnTotals.empty(), trace.started)

    def start(self) -> None:
        if not self._output.json:
            self._output.emit(render.live_header(self._output.width))

    def tick(self, now: float) -> None:
        pass

    def on_transaction(self, txn: Transaction) -> None:
        self._digest.add(txn)
        show_literals = self._output.show_literals
        if self._output.json:
            self._output.emit(render.txn_json(txn, show_literals=show_literals))
        else:
            self._output.emit(render.live_line(txn, width=self._output.width, show_literals=show_literals))

    def print_digest(self) -> None:
        started, ended, totals = self._window.close()
        digest, self._digest = self._digest, TxnDigest()
        common = dict(started=started, ended=ended, threshold_ms=self._threshold_ms,
                      lost=self._trace.collector.totals().lost, show_literals=self._output.show_literals)
        if self._output.json:
            self._output.emit(render.summary_json(digest, totals, **common))
        else:
            self._output.emit("\n" + render.digest_text(digest, totals, width=self._output.width,
                                                        **common))
