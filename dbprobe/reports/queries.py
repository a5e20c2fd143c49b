"""The slow-query report: each query at or over the threshold live, and a digest by
fingerprint with the kernel's counts of every statement."""

from __future__ import annotations

from dbprobe.correlate.statements import Correlator
from dbprobe.digest.queries import QueryDigest, SlowQuerySummary
from dbprobe.kernel.maps import QueryCounters
from dbprobe.kernel.records import RawQuery
from dbprobe.kernel.trace import Trace
from dbprobe.model import Query
from dbprobe.render import queries as render
from dbprobe.render.output import Output
from dbprobe.reports.window import Window


class SlowQueryReport:
    def __init__(self, output: Output, threshold_ns: int):
        self._output = output
        self._threshold_ms = threshold_ns / 1e6
        self.description = f"queries at or over {self._threshold_ms:g} ms"
        self._digest = QueryDigest()  # since the last digest printed
        self._window: Window[QueryCounters] | None = None

    def attach_to(self, trace: Trace) -> None:
        correlator = Correlator(trace.sources, trace.backends, databases=trace.databases,
                                versions=trace.versions)
        trace.on(RawQuery, lambda raw: self.on_query(correlator.query(raw)))
        self._window = Window(trace.collector.query_counters, QueryCounters.empty(), trace.started)

    def start(self) -> None:
        if not self._output.json:
            self._output.emit(render.live_header(self._output.width))

    def tick(self, now: float) -> None:
        pass

    def on_query(self, query: Query) -> None:
        self._digest.add(query)
        if self._output.json:
            self._output.emit(render.query_json(query, show_literals=self._output.show_literals))
        else:
            self._output.emit(render.live_line(query, show_literals=self._output.show_literals,
                                               width=self._output.width))

    def print_digest(self) -> None:
        started, ended, counters = self._window.close()
        digest, self._digest = self._digest, QueryDigest()
        summary = SlowQuerySummary(started, ended, self._threshold_ms, counters.totals,
                                   counters.histogram, digest)
        if self._output.json:
            self._output.emit(render.summary_json(summary, show_literals=self._output.show_literals))
        else:
            self._output.emit("\n" + render.digest_text(summary, width=self._output.width))
