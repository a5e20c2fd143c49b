"""``dbprobe list``: the database servers on this host and how each report would trace them.

For every server discovery finds: what it is and where it runs (version, pids, container,
binary, data directory, port, OS user), for PostgreSQL its backends, and for each report
family its recipe declares, the mechanism dbprobe would use (USDT, uprobe fallback, or none)
with the reason. Nothing is attached: this only reads /proc and the binaries.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Sequence

from tabulate import tabulate

from dbprobe.discover import processes as discovery
from dbprobe.discover.processes import BackendInfo, ServerProcess
from dbprobe.binary.elf import ElfBinary
from dbprobe.errors import DbprobeError
from dbprobe.recipes.bind import FamilyPlan, plan_family
from dbprobe.recipes.load import Recipe, load_recipe

UNAVAILABLE = "unavailable"
NOT_ROOT_NOTE = ("not root: what other users' processes run (binary, version, probes) may be "
                 "missing or guessed; run as root (sudo dbprobe list) to see everything")
INDENT = "  "
MIN_VALUE_WIDTH = 20


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


# -- inspecting -------------------------------------------------------------------------------


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
        root = "/" if server.binary == server.binary_in_root else f"/proc/{server.pid}/root"
        try:
            binaries[key] = ElfBinary(server.binary, root=root)
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
    if server.db != discovery.POSTGRESQL:
        return ()
    found = (discovery.backend_info(pid) for pid in server.processes if pid != server.pid)
    return tuple(info for info in found if info is not None)  # None: it exited meanwhile


# -- rendering --------------------------------------------------------------------------------


def listing_json(listing: ServerListing) -> str:
    """One server as one JSON object; every field is always present."""
    server = listing.server
    return json.dumps({
        "db": server.db,
        "version": server.version,
        "pid": server.pid,
        "ns_pid": server.ns_pid,
        "container": server.container,
        "binary": server.binary_in_root,
        "host_binary": server.binary,
        "binary_deleted": server.binary_deleted,
        "root": server.root,
        "data_dir": server.data_dir,
        "port": server.port,
        "user": server.user,
        "processes": len(server.processes),
        "recipe_error": listing.recipe_error,
        "families": {
            status.family: {"mechanism": status.mechanism, "reason": status.reason,
                            "probes": list(status.probes), "sites": status.sites}
            for status in listing.families
        },
        "backends": [asdict(backend) for backend in listing.backends],
    })


def listing_text(listings: Sequence[ServerListing], width: int | None) -> str:
    """One block per server; values wrap to `width` (None: never wrap)."""
    return "\n\n".join(server_block(listing, width) for listing in listings)


def server_block(listing: ServerListing, width: int | None) -> str:
    server = listing.server
    rows = [
        ("binary", server.binary_in_root + (" (deleted: replaced on disk)" if server.binary_deleted else "")),
        *([("host path", server.binary)] if server.binary != server.binary_in_root else []),
        *([("root", server.root)] if server.root else []),
        ("data dir", server.data_dir or "-"),
        ("port", str(server.port) if server.port is not None else "-"),
        ("user", server.user),
        *([("backends", _backend_counts(listing.backends))] if listing.backends else []),
        *([("recipe", listing.recipe_error)] if listing.recipe_error else []),
        *_family_rows(listing.families),
    ]
    return "\n".join([_server_heading(server), *_aligned_rows(rows, width)])


def _server_heading(server: ServerProcess) -> str:
    processes = len(server.processes)
    where = [f"pid {server.pid}", f"{processes} process{'es' if processes != 1 else ''}"]
    if server.container:
        where.append(f"container {server.container}")
    if server.ns_pid is not None:
        where.append(f"pid {server.ns_pid} inside")
    return f"{server.db} {server.version or '(version unknown)'}: {', '.join(where)}"


def _family_rows(statuses: Sequence[FamilyStatus]) -> list[tuple[str, str]]:
    """A row per family; a reason already given for an earlier family is not repeated."""
    rows, first_with = [], {}
    for status in statuses:
        reason = status.reason
        if reason is not None and reason in first_with:
            reason = f"same reason as {first_with[reason]}"
        elif reason is not None:
            first_with[reason] = status.family
        rows.append((status.family, _family_text(status, reason)))
    return rows


def _family_text(status: FamilyStatus, reason: str | None) -> str:
    if not status.available:
        return f"{UNAVAILABLE}: {reason}"
    text = f"{status.mechanism}, {_count(status.sites, 'probe')}"
    return f"{text} ({reason})" if reason else text


def _backend_counts(backends: Sequence[BackendInfo]) -> str:
    counts = Counter(backend.kind for backend in backends)
    kinds = sorted(counts, key=lambda kind: (kind != "client backend", -counts[kind], kind))
    return f"{len(backends)}: " + ", ".join(_count(counts[kind], kind) for kind in kinds)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


def _aligned_rows(rows: Sequence[tuple[str, str]], width: int | None) -> list[str]:
    key_width = max(len(key) for key, _ in rows)
    value_width = None if width is None else max(width - len(INDENT) - key_width - 2, MIN_VALUE_WIDTH)
    wrapped = [(key, _wrap(value, value_width)) for key, value in rows]
    table = tabulate(wrapped, tablefmt="plain", disable_numparse=True,
                     colalign=("left", "left"))
    return [INDENT + line.rstrip() for line in table.splitlines()]


def _wrap(text: str, width: int | None) -> str:
    if width is None:
        return text
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


# -- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--pid", type=int, metavar="PID",
                        help="only the server this process belongs to (postmaster, backend, mysqld)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per server per line on stdout")


def run_command(args: argparse.Namespace) -> int:
    servers = [discovery.server_for_pid(args.pid)] if args.pid is not None else discovery.find_servers()
    listings = inspect_servers(servers)
    if args.json:
        for listing in listings:
            print(listing_json(listing), flush=True)
    elif listings:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        print(listing_text(listings, width), flush=True)
    if not listings:
        print("no PostgreSQL, MariaDB or MySQL server is running on this host",
              file=sys.stderr if args.json else sys.stdout)
    if os.geteuid() != 0:
        print(f"dbprobe: note: {NOT_ROOT_NOTE}", file=sys.stderr)
    return 0
