"""The agent's loop: follow the host, drain every program, serve metrics, until SIGTERM.

One thread does the work: it looks for servers starting and stopping (a cheap look twice
a second, a full discovery when it sees a change and every half minute), drains each
program's ring buffer without waiting, ticks the lock trackers, reads the kernel's counters
once a second, and writes events. A worker thread compiles and attaches (``follow``);
prometheus_client's HTTP thread renders the counts on each scrape. SIGHUP reloads the
configuration; SIGTERM or SIGINT stops, detaching everything.
"""

from __future__ import annotations

import os
import select
import signal
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from prometheus_client import start_http_server

from dbprobe.agent.config import AgentConfig, Listen, describe, load_config
from dbprobe.agent.events import EventSink
from dbprobe.agent.follow import ATTACHING, Follower, matches
from dbprobe.agent.metrics import AgentCollector, AgentView, BinaryView, ServerView, registry_for
from dbprobe.agent.scan import ProcessWatch
from dbprobe.agent.servers import FORGET_AFTER_S, GONE, ServerDirectory
from dbprobe.agent.traced import TracedBinary
from dbprobe.agent.stats import AgentStats, BinaryLabel
from dbprobe.discover.processes import ServerProcess, find_servers
from dbprobe.errors import DbprobeError
from dbprobe.kernel import preflight
from dbprobe.kernel.trace import Trace
from dbprobe.render.text import terminal_safe

POLL_S = 0.1
LOOK_EVERY_S = 0.5
SCAN_EVERY_S = 30.0
RESCAN_AT_MOST_EVERY_S = 0.5
REFRESH_EVERY_S = 1.0


class Log:
    """Messages on stderr, written through a descriptor of their own: BCC captures fd 2
    while it compiles on the worker thread, and the messages of that time must not go."""

    def __init__(self) -> None:
        self._stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")

    def __call__(self, message: str) -> None:
        try:
            self._stream.write(f"dbprobe: agent: {terminal_safe(message)}\n")
        except (OSError, ValueError):
            pass  # nowhere to say it; the agent's work goes on


