"""The slow-query report: each query at or over the threshold live, and a digest of every
statement by class, as the kernel counted them."""

from __future__ import annotations

from dbprobe.correlate.classes import ClassSamples
from dbprobe.correlate.statements import Correlator
from dbprobe.digest.queries import QueryDigest, SlowQuerySummary
from dbprobe.kernel.maps import ClassCounters, QueryCounters
from dbprobe.kernel.records import RawClassSample, RawQuery
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
        self._class_window: Window[ClassCounters] | None = None
        self._samples: ClassSamples | None = None

    def attach_to(self, trace: Trace) -> None:
        correlator = Correlator(trace.sources, trace.backends, databases=trace.databases,
                                versions=trace.versions)
        trace.on(RawQuery, lambda raw: self.on_query(correlator.query(raw)))
        self._samples = ClassSamples(trace.sources, trace.backends, trace.databases, trace.versions)
        trace.on(RawClassSample, self._samples.on_sample)
        self._window = Window(trace.collector.query_counters, QueryCounters.empty(), trace.started)
        self._class_window = Window(trace.collector.class_counters, ClassCounters.empty(),
                                    trace.started)

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
        _, _, classes = self._class_window.close()
        digest, self._digest = self._digest, QueryDigest()
        summary = SlowQuerySummary(started, ended, self._threshold_ms, counters.totals,
                                   counters.histogram, digest,
                                   self._samples.digest(classes, max(ended - started, 0.0)))
        if self._output.json:
            self._output.emit(render.summary_json(summary, show_literals=self._output.show_literals))
        else:
            self._output.emit("\n" + render.digest_text(summary, width=self._output.width,
                                                       show_literals=self._output.show_literals))
