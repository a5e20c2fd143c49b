"""Which binaries a trace attaches to, and which processes it keeps.

Uprobes attach to a binary file, so every server running that file is traced at once; the
targets are the distinct binaries of the servers found (or the one named by ``--binary``),
each with the servers that run it. ``-p`` keeps one server: the kernel side then filters
on its processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dbprobe.discover import processes as discovery
from dbprobe.discover.processes import ServerProcess
from dbprobe.binary.elf import ElfBinary, ElfError
from dbprobe.errors import DbprobeError


@dataclass(frozen=True, slots=True)
class Target:
    db: str
    binary: str  # the path the host opens and attaches to
    version: str | None
    root: str  # the file system root the binary belongs to: "/" or /proc/PID/root
    servers: tuple[ServerProcess, ...]  # running servers of this binary; empty for --binary

    def open_binary(self) -> ElfBinary:
        try:
            return ElfBinary(self.binary, root=self.root)
        except ElfError as error:
            raise DbprobeError(f"cannot read {self.binary}: {error}") from None

    @property
    def processes(self) -> tuple[int, ...]:
        return tuple(pid for server in self.servers for pid in server.processes)


def choose_targets(*, pid: int | None, binary: str | None, databases: tuple[str, ...]) -> list[Target]:
    if binary is not None:
        return [_binary_target(binary)]
    if pid is not None:
        server = discovery.server_for_pid(pid)
        _require_database(server, databases, pid)
        return [_target_of([server])]
    servers = [server for server in discovery.find_servers() if server.db in databases]
    if not servers:
        names = " or ".join(_NAMES[db] for db in databases)
        raise DbprobeError(f"no running {names} server found (use -p PID, or --binary PATH "
                           f"to trace a binary that is not running yet)")
    return [_target_of(group) for group in _by_binary_file(servers)]


_NAMES = {"postgresql": "PostgreSQL", "mariadb": "MariaDB", "mysql": "MySQL"}


def _require_database(server: ServerProcess, databases: tuple[str, ...], pid: int) -> None:
    if server.db not in databases:
        wanted = " or ".join(_NAMES[db] for db in databases)
        raise DbprobeError(f"pid {pid} is a {_NAMES[server.db]} server; this report is for {wanted}")


def _by_binary_file(servers: list[ServerProcess]) -> list[list[ServerProcess]]:
    groups: dict[tuple, list[ServerProcess]] = {}
    for server in servers:
        groups.setdefault(_file_identity(server.binary), []).append(server)
    return list(groups.values())


def _file_identity(path: str) -> tuple:
    try:
        stat = os.stat(path)
    except OSError:
        return (path,)
    return (stat.st_dev, stat.st_ino)


def _target_of(servers: list[ServerProcess]) -> Target:
    first = servers[0]
    root = "/" if first.binary == first.binary_in_root else f"/proc/{first.pid}/root"
    return Target(db=first.db, binary=first.binary, version=first.version, root=root,
                  servers=tuple(servers))


def _binary_target(path: str) -> Target:
    if not Path(path).is_file():
        raise DbprobeError(f"--binary {path}: no such file")
    db, version = discovery.identify_binary(path)
    if db is None:
        raise DbprobeError(f"--binary {path}: not a PostgreSQL, MariaDB or MySQL server binary")
    return Target(db=db, binary=str(Path(path).resolve()), version=version, root="/", servers=())
