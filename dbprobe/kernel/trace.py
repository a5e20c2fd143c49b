"""One trace from attach to detach: the lifecycle every tracing command shares.

``Trace`` checks the machine, picks the targets, binds the recipes, compiles and attaches;
if any step fails, whatever was attached is detached before the error surfaces. ``run``
polls until Ctrl-C, SIGTERM, SIGHUP or the duration ends, and keeps an eye on the traced
servers: one that stops is reported, and tracing goes on.
"""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import psutil

from dbprobe.kernel import preflight
from dbprobe.kernel.attach import Attachment
from dbprobe.discover.backends import BackendDirectory, DatabaseNames
from dbprobe.kernel.maps import Collector
from dbprobe.errors import DbprobeError
from dbprobe.model import Source
from dbprobe.recipes.bind import FamilyPlan, plan_family, require_plan
from dbprobe.kernel.program import DEFAULT_RINGBUF_BYTES, Parameters, build_program
from dbprobe.recipes.load import load_recipe
from dbprobe.discover.targets import Target, choose_targets

POLL_MS = 200
LIVENESS_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class TraceRequest:
    families: tuple[str, ...]  # report families: "query", ...
    databases: tuple[str, ...]  # which servers the report is for
    pid: int | None = None
    binary: str | None = None
    thresholds_ns: Mapping[str, int] = field(default_factory=dict)  # by family
    ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES  # the kernel's buffer of records for user space


class Trace:
    """Programs compiled and attached to the targets' binaries; close() detaches.

    Records reach the handler registered with on() for their type, as poll() delivers them.
    """

    def __init__(self, request: TraceRequest):
        preflight.require_tracing_ready()
        self.targets = choose_targets(pid=request.pid, binary=request.binary,
                                      databases=request.databases)
        self.plans = [plan for target in self.targets for plan in _plans_for(target, request.families)]
        parameters = Parameters(thresholds_ns=request.thresholds_ns, filter_pids=request.pid is not None,
                                ringbuf_bytes=request.ringbuf_bytes)
        program = build_program(self.plans, parameters)
        self.sources = {hook.hook_id: Source(self._target_of(hook.binary).db, hook.binary, hook.mechanism)
                        for hook in program.hooks}
        self.versions = {hook.hook_id: self._target_of(hook.binary).version for hook in program.hooks}
        self.backends = BackendDirectory()
        self.databases = DatabaseNames()
        self._handlers: dict[type, Callable[[Any], None]] = {}
        self._attachment = Attachment(program.source, program.cflags)
        try:
            if parameters.filter_pids:
                self._seed_traced_pids()
            self.probes_attached = self._attachment.attach(program.hooks)
            self.collector = Collector(self._attachment.bpf, self._deliver)
            self.started = time.time()  # the reports' windows begin once probes are live
            self._learn_database_names()
        except BaseException:
            self._attachment.close()
            raise

    def _target_of(self, binary: str) -> Target:
        return next(target for target in self.targets if target.binary == binary)

    def _seed_traced_pids(self) -> None:
        table = self._attachment.bpf["traced_pids"]
        for pid in self.targets[0].processes:
            table[table.Key(pid)] = table.Leaf(1)

    def _learn_database_names(self) -> None:
        for target in self.targets:
            symbol = load_recipe(target.db).database_oid_global
            if symbol:
                self.databases.learn_from_running(target.open_binary(), symbol, target.processes)

    def on(self, record_type: type, handler: Callable[[Any], None]) -> None:
        self._handlers[record_type] = handler

    def _deliver(self, record) -> None:
        handler = self._handlers.get(type(record))
        if handler is not None:
            handler(record)

    def close(self) -> None:
        self._attachment.close()

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> list[str]:
        """What was attached, for the startup message."""
        lines = []
        for target in self.targets:
            servers = ", ".join(f"pid {server.pid} ({len(server.processes)} processes"
                                + (f", container {server.container}" if server.container else "") + ")"
                                for server in target.servers) or "no server running yet"
            lines.append(f"{target.db} {target.version or '(version unknown)'}: {servers}")
            for plan in self.plans:
                if plan.binary == target.binary:
                    lines.append(f"  {plan.family.name}: {plan.binary} via {plan.why}, "
                                 f"{len(plan.sites)} probes ({_probe_names(plan)})")
        return lines


def _plans_for(target: Target, families: Sequence[str]) -> list[FamilyPlan]:
    recipe = load_recipe(target.db)
    binary = target.open_binary()
    return [require_plan(plan_family(recipe, family, binary, target.version), target.db)
            for family in families]


def _probe_names(plan: FamilyPlan) -> str:
    # USDT labels are provider:name; a uprobe's label is its function, C++ scope and all.
    names = (site.label.partition(":")[2] if site.mechanism == "usdt" else site.label
             for site in plan.sites)
    return ", ".join(dict.fromkeys(names))


class ServerWatch:
    """Notices traced servers that stop, once each."""

    def __init__(self, targets: Sequence[Target], warn: Callable[[str], None], filtered: bool):
        self._servers = {server.pid: server for target in targets for server in target.servers}
        self._warn = warn
        self._filtered = filtered
        self._next_check = 0.0

    def check(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + LIVENESS_SECONDS
        for pid, server in list(self._servers.items()):
            if psutil.pid_exists(pid):
                continue
            del self._servers[pid]
            then = ("a restarted server has a new pid: run dbprobe again to follow it" if self._filtered
                    else "a server started again from the same binary is traced as it starts")
            self._warn(f"{server.db} server pid {pid} stopped; still tracing ({then})")


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

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, request) for number in handled}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(trace: Trace, *, duration_s: float | None, interval_s: float | None,
        on_interval: Callable[[], None], stop: StopRequested, watch: ServerWatch,
        on_tick: Callable[[], None] | None = None) -> None:
    """Poll records until stopped; call on_interval every interval_s seconds, on_tick after
    every poll (at least every POLL_MS)."""
    deadline = time.monotonic() + duration_s if duration_s else None
    next_interval = time.monotonic() + interval_s if interval_s else None
    while not stop:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        wait = min([POLL_MS / 1000] + [t - now for t in (deadline, next_interval) if t is not None])
        trace.collector.poll(max(int(wait * 1000), 0))
        sys.stdout.flush()  # once per batch of records: a write per line would cost more
        now = time.monotonic()
        if next_interval is not None and now >= next_interval:
            on_interval()
            next_interval += interval_s
        watch.check(now)
        if on_tick is not None:
            on_tick()
    trace.collector.drain()
    sys.stdout.flush()


def status(message: str) -> None:
    print(f"dbprobe: {message}", file=sys.stderr, flush=True)


def require_positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise DbprobeError(f"{option} must be more than zero")
