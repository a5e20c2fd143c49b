"""Which binaries a trace attaches to, and which processes it keeps.

Uprobes attach to a binary file, so every server running that file is traced at once; the
targets are the distinct binaries of the servers found (or the one named by ``--binary``),
each with the servers that run it. ``-p`` keeps one server: the kernel side then filters
on its processes. Of the servers found without ``-p``, one whose binary cannot be read is
left out with a warning naming it, and the others are traced.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field, replace
from typing import Callable

from dbprobe.binary.elf import ElfBinary
from dbprobe.discover import processes as discovery
from dbprobe.discover.files import FileIdentity, file_identity, kind_of
from dbprobe.discover.processes import ServerProcess
from dbprobe.engines.registry import NAMES, display_names, engine_for
from dbprobe.errors import DbprobeError

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    db: str
    binary: str  # the path the host opens and attaches to
    version: str | None
    root: str  # the file system root the binary belongs to: "/" or /proc/PID/root
    servers: tuple[ServerProcess, ...]  # running servers of this binary
    file: FileIdentity | None = None  # the file `binary` named when the target was chosen
    elf: ElfBinary | None = field(default=None, compare=False, repr=False)  # parsed once

    def open_binary(self) -> ElfBinary:
        if self.elf is not None:
            return self.elf
        return ElfBinary(self.binary, root=self.root)  # its errors name the path

    @property
    def processes(self) -> tuple[int, ...]:
        return tuple(pid for server in self.servers for pid in server.processes)

    @property
    def label(self) -> str:
        """Its servers for messages: "PostgreSQL server pid 709", or its binary's path."""
        name = engine_for(self.db).display_name
        if not self.servers:
            return f"{name} binary {self.binary}"
        pids = ", ".join(str(server.pid) for server in self.servers)
        return f"{name} server{'s' if len(self.servers) > 1 else ''} pid {pids}"


def _print_warning(message: str) -> None:
    print(f"dbprobe: {message}", file=sys.stderr, flush=True)


def choose_targets(*, pid: int | None, binary: str | None, databases: tuple[str, ...],
                   warn: Warn = _print_warning) -> list[Target]:
    if binary is not None:
        return [_binary_target(binary, warn)]
    if pid is not None:
        server = discovery.server_for_pid(pid)
        _require_database(server, databases, pid)
        return [_opened(_target_of([server]))]
    servers = [server for server in discovery.find_servers() if server.db in databases]
    if not servers:
        raise DbprobeError(f"no running {display_names(databases, ' or ')} server found (use -p PID, "
                           f"or --binary PATH to trace a binary that is not running yet)")
    return _traceable([_target_of(group) for group in _by_binary_file(servers)], warn)


def _require_database(server: ServerProcess, databases: tuple[str, ...], pid: int) -> None:
    if server.db not in databases:
        raise DbprobeError(f"pid {pid} is a {engine_for(server.db).display_name} server; "
                           f"this report is for {display_names(databases, ' or ')}")


def _traceable(targets: list[Target], warn: Warn) -> list[Target]:
    """The targets whose binary can be read; each other one is a warning naming its servers."""
    kept, failures = [], []
    for target in targets:
        try:
            kept.append(_opened(target))
        except DbprobeError as error:
            failures.append(f"{target.label} is not traced: {error}")
    if not kept:
        raise DbprobeError("; ".join(failures))
    for failure in failures:
        warn(failure)
    return kept


def _opened(target: Target) -> Target:
    """The target with its binary parsed, for the plans and the readers to share."""
    return replace(target, elf=target.open_binary())


def _by_binary_file(servers: list[ServerProcess]) -> list[list[ServerProcess]]:
    groups: dict[tuple, list[ServerProcess]] = {}
    for server in servers:
        groups.setdefault(file_identity(server.binary) or (server.binary,), []).append(server)
    return list(groups.values())


def target_of_servers(servers: list[ServerProcess]) -> Target:
    """The target of servers that run one binary file (its binary not parsed yet)."""
    return _target_of(servers)


def _target_of(servers: list[ServerProcess]) -> Target:
    first = servers[0]
    return Target(db=first.db, binary=first.binary, version=first.version, root=first.proc_root,
                  servers=tuple(servers), file=file_identity(first.binary))


# -- --binary ---------------------------------------------------------------------------------

# platform.machine()'s names for the machines ElfBinary.machine names otherwise.
_HOST_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def host_machine() -> str:
    machine = platform.machine().lower()
    return _HOST_MACHINES.get(machine, machine)


def _binary_target(path: str, warn: Warn = _print_warning) -> Target:
    _require_regular_file(path)
    path = _canonical(path)
    try:
        elf = ElfBinary(path)
    except DbprobeError:
        elf = None  # not an ELF file, or a corrupt one: no server binary either way
    db, version = discovery.identify_binary(path) if elf is not None else (None, None)
    if db is None:
        raise DbprobeError(f"--binary {path}: not a {display_names(NAMES)} server binary")
    if elf.machine != host_machine():
        raise DbprobeError(f"--binary {path}: built for {elf.machine}, and this machine is "
                           f"{host_machine()}: only its own binaries can be traced")
    identity = file_identity(path)
    servers = discovery.find_servers(db)
    running = tuple(server for server in servers
                    if identity is not None and file_identity(server.binary) == identity)
    for server in servers:
        if server not in running and discovery.restart_path(server) == path:
            warn(f"{engine_for(db).display_name} server pid {server.pid} runs the file {path} "
                 f"named before it was replaced, and --binary {path} does not trace it: trace "
                 f"it with -p {server.pid}")
    return Target(db=db, binary=path, version=version, root="/", servers=running,
                  file=identity, elf=elf)


def _canonical(path: str) -> str:
    """The path with its links resolved, when that names the same file: what the probes
    and messages name. /proc/PID/exe of a deleted file resolves to no file; it stays."""
    resolved = os.path.realpath(path)
    same = file_identity(resolved) is not None and file_identity(resolved) == file_identity(path)
    return resolved if same else path


def _require_regular_file(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DbprobeError(f"--binary {path}: no such file") from None
    except OSError as error:
        raise DbprobeError(f"--binary {path}: {error.strerror.lower()}") from None
    kind = kind_of(mode)
    if kind != "a regular file":
        raise DbprobeError(f"--binary {path}: {kind}, not a server binary")
