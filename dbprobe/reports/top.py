"""The `top` report: the statement classes of each interval, on a full-screen view that
keys steer, or as one plain table per interval when stdout is no terminal.

Where the classes come from is a ``ClassSource``: something that, asked at the end of each
interval, hands out the classes that grew in it. ``STATEMENT_CLASSES`` says which source
``dbprobe top`` uses and what it needs the kernel to send to user space: the kernel's own
class map (``KernelClasses``), for which no statement has to reach user space.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

from dbprobe.commands.options import MAX_THRESHOLD_NS
from dbprobe.correlate.classes import ClassSamples
from dbprobe.digest.classes import ClassDigest
from dbprobe.discover.targets import Target
from dbprobe.kernel.loop import StopRequested, run, stop_on_signals
from dbprobe.kernel.maps import ClassCounters
from dbprobe.kernel.records import RawClassSample
from dbprobe.kernel.trace import Trace, TraceRequest
from dbprobe.render import top as render
from dbprobe.render.output import Output, status
from dbprobe.reports.terminal import RESIZE, Terminal
from dbprobe.reports.runner import following
from dbprobe.reports.window import Window


# Where the classes come from ----------------------------------------------------------------

class ClassSource(Protocol):
    def read(self) -> ClassDigest:
        """The classes that grew since the last read (the first read: since the trace
        began), ``seconds`` set to that window, ``untracked`` to what no class counted."""


@dataclass(frozen=True, slots=True)
class ClassSourceKind:
    query_threshold_ns: int  # the statements the kernel must still send to user space
    open: Callable[[Trace], ClassSource]


class KernelClasses:
    """The kernel's class map, read at the end of each interval: the classes that grew in
    it, each named by its sample. Nothing per statement reaches user space."""

    def __init__(self, trace: Trace, clock: Callable[[], float] = time.time):
        self._collector = trace.collector
        self._samples = ClassSamples(trace.sources, trace.backends, trace.databases, trace.versions)
        trace.on(RawClassSample, self._samples.on_sample)
        self._window = Window(trace.collector.class_counters, ClassCounters.empty(), clock(),
                              clock=clock)

    def read(self) -> ClassDigest:
        self._collector.drain()  # the samples of classes new in this interval
        started, ended, grown = self._window.close()
        return self._samples.digest(grown, max(ended - started, 0.0))


STATEMENT_CLASSES = ClassSourceKind(query_threshold_ns=MAX_THRESHOLD_NS, open=KernelClasses)


class TopSnapshot:
    """``top``'s table once, for the whole run, as a report beside others: what
    ``dbprobe demo`` shows of it."""

    description = "statement classes"

    def __init__(self, output: Output):
        self._output = output
        self._source: KernelClasses | None = None
        self._servers = ""

    def attach_to(self, trace: Trace) -> None:
        self._source = KernelClasses(trace)
        self._servers = servers_label(trace.targets)

    def start(self) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def print_digest(self) -> None:
        digest = self._source.read()
        header = render.TopHeader(self._servers, digest.seconds, time.time())
        self._output.emit("\n" + render.interval_text(digest, header, render.TopView()))


# Where they are shown -----------------------------------------------------------------------

class Screen(Protocol):
    quit: bool  # the person asked to stop

    def __enter__(self) -> "Screen": ...
    def __exit__(self, *exc) -> None: ...
    def show(self, digest: ClassDigest, ended: float) -> None: ...
    def tick(self) -> None: ...
    def warn(self, message: str) -> None: ...
    def last(self, digest: ClassDigest, ended: float) -> None: ...  # the window cut short by the end


class PlainTables:
    """One plain table per interval on stdout, for a pipe or a file; warnings on stderr."""

    quit = False

    def __init__(self, output: Output, header: render.TopHeader, view: render.TopView):
        self._output = output
        self._header = header
        self._view = view

    def __enter__(self) -> "PlainTables":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def show(self, digest: ClassDigest, ended: float) -> None:
        header = replace(self._header, ended=ended)
        self._output.emit(render.interval_text(digest, header, self._view))

    def last(self, digest: ClassDigest, ended: float) -> None:
        if digest.classes or digest.untracked:
            self.show(digest, ended)

    def tick(self) -> None:
        pass

    def warn(self, message: str) -> None:
        status(message)


class LiveScreen:
    """The full-screen view: drawn again at each interval, key and change of size. Paused,
    it keeps showing the interval it stopped on, while the next ones are still read."""

    def __init__(self, header: render.TopHeader, view: render.TopView,
                 terminal_for: Callable[[Callable[[str], None]], Terminal] = Terminal):
        self.quit = False
        self._header = header
        self._view = view
        self._terminal = terminal_for(self._show_message)
        self._drawing = False
        self._shown: ClassDigest | None = None
        self._latest: ClassDigest | None = None
        self._latest_ended = header.ended
        self._databases: list[str] = []  # every database seen, in the order `d` cycles

    def __enter__(self) -> "LiveScreen":
        self._terminal.__enter__()
        self._drawing = True
        self.draw()
        return self

    def __exit__(self, *exc) -> None:
        self._drawing = False
        self._terminal.__exit__(*exc)

    def show(self, digest: ClassDigest, ended: float) -> None:
        self._databases += sorted({database for database, _ in digest.classes
                                   if database is not None and database not in self._databases})
        self._latest, self._latest_ended = digest, ended
        if not self._view.paused:
            self._shown, self._header = digest, replace(self._header, ended=ended)
        self.draw()

    def last(self, digest: ClassDigest, ended: float) -> None:
        pass  # the screen is cleared at the end, like top's

    def tick(self) -> None:
        changed = False
        for key in self._terminal.keys():
            if key == RESIZE:
                changed = True
                continue
            view = render.on_key(self._view, key, self._databases)
            if view is render.QUIT:
                self.quit = True
                return
            changed |= view != self._view
            if self._view.paused and not view.paused:
                self._shown = self._latest
                self._header = replace(self._header, ended=self._latest_ended)
            self._view = view
        if changed:
            self.draw()

    def warn(self, message: str) -> None:
        status(message)  # on the screen's status line while it is up, on stderr after

    def _show_message(self, line: str) -> None:
        self._header = replace(self._header, message=line.removeprefix("dbprobe: "))
        self.draw()

    def draw(self) -> None:
        if not self._drawing:
            return
        width, height = self._terminal.size()
        self._terminal.draw(render.screen(self._shown, self._header, self._view, width=width,
                                          height=height),
                            highlighted=(render.TABLE_HEADER_LINE,))


def servers_label(targets: Sequence[Target]) -> str:
    return "; ".join(target.label for target in targets)


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # stdout was closed
        return False


# The loop -----------------------------------------------------------------------------------

class _StopOrQuit:
    """The trace loop stops on a signal, or when the screen's person pressed q."""

    def __init__(self, signals: StopRequested, screen: Screen):
        self._signals = signals
        self._screen = screen

    def __bool__(self) -> bool:
        return bool(self._signals) or self._screen.quit


def run_top(request: TraceRequest, source_kind: ClassSourceKind, *, interval_s: float,
            duration_s: float | None, screen_for: Callable[[render.TopHeader], Screen]) -> None:
    """Attach, show each interval's classes until stopped, detach on every path."""
    with stop_on_signals() as signals, Trace.open(request) as first:
        status(f"tracing statement classes; {first.probes_attached} probes attached")
        for line in first.describe():
            status(line)
        header = render.TopHeader(servers_label(first.targets), interval_s, time.time())
        with screen_for(header) as screen, following(first, request, screen.warn) as (trace, watch):
            source = source_kind.open(trace)
            run(trace, duration_s=duration_s, interval_s=interval_s,
                on_interval=lambda: screen.show(source.read(), time.time()),
                stop=_StopOrQuit(signals, screen), on_tick=screen.tick, watch=watch)
            screen.last(source.read(), time.time())