class Exporter:
    """prometheus_client's HTTP server on one address."""

    def __init__(self, listen: Listen, registry) -> None:
        try:
            self._server, self._thread = start_http_server(listen.port, listen.host, registry)
        except OSError as error:
            raise DbprobeError(f"cannot listen on {listen}: {error.strerror or error}") from None
        host, port = self._server.server_address[:2]
        self.address = Listen(host, port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class Signals:
    """SIGTERM and SIGINT ask the loop to stop, SIGHUP to reload; each wakes its wait."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)

    def wait(self, seconds: float) -> None:
        if select.select([self._read], [], [], max(seconds, 0.0))[0]:
            try:
                os.read(self._read, 512)
            except BlockingIOError:
                pass

    @contextmanager
    def handled(self) -> Iterator[None]:
        def on_stop(_number, _frame) -> None:
            self.stop = True

        def on_reload(_number, _frame) -> None:
            self.reload = True

        previous = {number: signal.signal(number, handler) for number, handler in
                    ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_reload))}
        wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(wakeup)
            for number, handler in previous.items():
                signal.signal(number, handler)
            os.close(self._read)
            os.close(self._write)


class Agent:
    def __init__(self, config: AgentConfig, *, config_path: str | None, listen_flag: str | None,
                 events_flag: str | None, log: Callable[[str], None]):
        self.config = config
        self._config_path = config_path
        self._flags = {"listen": listen_flag, "events": events_flag}
        self._log = log
        self.stats = AgentStats(top_k=config.top_k)
        self.servers = ServerDirectory()
        self.follower = Follower(config, self.stats, self._new_traced, log)
        self._watch = ProcessWatch()
        self._sink: EventSink | None = None
        self._exporter: Exporter | None = None
        self._registry = registry_for(AgentCollector(self.stats.lock, self._view))
        self._next_look = self._next_scan = self._next_refresh = 0.0
        self._scan_asked_at: float | None = None
        self._last_scan = -RESCAN_AT_MOST_EVERY_S
        self._failures_said: set[str] = set()

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        signals = Signals()
        with signals.handled():
            self._sink = EventSink(self.config.events, self._log)
            try:
                self._exporter = Exporter(self.config.listen, self._registry)
                self._log(f"serving metrics on http://{self._exporter.address}/metrics; "
                          f"{describe(self.config)}")
                while not signals.stop:
                    if signals.reload:
                        signals.reload = False
                        self._reload()
                    with self.stats.lock:
                        self._step(time.monotonic())
                    signals.wait(POLL_S)
                self._log("stopping: detaching every program")
            finally:
                self._shut_down()
        return 0

    def _step(self, now: float) -> None:
        if now >= self._next_look:
            self._next_look = now + LOOK_EVERY_S
            if self._watch.changed() or self.follower.watch_changed():
                self._scan_asked_at = now
        due = self._scan_asked_at is not None and now - self._last_scan >= RESCAN_AT_MOST_EVERY_S
        if due or now >= self._next_scan:
            self._scan(now)
        self.follower.poll()
        for traced in self.follower.traced():
            self._guarded(traced, traced.consume)
            self._guarded(traced, lambda: traced.tick(time.time()))
        if now >= self._next_refresh:
            self._next_refresh = now + REFRESH_EVERY_S
            for traced in self.follower.traced():
                self._guarded(traced, traced.refresh)
            self._forget_binaries(now)
        if self._sink is not None:
            self._sink.flush()

    def _guarded(self, traced: TracedBinary, work: Callable[[], None]) -> None:
        """A failure in one program's records is said once; the others go on."""
        try:
            work()
        except Exception as error:
            message = f"{traced.label.path}: {type(error).__name__}: {error}"
            if message not in self._failures_said:
                self._failures_said.add(message)
                self._log(f"error while reading {message}")

    def _scan(self, now: float) -> None:
        self._scan_asked_at = None
        self._last_scan = now
        self._next_scan = now + SCAN_EVERY_S
        try:
            found = [server for server in find_servers() if self._follows(server)]
        except Exception as error:
            self._log(f"cannot list the host's servers: {error}")
            return
        self.stats.scans += 1
        started, stopped = self.servers.update(found)
        for known in started:
            self._log(f"{known.db} server {known.id}: running, pid {known.process.pid}")
        for known in stopped:
            self._log(f"{known.db} server {known.id}: stopped (pid {known.process.pid})")
        self.servers.forget_pids(self._watch.pids)
        self.stats.forget_servers(set(self.servers.servers))
        self.follower.reconcile(found)
        for traced in self.follower.traced():
            self._guarded(traced, traced.scanned)

    def _follows(self, server: ServerProcess) -> bool:
        return server.db in self.config.databases and matches(server.binary_in_root, self.config.binaries)

    def request_scan(self) -> None:
        if self._scan_asked_at is None:
            self._scan_asked_at = time.monotonic()

    def _new_traced(self, trace: Trace, label: BinaryLabel, families: tuple[str, ...]) -> TracedBinary:
        return TracedBinary(trace, label, families, config=self.config, stats=self.stats,
                       servers=self.servers, sink=self._sink, request_scan=self.request_scan)

    def _forget_binaries(self, now: float) -> None:
        followed = {followed.label for followed in self.follower.binaries.values()}
        for label, stats in list(self.stats.binaries.items()):
            if label in followed:
                stats.idle_since = None
            elif stats.idle_since is None:
                stats.idle_since = now
            elif now - stats.idle_since >= FORGET_AFTER_S:
                del self.stats.binaries[label]

    # -- reload and exit -------------------------------------------------------------------

    def _reload(self) -> None:
        if self._config_path is None:
            with self.stats.lock:
                self._sink.reopen(self.config.events)
            self._log("SIGHUP: no --config to reload; events file reopened")
            return
        try:
            config = load_config(self._config_path, **self._flags)
            exporter = self._exporter
            if config.listen != self.config.listen:
                exporter = Exporter(config.listen, self._registry)
        except DbprobeError as error:
            with self.stats.lock:
                self.stats.reloads["failure"] += 1
                self.stats.last_reload_ok = False
            self._log(f"reload refused, the running configuration stays: {error}")
            return
        if exporter is not self._exporter:
            self._exporter.close()
            self._exporter = exporter
            self._log(f"serving metrics on http://{exporter.address}/metrics")
        with self.stats.lock:
            try:
                self._sink.reopen(config.events)
            except DbprobeError as error:
                self._log(f"{error}; events are not written until the next reload")
            self.stats.set_top_k(config.top_k)
            self.follower.reconfigure(config)
            self.config = config
            self.stats.reloads["success"] += 1
            self.stats.last_reload_ok = True
            self._scan_asked_at = time.monotonic()
        self._log(f"configuration reloaded from {self._config_path}: {describe(config)}")

    def _shut_down(self) -> None:
        started = self._exporter is not None
        if started:
            self._exporter.close()
        self.follower.close()
        if self._sink is not None:
            self._sink.close()
        if started:  # a start refused is its one line of error, nothing more
            self._log("stopped; nothing is left attached")

    # -- what a scrape shows ---------------------------------------------------------------

    def _view(self) -> AgentView:
        servers = []
        for known in self.servers.servers.values():
            followed = self.follower.binaries.get(known.identity) if known.identity else None
            state = GONE if not known.running else (followed.state if followed else ATTACHING)
            process = known.process
            families = followed.traced.families if followed and followed.traced else ()
            servers.append(ServerView(known.id, known.db, state, process.pid, process.version,
                                      process.port, process.container or "", process.binary_in_root,
                                      families))
        binaries = [BinaryView(followed.label, followed.state) for followed in self.follower.binaries.values()]
        return AgentView(self.stats, servers, binaries, dict(self.config.thresholds_ns), self.config.top_k,
                         spares=len(self.follower.spares))


def run_agent(config_path: str | None, listen: str | None, events: str | None) -> int:
    config = load_config(config_path, listen=listen, events=events)
    # A machine that cannot trace at all (no root, no BCC, no tracefs) is one line at start,
    # not an error state retried for every server.
    preflight.require_tracing_ready()
    return Agent(config, config_path=config_path, listen_flag=listen, events_flag=events,
                 log=Log()).run()

