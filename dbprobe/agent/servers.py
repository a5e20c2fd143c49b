"""The servers the agent knows: a stable name for each, and which server a pid belongs to.

A server keeps its name across restarts, crash restarts and upgrades: the name is its data
directory (with its container's id when it runs in one), not its pid, so its series go on
where they were. Records carry the pid of a backend (PostgreSQL) or of the server itself
(MySQL, MariaDB); a backend is its postmaster's child, so one read of its parent names it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from dbprobe.discover.processes import ServerProcess

GONE = "gone"
FORGET_AFTER_S = 600.0  # a server gone this long is dropped, its series with it


def server_id(server: ServerProcess) -> str:
    where = server.data_dir or (f"port {server.port}" if server.port else f"pid {server.pid}")
    return f"{server.container}:{where}" if server.container else where


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`: what a uprobe is attached to."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


@dataclass(slots=True)
class KnownServer:
    id: str
    db: str
    process: ServerProcess  # as last seen
    identity: tuple[int, int] | None  # of the binary it runs
    gone_since: float | None = None

    @property
    def running(self) -> bool:
        return self.gone_since is None


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


@dataclass
class ServerDirectory:
    """The servers seen by the last scans, and the pid → server cache for records."""

    clock: Callable[[], float] = time.monotonic
    read_parent: Callable[[int], int | None] = parent_pid
    servers: dict[str, KnownServer] = field(default_factory=dict)
    _leaders: dict[int, str] = field(default_factory=dict)
    _by_pid: dict[int, str] = field(default_factory=dict)

    def update(self, found: Iterable[ServerProcess]) -> tuple[list[KnownServer], list[KnownServer]]:
        """Take a scan's servers; (started or restarted, stopped) since the previous one."""
        now = self.clock()
        seen: dict[str, ServerProcess] = {}
        for server in found:
            seen.setdefault(server_id(server), server)
        started, stopped = [], []
        for sid, process in seen.items():
            known = self.servers.get(sid)
            if known is None or not known.running or known.process.pid != process.pid:
                known = self.servers[sid] = KnownServer(sid, process.db, process,
                                                        file_identity(process.binary))
                started.append(known)
            else:
                known.process = process
        for known in self.servers.values():
            if known.running and known.id not in seen:
                known.gone_since = now
                stopped.append(known)
        for sid in [sid for sid, known in self.servers.items()
                    if not known.running and now - known.gone_since >= FORGET_AFTER_S]:
            del self.servers[sid]
        self._leaders = {known.process.pid: known.id for known in self.servers.values() if known.running}
        self._by_pid = {pid: sid for pid, sid in self._by_pid.items()
                        if sid in self.servers and self.servers[sid].running}
        return started, stopped

    def running(self) -> list[KnownServer]:
        return [known for known in self.servers.values() if known.running]

    def server_of(self, pid: int) -> str | None:
        """The id of the running server that `pid` is (MySQL) or is a child of (PostgreSQL)."""
        found = self._by_pid.get(pid)
        if found is not None:
            return found
        found = self._leaders.get(pid)
        if found is None:
            parent = self.read_parent(pid)
            found = self._leaders.get(parent) if parent is not None else None
        if found is not None:
            self._by_pid[pid] = found
        return found

    def forget_pids(self, alive: set[int]) -> None:
        """Drop cached pids that no longer exist, so a reused pid is looked up afresh."""
        self._by_pid = {pid: sid for pid, sid in self._by_pid.items() if pid in alive}
