"""Following the host: which binaries to have attached, and each one's state.

Uprobes attach to a binary file, so the agent attaches once per binary file (its device and
inode) and that one attachment serves every server running the file, present and future.
A restart or a crash restart (the postmaster reinitialising after a backend was killed)
runs the same file: nothing to do but learn the new pids. A package upgrade puts a new
file at the same path: the servers restarted on it run a new inode, which is attached as
any new binary is, while the old one stays attached as long as a server still runs it.

Each binary goes through these states:

    attaching --(attached)--> attached --(no server, detach_after)--> detached
        |                        ^   \\--(reload changed tracing)--> attaching again,
        +--(failed)--> error ----+        the old program serving until the new is up
                       (retried after 1 s, 2 s, 4 s ... up to a minute)

A binary that cannot be traced stays in error and is retried while the others carry on.
Compiling a program takes seconds, so attaching and detaching run on a worker thread; the
main loop keeps draining the other programs meanwhile. A binary that servers already run
is first attached with the query family alone, which compiles several times faster, then
with every family: the second program replaces the first as a reload would.

Binaries of one build (containers of one image, a copied server tree) get the same
program, so once a binary is attached, a spare of its query program is compiled for the
next binary of the build (dbprobe.kernel.spares), whose statements are then traced within
a fraction of a second. The spare is compiled on the worker thread when no attach waits,
and again after one is taken.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Sequence

from dbprobe.agent.config import AgentConfig
from dbprobe.agent.servers import file_identity, server_id
from dbprobe.agent.traced import TracedBinary
from dbprobe.agent.stats import AgentStats, BinaryLabel
from dbprobe.discover.processes import ServerProcess, identify_binary
from dbprobe.discover.targets import Target
from dbprobe.errors import DbprobeError
from dbprobe.kernel.spares import SpareModules
from dbprobe.kernel.trace import Trace, TraceRequest
from dbprobe.recipes.load import load_recipe

ATTACHING, ATTACHED, ERROR = "attaching", "attached", "error"
# What a binary that servers already run is attached with first: the query family compiles
# in a fraction of the time all of them take, and the full program replaces it right after.
QUICK_FAMILIES = ("query",)
BINARY_STATES = (ATTACHING, ATTACHED, ERROR)
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0

Identity = tuple[int, int]


def retry_delay(failures: int) -> float:
    return min(FIRST_RETRY_S * 2 ** (failures - 1), MAX_RETRY_S)


@dataclass(frozen=True, slots=True)
class Attached:
    trace: Trace
    families: tuple[str, ...]
    seconds: float
    from_spare: bool = False  # a program compiled ahead for its build was attached


@dataclass(frozen=True, slots=True)
class SpareMade:
    label: BinaryLabel
    families: tuple[str, ...]
    seconds: float | None  # None: a spare of that program was held already


@dataclass(slots=True)
class Followed:
    """One binary file the agent has attached, is attaching, or failed to attach."""

    identity: Identity
    label: BinaryLabel
    target: Target
    watched: bool
    state: str = ATTACHING
    traced: TracedBinary | None = None
    job: Future | None = None
    error: str | None = None
    failures: int = 0
    retry_at: float = 0.0
    unused_since: float | None = None
    stale: bool = False  # attached with a configuration that has changed since

    @property
    def servers(self) -> tuple[ServerProcess, ...]:
        return self.target.servers


def label_of(target: Target) -> BinaryLabel:
    first = target.servers[0] if target.servers else None
    if first is None:
        return BinaryLabel(target.db, target.binary, "")
    return BinaryLabel(target.db, first.binary_in_root, first.container or "")


def matches(path: str, patterns: Sequence[str]) -> bool:
    """Whether a binary is followed: no patterns follow all; * matches / too."""
    return not patterns or any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def targets_of(servers: Iterable[ServerProcess]) -> dict[Identity, Target]:
    """The running servers grouped by the binary file they run."""
    groups: dict[Identity, list[ServerProcess]] = {}
    for server in servers:
        identity = file_identity(server.binary)
        if identity is not None:
            groups.setdefault(identity, []).append(server)
    targets = {}
    for identity, group in groups.items():
        first = group[0]
        root = "/" if first.binary == first.binary_in_root else f"/proc/{first.pid}/root"
        targets[identity] = Target(db=first.db, binary=first.binary, version=first.version,
                                   root=root, servers=tuple(group))
    return targets


def watched_targets(config: AgentConfig) -> dict[Identity, Target]:
    """The host's server binaries named by `watch` (and followed), whether or not they run."""
    targets = {}
    for pattern in config.watch:
        for path in sorted(glob.glob(pattern)):
            if not os.path.isfile(path) or not matches(path, config.binaries):
                continue
            identity = file_identity(path)
            db, version = identify_binary(path)
            if identity is not None and db in config.databases:
                targets.setdefault(identity, Target(db=db, binary=os.path.realpath(path),
                                                    version=version, root="/", servers=()))
    return targets


