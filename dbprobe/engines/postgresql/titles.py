"""PostgreSQL's process titles: what each child of the postmaster says it is doing.

The postmaster's children rewrite their command line as ``postgres: [cluster_name: ]<what>``:
a client backend shows its user, database, client address and state; auxiliary processes
their role (checkpointer, autovacuum worker...). The names follow pg_stat_activity's
backend_type, with the older spellings of releases before 11.
"""

from __future__ import annotations

import re

from dbprobe.engines.base import BackendInfo

TITLE_PREFIX = "postgres: "

# Process titles of processes that are not client backends, by the name they
# start with, mapped to pg_stat_activity's backend_type. Names before
# PostgreSQL 11 ended in " process"; older bgworker titles started "bgworker: ".
_BACKGROUND_KINDS = {
    "autovacuum launcher": "autovacuum launcher",
    "autovacuum launcher process": "autovacuum launcher",
    "autovacuum worker": "autovacuum worker",
    "autovacuum worker process": "autovacuum worker",
    "logical replication launcher": "logical replication launcher",
    "logical replication worker": "logical replication worker",
    "logical replication apply worker": "logical replication worker",
    "logical replication parallel apply worker": "logical replication worker",
    "logical replication tablesync worker": "logical replication worker",
    "parallel worker": "parallel worker",
    "background writer": "background writer",
    "writer process": "background writer",
    "checkpointer": "checkpointer",
    "checkpointer process": "checkpointer",
    "walwriter": "walwriter",
    "wal writer process": "walwriter",
    "walreceiver": "walreceiver",
    "wal receiver process": "walreceiver",
    "walsummarizer": "walsummarizer",
    "archiver": "archiver",
    "archiver process": "archiver",
    "logger": "logger",
    "logger process": "logger",
    "stats collector": "stats collector",
    "stats collector process": "stats collector",
    "startup": "startup",
    "startup process": "startup",
    "slotsync worker": "slotsync worker",
    "io worker": "io worker",
}
# Longest names first, so "autovacuum worker process" wins over "autovacuum worker".
_BACKGROUND_NAMES = sorted(_BACKGROUND_KINDS, key=len, reverse=True)
_WALSENDER_NAMES = ("walsender", "wal sender process")

# A client's address as the postmaster writes it: "[local]", or host(port).
_CLIENT = re.compile(r"(?:^|\s)(\[local\]|\S+\(\d+\))(?=\s|$)")


def parse_process_title(pid: int, title: str) -> BackendInfo | None:
    """Parse a PostgreSQL process title: ``postgres: [cluster_name: ]<what it is doing>``.

    None when `title` is not a PostgreSQL process title.
    """
    if not title.startswith(TITLE_PREFIX):
        return None
    rest = _without_cluster_name(title[len(TITLE_PREFIX) :].strip())
    if not rest:
        return BackendInfo(pid=pid, kind="unknown")
    walsender = _starting_name(rest, _WALSENDER_NAMES)
    if walsender is not None:
        return _parse_client_title(pid, "walsender", rest[len(walsender) :].strip())
    if _CLIENT.search(rest):
        return _parse_client_title(pid, "client backend", rest)
    background = _starting_name(rest, _BACKGROUND_NAMES)
    if background is None:
        # Extensions' background workers are titled with the name they registered.
        return BackendInfo(pid=pid, kind="background worker", state=rest)
    kind = _BACKGROUND_KINDS[background]
    detail = rest[len(background) :].strip() or None
    if kind == "autovacuum worker":
        return BackendInfo(pid=pid, kind=kind, database=detail)
    return BackendInfo(pid=pid, kind=kind, state=detail)


def _without_cluster_name(rest: str) -> str:
    cluster_name, separator, after = rest.partition(": ")
    if not separator or _CLIENT.search(cluster_name):
        return rest
    # Before PostgreSQL 11 background workers were titled "bgworker: NAME".
    if cluster_name == "bgworker":
        return after
    return after.removeprefix("bgworker: ")


def _starting_name(text: str, names: tuple[str, ...] | list[str]) -> str | None:
    for name in names:
        if text == name or text.startswith(name + " "):
            return name
    return None


def _parse_client_title(pid: int, kind: str, text: str) -> BackendInfo:
    """``user [database] client [state]``; a physical replication walsender has no database."""
    match = _CLIENT.search(text)
    if match is None:
        return BackendInfo(pid=pid, kind=kind, state=text or None)
    before = text[: match.start()].split()
    state = text[match.end() :].strip() or None
    user = before[0] if before else None
    database = " ".join(before[1:]) or None
    return BackendInfo(
        pid=pid, kind=kind, user=user, database=database, client=match.group(1), state=state
    )
