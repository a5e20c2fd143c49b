"""The lock report: each wait as it ends (and a long one while it lasts), with its blockers,
and a digest by lock target and mode."""

from __future__ import annotations

from dbprobe.correlate.lockwaits import Catalog, LockWaitTracker
from dbprobe.digest.locks import LockDigest, LWLockStats
from dbprobe.engines.registry import engine_for
from dbprobe.kernel.records import RawLockEvent
from dbprobe.kernel.trace import Trace
from dbprobe.model import Deadlock, LockWait
from dbprobe.render import locks as render
from dbprobe.render.output import Output
from dbprobe.reports.window import Window

ANNOUNCE_AFTER_S = 1.0  # a wait still going after this long is shown before it ends
SWEEP_EVERY_S = 1.0  # how often to look for waiters that exited


class _NoCounters:
    """The lock report's window has no kernel counters of its own to difference."""

    def __sub__(self, earlier: "_NoCounters") -> "_NoCounters":
        return self


class LockReport:
    def __init__(self, output: Output, threshold_ns: int, catalog: Catalog | None = None):
        self._output = output
        self._threshold_ms = threshold_ns / 1e6
        self._catalog = catalog
        self.description = f"lock waits at or over {self._threshold_ms:g} ms"
        self._announced: set[tuple[int, float]] = set()
        self._digest = LockDigest()  # since the last digest printed
        self._next_sweep = 0.0
        self._trace: Trace | None = None
        self._tracker: LockWaitTracker | None = None
        self._window: Window[_NoCounters] | None = None

    def attach_to(self, trace: Trace) -> None:
        self._trace = trace
        self._tracker = LockWaitTracker(trace.sources, trace.versions, trace.backends,
                                        trace.collector.last_statement, catalog=self._catalog)
        trace.on(RawLockEvent, self.on_record)
        self._window = Window(_NoCounters, _NoCounters(), trace.started)

    def start(self) -> None:
        pass

    def on_record(self, raw: RawLockEvent) -> None:
        result = self._tracker.record(raw)
        if isinstance(result, Deadlock):
            self._deadlock(result)
        elif isinstance(result, LockWait) and result.end is not None:
            self._ended(result)

    def tick(self, now: float) -> None:
        self._announce_long_waits(now)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            for gone in self._tracker.sweep(self._trace.backends.alive):
                self._ended(gone)

    def _ended(self, wait: LockWait) -> None:
        self._announced.discard((wait.tid, wait.start))
        self._digest.add(wait)
        if (wait.wait_ms or 0) >= self._threshold_ms or wait.outcome not in render.ORDINARY_OUTCOMES:
            self._print_wait(wait)

    def _deadlock(self, deadlock: Deadlock) -> None:
        self._digest.add(deadlock.waits[0])
        self._digest.add_deadlock(deadlock)
        show_literals = self._output.show_literals
        if self._output.json:
            self._output.emit(render.deadlock_json(deadlock, show_literals=show_literals))
        else:
            self._output.emit("\n".join(render.deadlock_lines(deadlock, width=self._output.width,
                                                              show_literals=show_literals)))

    def _print_wait(self, wait: LockWait, waited_ms: float | None = None) -> None:
        options = dict(show_literals=self._output.show_literals, waited_ms=waited_ms)
        if self._output.json:
            self._output.emit(render.wait_json(wait, **options))
        else:
            self._output.emit("\n".join(render.wait_lines(wait, width=self._output.width, **options)))

    def _announce_long_waits(self, now: float) -> None:
        """Show once each wait that has lasted long enough, before it ends."""
        for wait in self._tracker.waiting():
            waited_ms = (now - wait.start) * 1000
            key = (wait.tid, wait.start)
            if key in self._announced or waited_ms < max(self._threshold_ms, ANNOUNCE_AFTER_S * 1000):
                continue
            self._announced.add(key)
            self._print_wait(wait, waited_ms=waited_ms)

    def print_digest(self) -> None:
        started, ended, _ = self._window.close()
        digest, self._digest = self._digest, LockDigest()
        common = dict(started=started, ended=ended, still_waiting=len(self._tracker.waiting()),
                      lost=self._trace.collector.totals().lost)
        lwlocks = self._lwlock_stats()
        if self._output.json:
            self._output.emit(render.summary_json(digest, lwlocks, **common))
        else:
            self._output.emit("\n" + render.digest_text(digest, lwlocks, width=self._output.width,
                                                        **common))

    def _lwlock_stats(self) -> list[LWLockStats]:
        """The internal-lock wait counts of the engines whose programs keep them."""
        server_pids: dict[str, list[int]] = {}  # by engine: one program counts for all its targets
        for target in self._trace.targets:
            server_pids.setdefault(target.db, []).extend(server.pid for server in target.servers)
        return [stats for db, pids in server_pids.items()
                for stats in engine_for(db).lwlock_waits(self._trace.collector, pids)]
