"""Server binaries replaced on disk while they are traced.

Uprobes are on a file (an inode), not on a path. A package upgrade moves a new file into
place, so the path names another inode while the probes stay on the old one, and a server
started again from that path runs the new file, untraced until a program is attached to
that file too. Nothing is attached here: this notices the replacement and the servers that
run the new file, once each, and learns the files attached since.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from dbprobe.discover import processes
from dbprobe.discover.files import FileIdentity, file_identity
from dbprobe.discover.processes import ServerProcess, restart_path
from dbprobe.discover.targets import Target
from dbprobe.engines.registry import engine_for

Identity = Callable[[str], FileIdentity | None]
SCAN_EVERY_S = 5.0  # a scan of /proc for servers costs tens of milliseconds


@dataclass(frozen=True, slots=True)
class WatchedBinary:
    """A path servers start from, and the file under it that the probes are on."""

    db: str
    path: str  # as the host opens it
    traced: FileIdentity


def watched_binaries(targets: Iterable[Target]) -> list[WatchedBinary]:
    """The paths of the traced binaries: each server's (for --binary, the file given)."""
    watched: dict[str, WatchedBinary] = {}
    for target in targets:
        if target.file is None:
            continue
        paths = [restart_path(server) for server in target.servers] or [target.binary]
        for path in paths:
            watched.setdefault(path, WatchedBinary(target.db, path, target.file))
    return list(watched.values())


def replaced(watched: Iterable[WatchedBinary],
             identity: Identity = file_identity) -> list[tuple[WatchedBinary, FileIdentity]]:
    """The watched paths that name another file than the traced one now, with that file.

    A path that names no file (an upgrade between unlinking and renaming) is not replaced yet.
    """
    found = []
    for binary in watched:
        now = identity(binary.path)
        if now is not None and now != binary.traced:
            found.append((binary, now))
    return found


def untraced_servers(watched: Iterable[WatchedBinary], servers: Iterable[ServerProcess],
                     identity: Identity = file_identity) -> list[ServerProcess]:
    """The servers started from a watched path that run another file than the traced ones."""
    watched = list(watched)
    paths = {binary.path for binary in watched}
    traced = {binary.traced for binary in watched}
    return [server for server in servers
            if restart_path(server) in paths and identity(server.binary) not in traced]


def replaced_message(binary: WatchedBinary) -> str:
    return (f"{binary.path} was replaced on disk by a new file (as an upgrade installs it); "
            f"the probes stay on the old one, so a {engine_for(binary.db).display_name} server "
            f"started from it now is not traced until dbprobe has attached to the new file")


def untraced_message(server: ServerProcess) -> str:
    return (f"{engine_for(server.db).display_name} server pid {server.pid} runs the new "
            f"{restart_path(server)} and is not traced yet: attaching to the new file")


@dataclass(frozen=True, slots=True)
class Changes:
    """What a check found: messages for stderr, and the servers newly found running a new
    file at a watched path (each once), which are not traced."""

    messages: list[str]
    untraced: list[ServerProcess]


class BinaryWatch:
    """Tells, once each, that a traced binary was replaced and which servers run the new file.

    ``check()`` costs a stat per traced path; only once a path was replaced does it also
    look for the servers running the new file, with a scan of /proc every SCAN_EVERY_S.
    ``wanted`` narrows the servers looked at (under -p: the one traced, restarted).
    """

    def __init__(self, targets: Sequence[Target], *, identity: Identity = file_identity,
                 find_servers: Callable[[], list[ServerProcess]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wanted: Callable[[ServerProcess], bool] = lambda server: True):
        self._watched = watched_binaries(targets)
        self._identity = identity
        self._find_servers = find_servers or processes.find_servers
        self._clock = clock
        self._wanted = wanted
        self._next_scan = 0.0
        self._told_files: set[tuple[str, FileIdentity]] = set()
        self._told_servers: set[tuple[int, FileIdentity | None]] = set()

    def check(self) -> Changes:
        """What happened since the last check."""
        changes = Changes([], [])
        for binary, new_file in replaced(self._watched, self._identity):
            if (binary.path, new_file) not in self._told_files:
                self._told_files.add((binary.path, new_file))
                changes.messages.append(replaced_message(binary))
        if self._told_files and self._due_for_scan():
            servers = [server for server in self._find_servers() if self._wanted(server)]
            for server in untraced_servers(self._watched, servers, self._identity):
                key = (server.pid, self._identity(server.binary))
                if key not in self._told_servers:
                    self._told_servers.add(key)
                    changes.messages.append(untraced_message(server))
                    changes.untraced.append(server)
        return changes

    def traced_now(self, db: str, path: str, file: FileIdentity) -> None:
        """A program is attached to `file`, found at `path`: its servers are traced."""
        self._watched.append(WatchedBinary(db, path, file))

    def scan_soon(self) -> None:
        """Look for servers at the next check (a traced one stopped: it may start again)."""
        self._next_scan = 0.0

    def _due_for_scan(self) -> bool:
        now = self._clock()
        if now < self._next_scan:
            return False
        self._next_scan = now + SCAN_EVERY_S
        return True

    def restart_is_traced(self, server: ServerProcess) -> bool | None:
        """Whether a server started again from `server`'s path would run a traced file; None
        when the path names no file now (mid-upgrade, or a container's root that is gone)."""
        now = self._identity(restart_path(server))
        if now is None:
            return None
        return now in {binary.traced for binary in self._watched}
