"""Rendering ``dbprobe list``: a block per server, or one JSON object per server."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from dataclasses import asdict
from typing import Sequence

from tabulate import tabulate

from dbprobe.discover.processes import BackendInfo, ServerProcess
from dbprobe.recipes.survey import UNAVAILABLE, FamilyStatus, ServerListing
from dbprobe.render.text import count

INDENT = "  "
MIN_VALUE_WIDTH = 20



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
    text = f"{status.mechanism}, {count(status.sites, 'probe')}"
    return f"{text} ({reason})" if reason else text


def _backend_counts(backends: Sequence[BackendInfo]) -> str:
    counts = Counter(backend.kind for backend in backends)
    kinds = sorted(counts, key=lambda kind: (kind != "client backend", -counts[kind], kind))
    return f"{len(backends)}: " + ", ".join(count(counts[kind], kind) for kind in kinds)


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
