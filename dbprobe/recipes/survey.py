"""Which recipe would trace each server found, family by family, and why: what ``dbprobe
list`` and ``dbprobe doctor`` show. Nothing is attached: this only reads /proc and the binaries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from dbprobe.binary.elf import ElfBinary
from dbprobe.discover import processes as discovery
from dbprobe.discover.processes import BackendInfo, ServerProcess
from dbprobe.engines.registry import engine_for
from dbprobe.errors import DbprobeError
from dbprobe.recipes.bind import FamilyPlan, plan_family
from dbprobe.recipes.load import Recipe, load_recipe

UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class FamilyStatus:
    """How one report family would trace one server."""

    family: str
    mechanism: str  # "usdt" | "uprobe" | UNAVAILABLE
    reason: str | None  # why not USDT, or why not at all; None when USDT serves
    probes: tuple[str, ...]  # what is attached, as users recognise it: "postgresql:query__start"
    sites: int  # probe sites in the binary

    @property
    def available(self) -> bool:
        return self.mechanism != UNAVAILABLE


@dataclass(frozen=True, slots=True)
class ServerListing:
    server: ServerProcess
    families: tuple[FamilyStatus, ...]
    recipe_error: str | None  # why no family could be planned: no recipe, or a broken one
    backends: tuple[BackendInfo, ...]  # PostgreSQL's children; empty for MySQL/MariaDB


def inspect_servers(servers: Sequence[ServerProcess]) -> list[ServerListing]:
    """Plan every family of each server's recipe against its binary; nothing is attached."""
    binaries: dict[tuple, ElfBinary | DbprobeError] = {}  # servers sharing a file parse it once
    return [_inspect(server, binaries) for server in servers]


def _inspect(server: ServerProcess, binaries: dict[tuple, ElfBinary | DbprobeError]) -> ServerListing:
    backends = _backends(server)
    try:
        recipe = load_recipe(server.db)
    except DbprobeError as error:
        return ServerListing(server, (), str(error), backends)
    binary = _open_binary(server, binaries)
    if isinstance(binary, DbprobeError):
        unreadable = tuple(FamilyStatus(name, UNAVAILABLE, str(binary), (), 0) for name in recipe.families)
        return ServerListing(server, unreadable, None, backends)
    return ServerListing(server, _family_statuses(recipe, binary, server.version), None, backends)


def _open_binary(server: ServerProcess,
                 binaries: dict[tuple, ElfBinary | DbprobeError]) -> ElfBinary | DbprobeError:
    if not os.path.isabs(server.binary):  # only its command name could be read: not root
        return DbprobeError(f"cannot tell which {server.binary} binary pid {server.pid} runs "
                            f"(reading /proc/{server.pid}/exe needs root)")
    key = _file_identity(server.binary)
    if key not in binaries:
        try:
            binaries[key] = ElfBinary(server.binary, root=server.proc_root)
        except DbprobeError as error:
            binaries[key] = error
    return binaries[key]


def _file_identity(path: str) -> tuple:
    try:
        stat = os.stat(path)
    except OSError:
        return (path,)
    return (stat.st_dev, stat.st_ino)


def _family_statuses(recipe: Recipe, binary: ElfBinary, version: str | None) -> tuple[FamilyStatus, ...]:
    statuses = []
    for name in recipe.families:
        try:
            statuses.append(family_status(plan_family(recipe, name, binary, version)))
        except DbprobeError as error:  # the binary became unreadable while being planned
            statuses.append(FamilyStatus(name, UNAVAILABLE, str(error), (), 0))
    return tuple(statuses)


def family_status(plan: FamilyPlan) -> FamilyStatus:
    if not plan.available:
        return FamilyStatus(plan.family.name, UNAVAILABLE, plan.why, (), 0)
    labels = tuple(dict.fromkeys(site.label for site in plan.sites))
    return FamilyStatus(plan.family.name, plan.mechanism, "; ".join(plan.rejected) or None,
                        labels, len(plan.sites))


def _backends(server: ServerProcess) -> tuple[BackendInfo, ...]:
    if not engine_for(server.db).forks_backends:
        return ()  # one process, whose threads have no titles of their own
    found = (discovery.backend_info(pid) for pid in server.processes if pid != server.pid)
    return tuple(info for info in found if info is not None)  # None: it exited meanwhile
