"""One trace from attach to detach: the set-up every tracing command shares.

``Trace.open`` checks the machine, picks the targets, binds the recipes to each binary
(parsed once), compiles one program and attaches it; if any step fails, whatever was
attached is detached before the error surfaces. ``close`` detaches everything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from dbprobe.binary.elf import ElfBinary
from dbprobe.discover.backends import BackendDirectory, DatabaseNames, ServerFiles
from dbprobe.discover.processes import ServerProcess
from dbprobe.discover.targets import Target, choose_targets
from dbprobe.engines.postgresql.catalog import database_name_in_files
from dbprobe.errors import DbprobeError
from dbprobe.kernel import btf, preflight
from dbprobe.kernel.attach import Attachment, remove_stale_events
from dbprobe.kernel.classhash import install_class_counter
from dbprobe.kernel.maps import Collector
from dbprobe.kernel.program import DEFAULT_RINGBUF_BYTES, Parameters, TraceProgram, build_program
from dbprobe.kernel.spares import SpareModules
from dbprobe.model import Source
from dbprobe.recipes.bind import FamilyPlan, plan_family, require_plan
from dbprobe.recipes.load import load_recipe
from dbprobe.render.output import status


@dataclass(frozen=True, slots=True)
class TraceRequest:
    families: tuple[str, ...]  # report families: "query", ...
    databases: tuple[str, ...]  # which servers the report is for
    pid: int | None = None
    binary: str | None = None
    thresholds_ns: Mapping[str, int] = field(default_factory=dict)  # by family
    ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES  # the kernel's buffer of records for user space
    breakdown: bool = False  # where each slow statement's time went (CPU, I/O, waits)
    wait_profile: bool = False  # every traced thread's off-CPU time per wait event


@dataclass(frozen=True, slots=True)
class BoundTarget:
    """A target with its binary parsed and its families' recipes bound to it."""

    target: Target
    binary: ElfBinary
    plans: tuple[FamilyPlan, ...]


class Trace:
    """Programs compiled and attached to the targets' binaries; close() detaches.

    Records reach the handler registered with on() for their type, as the loop polls them.
    """

    def __init__(self, bound: Sequence[BoundTarget], program: TraceProgram, attachment: Attachment,
                 from_spare: bool = False):
        self.from_spare = from_spare  # its module was compiled ahead, for another binary
        self.targets = [entry.target for entry in bound]
        self.plans = [plan for entry in bound for plan in entry.plans]
        by_binary = {entry.target.binary: entry.target for entry in bound}
        self.sources = {hook.hook_id: Source(by_binary[hook.binary].db, hook.binary, hook.mechanism)
                        for hook in program.hooks}
        self.versions = {hook.hook_id: by_binary[hook.binary].version for hook in program.hooks}
        self.backends = BackendDirectory()
        self.databases = DatabaseNames()
        self.probes_attached = attachment.attached
        self._attachment = attachment
        self._handlers: dict[type, list[Callable[[Any], None]]] = {}
        self.collector = Collector(attachment.bpf, self._deliver)
        self.started = time.time()  # the reports' windows begin once probes are live

    @classmethod
    def open(cls, request: TraceRequest, warn: Callable[[str], None] = status) -> "Trace":
        preflight.require_tracing_ready()
        return cls._attach_bound(_bind_targets(request, warn), request)

    @classmethod
    def open_target(cls, target: Target, request: TraceRequest,
                    spares: SpareModules | None = None) -> "Trace":
        """One trace of a target chosen by the caller (the agent follows binaries itself);
        the request's families and thresholds apply, its pid and binary are not used. A
        spare of the same program in `spares` is attached instead of compiling one."""
        preflight.require_tracing_ready()
        return cls._attach_bound([_bind(target, request.families)], request, spares)

    @classmethod
    def prepare_spare(cls, target: Target, request: TraceRequest, spares: SpareModules) -> bool:
        """Compile a spare of the program open_target would attach to `target`, for the next
        binary of its build; False when `spares` holds one already."""
        return spares.prepare(_build([_bind(target, request.families)], request))

    @classmethod
    def _attach_bound(cls, bound: Sequence[BoundTarget], request: TraceRequest,
                      spares: SpareModules | None = None) -> "Trace":
        program = _build(bound, request)
        _remove_stale_events()
        spare = spares.take(program) if spares is not None else None
        attachment = (Attachment(spare) if spare is not None
                      else Attachment.compile(program.source, program.cflags))
        try:
            install_class_counter(attachment.bpf)
            for entry in bound:
                seed_servers(attachment.bpf, entry.target.servers)
            if request.pid is not None:
                _seed_traced_pids(attachment, bound[0].target)
            attachment.attach(program.hooks)
            trace = cls(bound, program, attachment, from_spare=spare is not None)
            trace._learn_database_names(bound)
        except BaseException:
            attachment.close()
            raise
        return trace

    def _learn_database_names(self, bound: Sequence[BoundTarget]) -> None:
        for entry in bound:
            symbol = load_recipe(entry.target.db).database_oid_global
            if symbol:
                self.databases.learn_from_running(entry.binary, symbol, entry.target.processes)
                # Only PostgreSQL's recipes name a global of database OIDs.
                self.databases.add_lookup(str(entry.binary.path),
                                          ServerFiles(entry.target, database_name_in_files))

    @property
    def counts_classes(self) -> bool:
        """Whether the program counts every statement by class (the query families do)."""
        return self._attachment.has_table("classes")

    def add_servers(self, servers: Sequence[ServerProcess]) -> None:
        """Servers (re)started on a traced binary: the kernel learns which processes are
        theirs, so their statements are counted under them."""
        if self.counts_classes:
            seed_servers(self._attachment.bpf, servers)

    def on(self, record_type: type, handler: Callable[[Any], None]) -> None:
        """Call `handler` with every record of this type, after those registered before."""
        self._handlers.setdefault(record_type, []).append(handler)

    def _deliver(self, record) -> None:
        for handler in self._handlers.get(type(record), ()):
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


