"""``dbprobe doctor``: everything dbprobe needs from this machine, and how to fix what is missing.

One line per check, ``ok``, ``warn`` or ``fail``, with what was found; anything not ok comes
with the command that fixes it. The machine checks are preflight's; then each server found
gets a line saying how its binary serves each report family, as ``dbprobe list`` computes it.
Exit status 0 when dbprobe can run (warnings allowed), 2 when it cannot.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from dbprobe.discover import processes as discovery
from dbprobe.kernel import preflight
from dbprobe.recipes.survey import UNAVAILABLE, FamilyStatus, ServerListing, inspect_servers
from dbprobe.render.doctor import doctor_json, doctor_text
from dbprobe.render.output import terminal_width, write_stdout
from dbprobe.render.text import terminal_safe
from dbprobe.kernel.preflight import FAIL, OK, WARN, Check

CANNOT_RUN_STATUS = 2


# -- server checks ----------------------------------------------------------------------------


def server_checks(listings: Sequence[ServerListing], *, as_root: bool) -> list[Check]:
    if not listings:
        return [Check("servers", WARN, "no PostgreSQL, MariaDB or MySQL server is running",
                      "start the server, or trace its binary before it starts: "
                      "dbprobe slow --binary PATH")]
    return [server_check(listing, as_root=as_root) for listing in listings]


def server_check(listing: ServerListing, *, as_root: bool) -> Check:
    """How a server's binary serves each family of its recipe; warn for what it cannot serve."""
    server = listing.server
    name = f"{server.db} pid {server.pid}"
    if listing.recipe_error is not None:
        return Check(name, WARN, f"{server.binary_in_root}: {listing.recipe_error}",
                     "pip install --upgrade dbprobe  # newer versions may have its recipe")
    detail = f"{server.binary_in_root}: {_families_summary(listing.families)}"
    if all(status.available for status in listing.families):
        return Check(name, OK, detail)
    if not as_root:
        return Check(name, WARN, detail, "sudo dbprobe doctor  # other users' binaries need root")
    return Check(name, WARN, detail, _debug_symbols_fix(server.binary_in_root, server.pid))


def _families_summary(statuses: Sequence[FamilyStatus]) -> str:
    """Families traced the same way, for the same reason, are named together."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for status in statuses:
        groups.setdefault((status.mechanism, status.reason), []).append(status.family)
    return "; ".join(_group_summary(", ".join(families), mechanism, reason)
                     for (mechanism, reason), families in groups.items())


def _group_summary(families: str, mechanism: str, reason: str | None) -> str:
    how = f"{families} {mechanism}" if mechanism == UNAVAILABLE else f"{families} via {mechanism}"
    return f"{how} ({reason})" if reason else how


def _debug_symbols_fix(binary: str, pid: int) -> str:
    # The usual cause: a function of the uprobe fallback is missing from a stripped binary;
    # the distribution's debug symbols package (found through the build id) provides it.
    return (f"apt-get install \"$(dpkg-query -S {binary} | cut -d: -f1)-dbgsym\"  "
            f"# debug symbols, from the debian-debug archive; dbprobe list -p {pid} says why")


def exit_status(checks: Sequence[Check]) -> int:
    return CANNOT_RUN_STATUS if any(check.status == FAIL for check in checks) else 0


# -- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per check per line")


def run_command(args: argparse.Namespace) -> int:
    checks = [check() for check in preflight.MACHINE_CHECKS]
    checks += server_checks(inspect_servers(discovery.find_servers()), as_root=os.geteuid() == 0)
    if args.json:
        for check in checks:
            write_stdout(doctor_json(check) + "\n")
    else:
        write_stdout(terminal_safe(doctor_text(checks, terminal_width())) + "\n")
    return exit_status(checks)
