"""Noticing, cheaply and often, that a database server may have started or stopped.

Describing every server (discovery's ``find_servers``) reads ``/proc`` and ELF version
strings: around a hundred milliseconds, too much to do twice a second for days. This look
lists ``/proc`` and reads the binary of new processes only, and says when a process that
can lead a server appeared (one running a server binary whose parent does not run it) or
when a leader went away. A backend forked by a known postmaster changes nothing. A process
is looked at again while it is young, since a server is often started by a fork whose
child only later execs the server binary.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from dbprobe.agent.servers import parent_pid

SERVER_BINARY_NAMES = frozenset({"postgres", "postmaster", "mysqld", "mariadbd"})
YOUNG_S = 3.0  # how long a new process is looked at again, in case it execs a server
_DELETED = " (deleted)"


@dataclass(slots=True)
class _Seen:
    exe: str | None  # the binary it runs, None while unreadable
    parent: int | None
    first_seen: float

    @property
    def runs_server_binary(self) -> bool:
        return self.exe is not None and os.path.basename(self.exe) in SERVER_BINARY_NAMES


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(_DELETED)
    except OSError:
        return None


def _pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


class ProcessWatch:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 list_pids: Callable[[], set[int]] = _pids,
                 read_exe: Callable[[int], str | None] = _exe,
                 read_parent: Callable[[int], int | None] = parent_pid):
        self._clock = clock
        self._list_pids = list_pids
        self._read_exe = read_exe
        self._read_parent = read_parent
        self._seen: dict[int, _Seen] = {}
        self.pids: set[int] = set()

    def changed(self) -> bool:
        """Whether a server leader may have started or stopped since the last look."""
        now = self._clock()
        pids = self._list_pids()
        changed = False
        for pid in self.pids - pids:
            gone = self._seen.pop(pid, None)
            changed |= gone is not None and self._leads(gone)
        for pid in pids:
            seen = self._seen.get(pid)
            if seen is None:
                seen = self._seen[pid] = _Seen(self._read_exe(pid), self._read_parent(pid), now)
                changed |= self._leads(seen)
            elif not seen.runs_server_binary and now - seen.first_seen < YOUNG_S:
                seen.exe = self._read_exe(pid)
                changed |= self._leads(seen)
        self.pids = pids
        return changed

    def _leads(self, seen: _Seen) -> bool:
        if not seen.runs_server_binary:
            return False
        parent = self._seen.get(seen.parent) if seen.parent is not None else None
        return parent is None or parent.exe != seen.exe