def watched_files(config: AgentConfig) -> frozenset[Identity]:
    """The identities of the files `watch` names now: cheap enough for every look, so an
    upgrade's new file is attached as soon as it is in place."""
    found = set()
    for pattern in config.watch:
        for path in glob.glob(pattern):
            identity = file_identity(path)
            if identity is not None:
                found.add(identity)
    return frozenset(found)


def families_for(db: str, wanted: Sequence[str]) -> tuple[str, ...]:
    known = load_recipe(db).families
    return tuple(family for family in wanted if family in known)


def request_for(target: Target, families: tuple[str, ...], config: AgentConfig) -> TraceRequest:
    return TraceRequest(families=families, databases=(target.db,),
                        thresholds_ns=config.kernel_thresholds_ns(),
                        breakdown=config.breakdown and "query" in families)


def open_trace(target: Target, families: tuple[str, ...], config: AgentConfig,
               spares: SpareModules | None = None) -> Attached:
    started = time.monotonic()
    trace = Trace.open_target(target, request_for(target, families, config), spares)
    return Attached(trace, families, time.monotonic() - started, trace.from_spare)


def prepare_spare(target: Target, families: tuple[str, ...], config: AgentConfig,
                  spares: SpareModules) -> float | None:
    """Compile a spare of the program `families` make for `target`'s build; the seconds it
    took, None when one was held already."""
    started = time.monotonic()
    made = Trace.prepare_spare(target, request_for(target, families, config), spares)
    return time.monotonic() - started if made else None


