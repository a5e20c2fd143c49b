"""What every tracing command does around its reports: attach, poll, digest, detach.

A report plugs into a trace: it registers handlers for the records it reads, may do
something on every tick (announce long waits), and prints its digest for a window or for
the whole run. ``dbprobe slow``, ``locks`` and ``txn`` each run one report; ``dbprobe demo``
runs all three on one trace. A server restarted on a replaced binary gets a program of its
own, whose records reach the same reports (see dbprobe.kernel.traceset).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol, Sequence

from dbprobe.kernel.loop import ServerWatch, run, stop_on_signals
from dbprobe.kernel.reattach import Reattacher
from dbprobe.kernel.trace import Trace, TraceRequest
from dbprobe.kernel.traceset import TraceSet
from dbprobe.render.output import status


class Report(Protocol):
    description: str  # what it traces, for the startup line: "queries at or over 100 ms"

    def attach_to(self, trace: Trace) -> None: ...
    def start(self) -> None: ...
    def tick(self, now: float) -> None: ...
    def print_digest(self) -> None: ...  # since the last one: the whole run, or an interval


def trace_reports(reports: Sequence[Report], request: TraceRequest, *, duration_s: float | None,
                  interval_s: float | None, on_attached: Callable[[], None] | None = None,
                  on_tick: Callable[[float], None] | None = None) -> None:
    """Attach, report live until stopped, print each report's digest; detach on every path."""
    with stop_on_signals() as stop, Trace.open(request) as first, following(first, request) as (trace, watch):
        for report in reports:
            report.attach_to(trace)
        status(f"tracing {'; '.join(report.description for report in reports)}; "
               f"{trace.probes_attached} probes attached")
        for line in trace.describe():
            status(line)
        for report in reports:
            report.start()
        if on_attached is not None:
            on_attached()

        def tick() -> None:
            now = time.time()
            for report in reports:
                report.tick(now)
            if on_tick is not None:
                on_tick(now)

        def interval() -> None:
            for report in reports:
                report.print_digest()

        run(trace, duration_s=duration_s, interval_s=interval_s, on_interval=interval, stop=stop,
            on_tick=tick, watch=watch)
        for report in reports:
            report.print_digest()


@contextmanager
def following(first: Trace, request: TraceRequest, warn: Callable[[str], None] = status
              ) -> Iterator[tuple[TraceSet, ServerWatch]]:
    """The trace set the reports read, and the watch that adds to it the programs of servers
    restarted on replaced binaries; on exit, the attaches under way are waited for and
    everything added is detached (the first trace is closed by its own context)."""
    traces = TraceSet(first)
    watch: ServerWatch | None = None
    reattacher = Reattacher(traces, request, warn,
                            on_attached=lambda db, path, file: watch.traced_now(db, path, file))
    watch = ServerWatch(first.targets, warn, filtered=request.pid is not None,
                        reattacher=reattacher)
    try:
        yield traces, watch
    finally:
        try:
            reattacher.close()
        finally:
            traces.close_added()
