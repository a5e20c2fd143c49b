"""The trace loop: poll the ring buffer until Ctrl-C, SIGTERM, SIGHUP or the duration ends,
call the reports' interval and tick hooks, and keep an eye on the traced servers: one that
stops is reported, and tracing goes on; one restarted on a replaced binary (a new file at
the same path) is attached to."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import psutil

from dbprobe.discover.files import FileIdentity
from dbprobe.discover.processes import ServerProcess
from dbprobe.discover.replaced import BinaryWatch, restart_path
from dbprobe.discover.targets import Target
from dbprobe.engines.registry import engine_for
from dbprobe.kernel.maps import KernelTotals
from dbprobe.kernel.reattach import Reattacher
from dbprobe.kernel.traceset import TraceSet
from dbprobe.render.output import flush_stdout

POLL_MS = 200
LIVENESS_SECONDS = 1.0
LOSS_WARNING_EVERY_S = 10.0

# Signals that stop a trace cleanly, with its digest. One ignored when dbprobe started stays
# ignored: nohup (SIGHUP) and a background job of a script (SIGINT) mean it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ServerWatch:
    """Notices traced servers that stop, once each, and servers restarted on a replaced
    binary, which the reattacher attaches to (under -p: only the traced server, restarted,
    which keeps its data directory)."""

    def __init__(self, targets: Sequence[Target], warn: Callable[[str], None], filtered: bool,
                 reattacher: Reattacher):
        self._servers = {server.pid: server for target in targets for server in target.servers}
        wanted = _restarts_of(list(self._servers.values())) if filtered else _any_server
        self._binaries = BinaryWatch(targets, wanted=wanted)
        self.warn = warn
        self._filtered = filtered
        self._reattacher = reattacher
        self._next_check = 0.0

    def check(self, now: float) -> None:
        self._reattacher.poll()
        if now < self._next_check:
            return
        self._next_check = now + LIVENESS_SECONDS
        changes = self._binaries.check()
        for message in changes.messages:
            self.warn(message)
        for server in changes.untraced:
            self._servers[server.pid] = server
            self._reattacher.follow(server)
        for pid, server in list(self._servers.items()):
            if psutil.pid_exists(pid):
                continue
            del self._servers[pid]
            self._binaries.scan_soon()  # it may be started again on a replaced binary
            self.warn(f"{engine_for(server.db).display_name} server pid {pid} stopped; still "
                      f"tracing ({self._after_stop(server)})")

    def traced_now(self, db: str, path: str, file: FileIdentity) -> None:
        """A program is attached to the new file at `path`: its servers are traced."""
        self._binaries.traced_now(db, path, file)

    def _after_stop(self, server: ServerProcess) -> str:
        if self._binaries.restart_is_traced(server) is False:
            return (f"{restart_path(server)} was replaced on disk: a server started again from "
                    f"it runs the new file, which is not traced until dbprobe has attached to it")
        if self._filtered:
            return "a restarted server has a new pid: run dbprobe again to follow it"
        return "a server started again from the same binary is traced as it starts"


def _any_server(server: ServerProcess) -> bool:
    return True


def _restarts_of(servers: Sequence[ServerProcess]) -> Callable[[ServerProcess], bool]:
    """Whether a server is one of `servers` started again: the same data directory (and
    container), known. Another cluster of the same binary is not what -p asked for."""
    known = {(server.container, server.data_dir) for server in servers if server.data_dir}
    return lambda server: server.data_dir is not None and (server.container, server.data_dir) in known


class LossWatch:
    """Says on stderr, while it happens, that the ring buffer dropped events: at most once
    every LOSS_WARNING_EVERY_S, with how many were lost since the last warning."""

    def __init__(self, read_totals: Callable[[], KernelTotals], warn: Callable[[str], None]):
        self._read_totals = read_totals
        self._warn = warn
        self._warned_lost = 0
        self._next_check = 0.0

    def check(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + LOSS_WARNING_EVERY_S
        lost = self._read_totals().lost
        if lost > self._warned_lost:
            self._warn(f"warning: {lost - self._warned_lost:,} events lost in the last "
                       f"{LOSS_WARNING_EVERY_S:g} s (the ring buffer was full): the digests still "
                       f"count every statement; raise --threshold to see each slow one")
            self._warned_lost = lost


class StopRequested:
    """Set by SIGINT, SIGTERM or SIGHUP; the poll loop checks it between waits."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequested]:
    stop = StopRequested()

    def request(number, _frame) -> None:
        stop.signal = number

    previous = {number: signal.signal(number, request) for number in STOP_SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(trace: TraceSet, *, duration_s: float | None, interval_s: float | None,
        on_interval: Callable[[], None], stop: StopRequested, watch: ServerWatch,
        on_tick: Callable[[], None] | None = None) -> None:
    """Poll records until stopped; call on_interval every interval_s seconds, on_tick after
    every poll (at least every POLL_MS)."""
    losses = LossWatch(trace.collector.totals, watch.warn)
    deadline = time.monotonic() + duration_s if duration_s else None
    next_interval = time.monotonic() + interval_s if interval_s else None
    while not stop:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        wait = min([POLL_MS / 1000] + [t - now for t in (deadline, next_interval) if t is not None])
        trace.collector.poll(max(int(wait * 1000), 0))
        flush_stdout()  # once per batch of records: a write per line would cost more
        now = time.monotonic()
        if next_interval is not None and now >= next_interval:
            on_interval()
            next_interval += interval_s
        watch.check(now)
        losses.check(now)
        if on_tick is not None:
            on_tick()
    trace.collector.drain()
    flush_stdout()
