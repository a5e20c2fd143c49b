"""Who a backend is: its database, user and container pid, looked up once and kept.

Only events that reach user space ask, so this reads ``/proc`` at most once per backend
and refreshes an entry when its process turns out to have been replaced (pid reuse).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import psutil

from dbprobe.discover.files import file_identity
from dbprobe.discover.processes import BackendInfo, backend_info, find_servers, ns_pid_of
from dbprobe.discover.targets import Target
from dbprobe.binary.elf import ElfBinary
from dbprobe.errors import DbprobeError
from dbprobe.discover.memory import load_bias, read_u32

RECHECK_SECONDS = 2.0
LOOKUP_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Backend:
    pid: int
    started: float | None  # process creation time; None when the process is gone
    info: BackendInfo | None
    ns_pid: int | None


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class BackendDirectory:
    """Backend identities by pid, valid as long as the process with that pid is the same."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 started: Callable[[int], float | None] = _process_started,
                 describe: Callable[[int], BackendInfo | None] = backend_info,
                 ns_pid: Callable[[int], int | None] = ns_pid_of):
        self._clock = clock
        self._started = started
        self._describe = describe
        self._ns_pid = ns_pid
        self._entries: dict[int, tuple[Backend, float]] = {}

    def lookup(self, pid: int) -> Backend:
        entry = self._entries.get(pid)
        now = self._clock()
        if entry is not None:
            backend, checked = entry
            if now - checked < RECHECK_SECONDS:
                return backend
            if backend.started is not None and self._started(pid) == backend.started:
                self._entries[pid] = (backend, now)
                return backend
        backend = self._read(pid)
        self._entries[pid] = (backend, now)
        return backend

    def _read(self, pid: int) -> Backend:
        started = self._started(pid)
        if started is None:  # gone already: the event outlived its backend
            return Backend(pid=pid, started=None, info=None, ns_pid=None)
        try:
            return Backend(pid=pid, started=started, info=self._describe(pid),
                           ns_pid=self._ns_pid(pid))
        except DbprobeError:  # it exited while being read
            return Backend(pid=pid, started=None, info=None, ns_pid=None)

    def forget(self, pid: int) -> None:
        self._entries.pop(pid, None)

    def host_pid(self, server_pid: int, neighbour: int) -> int:
        """The host pid of the process a server knows as `server_pid` (what it writes in its
        own shared memory, such as a lock holder's PGPROC), found among the processes of
        `neighbour`'s server; `server_pid` itself when both share the host's pid namespace
        or it cannot be found."""
        if self.lookup(neighbour).ns_pid is None:
            return server_pid
        return _pids_in_namespace_of(neighbour, self._ns_pid).get(server_pid, server_pid)

    def prune(self) -> None:
        """Forget every backend that has exited: a trace that runs for days sees pids come
        and go by the million."""
        for pid in [pid for pid in self._entries if self._started(pid) is None]:
            del self._entries[pid]

    def alive(self, pid: int) -> bool:
        """Whether the process known under pid still runs (not a newcomer with its pid)."""
        entry = self._entries.get(pid)
        started = self._started(pid)
        if started is None:
            return False
        return entry is None or entry[0].started in (None, started)


def _pids_in_namespace_of(neighbour: int, ns_pid: Callable[[int], int | None]) -> dict[int, int]:
    """The pids inside a containerised server's pid namespace, mapped to host pids: its
    postmaster (the neighbour's parent) and the postmaster's children."""
    try:
        parent = psutil.Process(neighbour).parent()
        family = [parent, *parent.children()] if parent is not None else []
    except psutil.Error:
        return {}
    inside = {}
    for process in family:
        try:
            pid_inside = ns_pid(process.pid)
        except DbprobeError:  # it exited meanwhile
            continue
        if pid_inside is not None:
            inside[pid_inside] = process.pid
    return inside


class DatabaseNames:
    """Database OIDs to names, per server binary, learned from backends alive to tell.

    A statement's event carries its backend's database OID (read in kernel), but the name
    comes from the backend's process title, which is gone once a short connection closes.
    Every backend seen alive teaches the name of its OID, so later events of short-lived
    connections to the same database are named too. An OID no backend taught (a database
    created since, connected to by one short connection) is looked up with the binary's
    lookup, if it has one (the servers' own files), at most once every LOOKUP_EVERY_S per
    OID: a storm of events of an OID that cannot be named costs nothing.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._names: dict[tuple[str, int], str] = {}
        self._lookups: dict[str, Callable[[int], str | None]] = {}
        self._looked_up: dict[tuple[str, int], float] = {}
        self._clock = clock

    def add_lookup(self, binary: str, lookup: Callable[[int], str | None]) -> None:
        self._lookups[binary] = lookup

    def learn(self, binary: str, oid: int, name: str) -> None:
        self._names[(binary, oid)] = name

    def name(self, binary: str, oid: int) -> str | None:
        known = self._names.get((binary, oid))
        if known is not None or binary not in self._lookups:
            return known
        now = self._clock()
        last = self._looked_up.get((binary, oid))
        if last is not None and now - last < LOOKUP_EVERY_S:
            return None
        self._looked_up[(binary, oid)] = now
        found = self._lookups[binary](oid)
        if found:
            self.learn(binary, oid, found)
        return found or None

    def merge(self, other: "DatabaseNames") -> None:
        """Learn what `other` learned, and take its lookups (a trace added for a restarted
        server: its lookup reads the running server's files)."""
        self._names.update(other._names)
        self._lookups.update(other._lookups)

    def learn_from_running(self, binary: ElfBinary, symbol_name: str, pids: Iterable[int]) -> None:
        """The database OIDs of running backends, read from their memory (the global
        `symbol_name`), with the names their process titles give."""
        symbol = binary.symbol(symbol_name)
        if symbol is None:
            return
        for pid in pids:
            info = backend_info(pid)
            if not info or not info.database:
                continue
            bias = load_bias(pid, str(binary.path), binary.is_pie)
            oid = read_u32(pid, bias + symbol.address) if bias is not None else None
            if oid:
                self.learn(str(binary.path), oid, info.database)

    def resolve(self, binary: str, oid: int, alive_name: str | None) -> str | None:
        """The name a live backend gave (and remember it), or the one learned before."""
        if oid and alive_name:
            self.learn(binary, oid, alive_name)
            return alive_name
        return alive_name or (self.name(binary, oid) if oid else None)


class ServerFiles:
    """A name lookup in the files of the servers running a target's binary: `read` takes a
    data directory, as the host reaches it (the server's working directory), and an OID.
    With no server of the target running, the servers of its file are looked for."""

    def __init__(self, target: Target, read: Callable[[str, int], str | None]):
        self._target = target
        self._read = read

    def __call__(self, oid: int) -> str | None:
        for pid in self._server_pids():
            name = self._read(f"/proc/{pid}/cwd", oid)
            if name:
                return name
        return None

    def _server_pids(self) -> list[int]:
        alive = [server.pid for server in self._target.servers if psutil.pid_exists(server.pid)]
        if alive or self._target.file is None:
            return alive
        return [server.pid for server in find_servers(self._target.db)
                if file_identity(server.binary) == self._target.file]