def _bind_targets(request: TraceRequest, warn: Callable[[str], None]) -> list[BoundTarget]:
    """Every target bound to its recipes. When dbprobe looks for servers itself, one that
    cannot be traced is a warning naming it, and the others are traced; a server asked for
    (-p, --binary), or the last one left, is an error."""
    targets = choose_targets(pid=request.pid, binary=request.binary, databases=request.databases,
                             warn=warn)
    asked_for = request.pid is not None or request.binary is not None
    bound, failures = [], []
    for target in targets:
        try:
            bound.append(_bind(target, request.families))
        except DbprobeError as error:
            if asked_for:
                raise
            failures.append(f"{target.label} is not traced: {error}")
    if not bound:
        raise DbprobeError("; ".join(failures))
    for failure in failures:
        warn(failure)
    return bound


def _build(bound: Sequence[BoundTarget], request: TraceRequest) -> TraceProgram:
    """The one program of the bound targets' plans, with the request's parameters."""
    parameters = Parameters(thresholds_ns=request.thresholds_ns, filter_pids=request.pid is not None,
                            ringbuf_bytes=request.ringbuf_bytes, breakdown=request.breakdown,
                            wait_profile=request.wait_profile,
                            task_pid_offset=_task_pid_offset(request))
    return build_program([plan for entry in bound for plan in entry.plans], parameters)


def _bind(target: Target, families: Sequence[str]) -> BoundTarget:
    recipe = load_recipe(target.db)
    binary = target.open_binary()
    plans = tuple(require_plan(plan_family(recipe, family, binary, target.version), target.db)
                  for family in families)
    return BoundTarget(target, binary, plans)


def _remove_stale_events() -> None:
    removed = remove_stale_events()
    if removed:
        status(f"removed {len(removed)} uprobe event{'s' if len(removed) > 1 else ''} that dbprobe "
               f"processes left in tracefs when they died: {', '.join(removed)}")


def seed_servers(bpf, servers: Sequence[ServerProcess]) -> None:
    """Tell the kernel which server each running process belongs to (server_of): counts
    kept per server name it by its main process. Processes forked later join at fork."""
    table = bpf["server_of"]
    for server in servers:
        for pid in server.processes:
            table[table.Key(pid)] = table.Leaf(server.pid)


def _task_pid_offset(request: TraceRequest) -> int | None:
    """Where the running kernel keeps a task's pid: the fork and scheduler probes read it."""
    return btf.member_offset("task_struct", "pid")


def _seed_traced_pids(attachment: Attachment, target: Target) -> None:
    table = attachment.bpf["traced_pids"]
    for pid in target.processes:
        table[table.Key(pid)] = table.Leaf(1)


def _probe_names(plan: FamilyPlan) -> str:
    # USDT labels are provider:name; a uprobe's label is its function, C++ scope and all.
    names = (site.label.partition(":")[2] if site.mechanism == "usdt" else site.label
             for site in plan.sites)
    return ", ".join(dict.fromkeys(names))
