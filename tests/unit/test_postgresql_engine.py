"""PostgreSQL's engine: its process titles and its postmaster's command line."""

from __future__ import annotations

import pytest

from dbprobe.engines.base import BackendInfo
from dbprobe.engines.postgresql.titles import parse_process_title

PID = 4242


def info(
    kind: str,
    user: str | None = None,
    database: str | None = None,
    client: str | None = None,
    state: str | None = None,
) -> BackendInfo:
    return BackendInfo(pid=PID, kind=kind, user=user, database=database, client=client, state=state)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        # Client backends, with and without cluster_name.
        (
            "postgres: 15/main: alice shop 127.0.0.1(51234) idle in transaction",
            info("client backend", "alice", "shop", "127.0.0.1(51234)", "idle in transaction"),
        ),
        (
            "postgres: bob db [local] SELECT",
            info("client backend", "bob", "db", "[local]", "SELECT"),
        ),
        (
            "postgres: bob db [local] idle in transaction (aborted)",
            info("client backend", "bob", "db", "[local]", "idle in transaction (aborted)"),
        ),
        (
            "postgres: alice shop ::1(40000) idle",
            info("client backend", "alice", "shop", "::1(40000)", "idle"),
        ),
        (
            "postgres: 16/main: alice shop 2001:db8::5(5433) UPDATE waiting",
            info("client backend", "alice", "shop", "2001:db8::5(5433)", "UPDATE waiting"),
        ),
        (
            "postgres: web app db-7.internal(60001) COMMIT",
            info("client backend", "web", "app", "db-7.internal(60001)", "COMMIT"),
        ),
        (
            "postgres: my cluster: bob db [local] idle",
            info("client backend", "bob", "db", "[local]", "idle"),
        ),
        # Set before any command ran, and with update_process_title = off.
        ("postgres: bob db [local] ", info("client backend", "bob", "db", "[local]", None)),
        # A user may be named like a background process: the client address decides.
        (
            "postgres: checkpointer db [local] idle",
            info("client backend", "checkpointer", "db", "[local]", "idle"),
        ),
        # Walsenders: physical replication has no database, logical may show one.
        (
            "postgres: walsender repl 10.0.0.2(41234) streaming 0/3000148",
            info("walsender", "repl", None, "10.0.0.2(41234)", "streaming 0/3000148"),
        ),
        (
            "postgres: 15/main: walsender repl shop 10.0.0.2(41234) idle",
            info("walsender", "repl", "shop", "10.0.0.2(41234)", "idle"),
        ),
        (
            "postgres: 9.6/main: wal sender process repl [local] streaming 0/3000148",
            info("walsender", "repl", None, "[local]", "streaming 0/3000148"),
        ),
        # Background processes; titles are padded with a space.
        ("postgres: 15/main: checkpointer", info("checkpointer")),
        ("postgres: checkpointer ", info("checkpointer")),
        ("postgres: autovacuum launcher", info("autovacuum launcher")),
        ("postgres: logical replication launcher", info("logical replication launcher")),
        ("postgres: 15/main: background writer ", info("background writer")),
        ("postgres: walwriter ", info("walwriter")),
        ("postgres: autovacuum worker template1", info("autovacuum worker", database="template1")),
        (
            "postgres: 15/main: parallel worker for PID 8723 ",
            info("parallel worker", state="for PID 8723"),
        ),
        (
            "postgres: 16/main: logical replication apply worker for subscription 16394",
            info("logical replication worker", state="for subscription 16394"),
        ),
        (
            "postgres: startup recovering 000000010000000000000003",
            info("startup", state="recovering 000000010000000000000003"),
        ),
        (
            "postgres: walreceiver streaming 0/3000148",
            info("walreceiver", state="streaming 0/3000148"),
        ),
        (
            "postgres: archiver last was 000000010000000000000002",
            info("archiver", state="last was 000000010000000000000002"),
        ),
        # Names before PostgreSQL 11.
        ("postgres: 10/main: checkpointer process", info("checkpointer")),
        ("postgres: wal writer process", info("walwriter")),
        ("postgres: writer process", info("background writer")),
        ("postgres: autovacuum worker process   shop", info("autovacuum worker", database="shop")),
        ("postgres: bgworker: logical replication launcher", info("logical replication launcher")),
        (
            "postgres: 10/main: bgworker: logical replication launcher",
            info("logical replication launcher"),
        ),
        # Extensions' workers carry the name they registered.
        (
            "postgres: TimescaleDB Background Worker Scheduler",
            info("background worker", state="TimescaleDB Background Worker Scheduler"),
        ),
        ("postgres: ", info("unknown")),
    ],
)
def test_process_title(title: str, expected: BackendInfo) -> None:
    assert parse_process_title(PID, title) == expected


@pytest.mark.parametrize(
    "title",
    [
        # The postmaster keeps its command line.
        "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main",
        "postgres:checkpointer",
        "python3 worker.py postgres: alice",
        "",
    ],
)
def test_not_a_process_title(title: str) -> None:
    assert parse_process_title(PID, title) is None