class Follower:
    def __init__(self, config: AgentConfig, stats: AgentStats,
                 make_traced: Callable[[Trace, BinaryLabel, tuple[str, ...]], TracedBinary],
                 log: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 opener: Callable[[Target, tuple[str, ...], AgentConfig], Attached] | None = None,
                 preparer: Callable[[Target, tuple[str, ...], AgentConfig], float | None] | None = None):
        self.config = config
        self.spares = SpareModules(limit=config.spare_programs)
        self._opener = opener or partial(open_trace, spares=self.spares)
        self._preparer = preparer or partial(prepare_spare, spares=self.spares)
        self._spares_wanted: dict[Identity, None] = {}  # binaries whose build wants a spare
        self._spare_job: Future | None = None
        self.binaries: dict[Identity, Followed] = {}
        self._stats = stats
        self._make_traced = make_traced
        self._log = log
        self._clock = clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbprobe-attach")
        self._closing: list[Future] = []
        self._watched: frozenset[Identity] = frozenset()

    def watch_changed(self) -> bool:
        """Whether a watched file appeared, went or was replaced since the last reconcile."""
        return watched_files(self.config) != self._watched

    # -- what should be attached -----------------------------------------------------------

    def reconcile(self, servers: Sequence[ServerProcess]) -> None:
        """Make the attached binaries follow `servers` (a scan) and the watched binaries."""
        now = self._clock()
        self._watched = watched_files(self.config)
        wanted = watched_targets(self.config)
        watched = set(wanted)
        wanted.update(targets_of(servers))
        for identity, target in wanted.items():
            followed = self.binaries.get(identity)
            if followed is None:
                followed = self.binaries[identity] = Followed(
                    identity, label_of(target), target, identity in watched)
                self._start(followed)
            followed.target = target
            followed.watched = identity in watched
            followed.unused_since = None
            _tell_servers(followed)
        for identity, followed in list(self.binaries.items()):
            if identity not in wanted:
                self._unused(followed, now)

    def _unused(self, followed: Followed, now: float) -> None:
        followed.target = Target(followed.target.db, followed.target.binary, followed.target.version,
                                 followed.target.root, servers=())
        _tell_servers(followed)
        if followed.unused_since is None:
            followed.unused_since = now
        # Unreachable is not replaced: a container's path goes with its server's pid.
        now_there = file_identity(followed.target.binary)
        replaced = now_there is not None and now_there != followed.identity
        if replaced or now - followed.unused_since >= self.config.detach_after_s:
            why = "its file was replaced or removed" if replaced else "no server runs it"
            self._detach(followed, why)

    # -- state changes ---------------------------------------------------------------------

    def _start(self, followed: Followed) -> None:
        """Submit an attach of `followed` (first time, retry or re-attach)."""
        families = families_for(followed.target.db, self.config.families)
        if not families:
            self._failed(followed, f"none of the families {', '.join(self.config.families)} "
                                   f"exists for {followed.target.db}")
            return
        if followed.traced is None:
            followed.state = ATTACHING
            if followed.servers and "query" in families:
                families = QUICK_FAMILIES  # statements traced within seconds; the rest follow
        followed.job = self._worker.submit(self._opener, followed.target, families, self.config)

    def poll(self) -> None:
        """Take the attaches that finished; retry the failed ones that are due."""
        now = self._clock()
        for followed in list(self.binaries.values()):
            if followed.unused_since is not None and now - followed.unused_since >= self.config.detach_after_s:
                self._detach(followed, "no server runs it")
                continue
            job = followed.job
            if job is not None and job.done():
                followed.job = None
                self._finished(followed, job)
            elif job is None and followed.state == ERROR and now >= followed.retry_at:
                self._start(followed)
            elif job is None and followed.stale and now >= followed.retry_at:
                followed.stale = False
                self._start(followed)
        self._closing = [job for job in self._closing if not job.done()]
        self._prepare_spare_when_idle(now)

    def _finished(self, followed: Followed, job: Future) -> None:
        try:
            attached: Attached = job.result()
        except DbprobeError as error:
            self._failed(followed, str(error))
            return
        except Exception as error:  # a bug must not take the other servers down
            self._failed(followed, f"{type(error).__name__}: {error}")
            return
        if self.binaries.get(followed.identity) is not followed:
            self._close_later(attached.trace)  # detached while it was attaching
            return
        previous = followed.traced
        followed.traced = self._make_traced(attached.trace, followed.label, attached.families)
        _tell_servers(followed)
        followed.state, followed.error, followed.failures = ATTACHED, None, 0
        stats = self._stats.binary(followed.label)
        stats.attaches += 1
        stats.spare_attaches += attached.from_spare
        stats.attach_seconds = attached.seconds
        if previous is None:
            stats.first_attach_seconds = attached.seconds
        stats.probes = attached.trace.probes_attached
        stats.families = attached.families
        plans = "; ".join(f"{plan.family.name} via {plan.mechanism}" for plan in attached.trace.plans)
        servers = ", ".join(f"pid {server.pid}" for server in followed.servers) or "no server yet"
        ready = " (a compiled program ready for this build)" if attached.from_spare else ""
        self._log(f"attached {followed.label.db} {followed.target.version or ''} "
                  f"{followed.target.binary} ({plans}) in {attached.seconds:.2f} s{ready}: "
                  f"{attached.trace.probes_attached} probes attached, serving {servers}")
        if previous is not None:
            self._retire(previous)
        if attached.families != families_for(followed.target.db, self.config.families):
            followed.stale, followed.retry_at = True, 0.0
        self._spares_wanted[followed.identity] = None

    # -- spares ----------------------------------------------------------------------------

    def _prepare_spare_when_idle(self, now: float) -> None:
        """Compile the next spare wanted, when the worker has no attach to do: an attach
        that comes meanwhile waits for that one compile at most."""
        if self._spare_job is not None:
            if not self._spare_job.done():
                return
            self._spare_finished(self._spare_job)
            self._spare_job = None
        while self._spares_wanted and not self._attach_due(now):
            identity = next(iter(self._spares_wanted))
            del self._spares_wanted[identity]
            followed = self.binaries.get(identity)
            if followed is None or followed.state != ATTACHED:
                continue
            families = self._spare_families(followed.target.db)
            if families:
                self._spare_job = self._worker.submit(self._prepare, followed.target, followed.label,
                                                      families, self.config)
                return

    def _spare_families(self, db: str) -> tuple[str, ...]:
        """The program a new server of this build needs first: statements (see _start)."""
        if not self.spares.limit:
            return ()
        families = families_for(db, self.config.families)
        return QUICK_FAMILIES if "query" in families else ()

    def _attach_due(self, now: float) -> bool:
        return any(followed.job is not None
                   or (followed.stale or followed.state == ERROR) and now >= followed.retry_at
                   for followed in self.binaries.values())

    def _prepare(self, target: Target, label: BinaryLabel, families: tuple[str, ...],
                 config: AgentConfig) -> SpareMade:
        return SpareMade(label, families, self._preparer(target, families, config))

    def _spare_finished(self, job: Future) -> None:
        try:
            made: SpareMade = job.result()
        except Exception as error:  # no spare: the next binary of the build compiles its own
            self._log(f"cannot compile a spare program: {error}")
            return
        if made.seconds is not None:
            self._log(f"compiled a spare {'+'.join(made.families)} program for the next binary of the "
                      f"build of {made.label.path} in {made.seconds:.2f} s")

    def _failed(self, followed: Followed, reason: str) -> None:
        followed.failures += 1
        delay = retry_delay(followed.failures)
        followed.retry_at = self._clock() + delay
        self._stats.binary(followed.label).attach_errors += 1
        if followed.traced is not None:
            self._log(f"cannot re-attach {followed.target.binary}: {reason}; the previous "
                      f"program goes on, retrying in {delay:g} s")
            followed.stale = True  # retried at retry_at
            return
        if reason != followed.error:
            self._log(f"cannot trace {followed.label.db} at {followed.target.binary}: {reason}; "
                      f"retrying in {delay:g} s, and with backoff after that")
        followed.state, followed.error = ERROR, reason

    def _detach(self, followed: Followed, why: str) -> None:
        del self.binaries[followed.identity]
        if followed.traced is not None:
            self._log(f"detaching from {followed.target.binary}: {why}")
            self._retire(followed.traced)
        if followed.job is not None:
            followed.job.add_done_callback(_close_result)

    def _retire(self, traced: TracedBinary) -> None:
        try:
            traced.finish()
        finally:
            self._close_later(traced.trace)

    def _close_later(self, trace: Trace) -> None:
        self._closing.append(self._worker.submit(trace.close))

    # -- reload and exit -------------------------------------------------------------------

    def reconfigure(self, config: AgentConfig) -> None:
        """A new configuration; the programs are rebuilt when it changes what they trace."""
        rebuild = self.config.tracing_differs(config)
        if rebuild or config.spare_programs != self.spares.limit:
            # After the spare being compiled, if one is: the worker runs in order.
            self._closing.append(self._worker.submit(self.spares.clear))
            self._spares_wanted.update(dict.fromkeys(self.binaries))
        self.spares.limit = config.spare_programs
        self.config = config
        for followed in self.binaries.values():
            if followed.traced is not None:
                followed.traced.config = config
            if rebuild and followed.traced is not None:
                followed.stale, followed.retry_at = True, 0.0
            elif rebuild and followed.state == ERROR:
                followed.retry_at = 0.0

    def traced(self) -> list[TracedBinary]:
        return [followed.traced for followed in self.binaries.values() if followed.traced is not None]

    def close(self) -> None:
        """Detach everything, waiting for the attaches under way to finish first."""
        for followed in list(self.binaries.values()):
            self._detach(followed, "the agent stops")
        self.spares.close()  # a spare being compiled is closed when it is done
        self._worker.shutdown(wait=True)
        for job in self._closing:
            if job.exception() is not None:
                self._log(f"detaching failed: {job.exception()}")
        self._closing = []


def _tell_servers(followed: Followed) -> None:
    """The traced binary learns which servers run it now (records of a pid no scan has
    named yet go to the only one, if there is only one)."""
    if followed.traced is not None:
        followed.traced.server_ids = tuple(server_id(server) for server in followed.servers)
        followed.traced.trace.add_servers(followed.servers)


def _close_result(job: Future) -> None:
    """Close the trace of an attach whose binary was dropped while it compiled."""
    try:
        attached = job.result()
    except Exception:
        return
    attached.trace.close()
