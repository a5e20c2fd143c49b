"""Discovery finds the real throwaway servers, their backends and versions."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from dbprobe.discover.processes import (
    MARIADB,
    POSTGRESQL,
    ServerProcess,
    backend_info,
    find_servers,
    ns_pid_of,
    server_for_pid,
)
from dbprobe.errors import DbprobeError
from dbprobe.demo.server import ThrowawayPostgres
from tests.support.mariadb import ThrowawayMariaDB
from tests.support.pgcopy import make_usdt_less_copy

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to read other users' /proc/PID/exe (CI runs as root)"
)

TEST_DATABASE = "dbprobe_discovery"
# Processes that come and go on their own: they may start or end between two looks.
TRANSIENT_BACKEND_TYPES = ("autovacuum worker", "parallel worker")


def the_server(pid: int) -> ServerProcess:
    matches = [server for server in find_servers() if server.pid == pid]
    assert len(matches) == 1, f"pid {pid} listed {len(matches)} times"
    return matches[0]


def server_version(pg_server: ThrowawayPostgres) -> str:
    # "15.18 (Debian 15.18-0+deb12u1)": the number is what the binary says too.
    return pg_server.psql("SELECT current_setting('server_version')").split()[0]


def long_lived_processes(pg_server: ThrowawayPostgres) -> dict[int, str]:
    """pid -> backend_type of the server's processes, as pg_stat_activity lists them."""
    # Not psql's own backend, gone by the time we look.
    rows = pg_server.psql(
        "SELECT pid, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
    ).splitlines()
    processes = {int(pid): backend_type for pid, backend_type in (row.split("|") for row in rows)}
    return {pid: kind for pid, kind in processes.items() if kind not in TRANSIENT_BACKEND_TYPES}


@pytest.fixture
def discovery_database(pg_server: ThrowawayPostgres) -> Iterator[str]:
    pg_server.psql(f"CREATE DATABASE {TEST_DATABASE}")
    yield TEST_DATABASE
    pg_server.psql(f"DROP DATABASE {TEST_DATABASE} WITH (FORCE)")


@pytest.fixture
def two_sessions(
    pg_server: ThrowawayPostgres, discovery_database: str
) -> Iterator[list[tuple[psycopg.Connection, int]]]:
    """Two open sessions on the test database; the second is inside a transaction."""
    connections = [
        pg_server.connect(dbname=discovery_database),
        pg_server.connect(dbname=discovery_database, autocommit=False),
    ]
    try:
        sessions = [
            (connection, connection.execute("SELECT pg_backend_pid()").fetchone()[0])
            for connection in connections
        ]
        yield sessions
    finally:
        for connection in connections:
            connection.close()


@needs_root
def test_postmaster_is_found_with_version_data_dir_and_port(pg_server: ThrowawayPostgres) -> None:
    server = the_server(pg_server.pid)
    assert server.db == POSTGRESQL
    assert server.version == server_version(pg_server)
    assert server.data_dir == str(pg_server.datadir)
    assert server.port == pg_server.port
    assert server.binary == server.binary_in_root == os.path.realpath(pg_server.bindir / "postgres")
    assert server.user == "postgres"
    assert (server.container, server.ns_pid, server.binary_deleted) == (None, None, False)


@needs_root
def test_processes_are_the_postmaster_and_all_its_children(
    pg_server: ThrowawayPostgres, two_sessions: list[tuple[psycopg.Connection, int]]
) -> None:
    expected = {pg_server.pid, *long_lived_processes(pg_server)}
    server = the_server(pg_server.pid)
    assert {backend_pid for _, backend_pid in two_sessions} <= expected
    assert expected <= set(server.processes)
    assert list(server.processes) == sorted(server.processes)
    for pid in set(server.processes) - {pg_server.pid}:
        with contextlib.suppress(psutil.NoSuchProcess):  # an autovacuum worker, finished since
            assert psutil.Process(pid).ppid() == pg_server.pid


@needs_root
def test_server_for_a_backend_is_its_postmaster(
    pg_server: ThrowawayPostgres, two_sessions: list[tuple[psycopg.Connection, int]]
) -> None:
    for _, backend_pid in two_sessions:
        server = server_for_pid(backend_pid)
        assert server.pid == pg_server.pid
        assert backend_pid in server.processes
    assert server_for_pid(pg_server.pid) == the_server(pg_server.pid)


@needs_root
def test_backend_info_of_sessions(
    pg_server: ThrowawayPostgres, two_sessions: list[tuple[psycopg.Connection, int]]
) -> None:
    (_, idle_pid), (in_transaction, in_transaction_pid) = two_sessions
    idle = backend_info(idle_pid)
    assert idle is not None
    assert (idle.kind, idle.user, idle.database, idle.client, idle.state) == (
        "client backend",
        pg_server.superuser,
        TEST_DATABASE,
        "[local]",
        "idle",
    )
    busy = backend_info(in_transaction_pid)
    assert busy is not None
    assert (busy.database, busy.state) == (TEST_DATABASE, "idle in transaction")
    with pytest.raises(psycopg.errors.DivisionByZero):
        in_transaction.execute("SELECT 1/0")
    aborted = backend_info(in_transaction_pid)
    assert aborted is not None
    assert aborted.state == "idle in transaction (aborted)"


@needs_root
def test_backend_info_kinds_match_pg_stat_activity(pg_server: ThrowawayPostgres) -> None:
    processes = long_lived_processes(pg_server)
    assert "checkpointer" in processes.values()
    kinds = {pid: getattr(backend_info(pid), "kind", None) for pid in processes}
    assert kinds == processes


@needs_root
def test_backend_info_of_non_backends(pg_server: ThrowawayPostgres) -> None:
    assert backend_info(pg_server.pid) is None  # the postmaster keeps its command line
    assert backend_info(os.getpid()) is None


@needs_root
def test_mariadb_is_found_with_version(mariadb_server: ThrowawayMariaDB) -> None:
    server = the_server(mariadb_server.pid)
    reported = mariadb_server.sql("SELECT VERSION()").strip()  # "10.11.19-MariaDB-0+deb12u1"
    assert server.db == MARIADB
    assert server.version == reported.split("-")[0]
    assert server.processes == (mariadb_server.pid,)
    assert server.binary == os.path.realpath(mariadb_server.binary)
    assert server.data_dir == str(mariadb_server.datadir)
    assert server.port == mariadb_server.port
    assert server.user == "mysql"


@needs_root
def test_server_for_a_mariadb_thread_is_the_server(mariadb_server: ThrowawayMariaDB) -> None:
    threads = [
        thread.id
        for thread in psutil.Process(mariadb_server.pid).threads()
        if thread.id != mariadb_server.pid
    ]
    assert threads
    assert server_for_pid(threads[-1]).pid == mariadb_server.pid


@needs_root
def test_filter_by_database(pg_server: ThrowawayPostgres, mariadb_server: ThrowawayMariaDB) -> None:
    postgres_pids = {server.pid for server in find_servers(POSTGRESQL)}
    mariadb_pids = {server.pid for server in find_servers(MARIADB)}
    assert pg_server.pid in postgres_pids and pg_server.pid not in mariadb_pids
    assert mariadb_server.pid in mariadb_pids and mariadb_server.pid not in postgres_pids
    with pytest.raises(DbprobeError, match="unknown database 'oracle'"):
        find_servers("oracle")


def test_server_for_our_own_pid_is_refused() -> None:
    own = psutil.Process()
    with pytest.raises(DbprobeError) as raised:
        server_for_pid(own.pid)
    assert (
        str(raised.value)
        == f"pid {own.pid} ({own.name()}) is not a PostgreSQL or MySQL/MariaDB server process"
    )


def test_server_for_a_missing_pid_is_refused() -> None:
    missing = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids are always below pid_max
    with pytest.raises(DbprobeError) as raised:
        server_for_pid(missing)
    assert str(raised.value) == f"no process with pid {missing}"


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --pid needs root")
def test_ns_pid_of_a_process_in_its_own_pid_namespace() -> None:
    with subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "60"]) as unshare:
        try:
            inner = wait_for_child(unshare.pid)
            assert ns_pid_of(inner) == 1
            assert ns_pid_of(unshare.pid) is None
        finally:
            unshare.kill()


def wait_for_child(pid: int, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children()
        if children:
            return children[0].pid
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} started no child within {timeout_s}s")


@pytest.fixture
def copied_postgres_bindir() -> Iterator[Path]:
    """A PostgreSQL installation of its own, whose binary the test may replace."""
    copy_root = Path(tempfile.mkdtemp(prefix="dbprobe-discovery-"))
    copy_root.chmod(0o755)  # the postgres OS user runs programs from it
    try:
        yield make_usdt_less_copy(copy_root / "postgresql")
    finally:
        shutil.rmtree(copy_root, ignore_errors=True)


@needs_root
def test_binary_replaced_while_running(copied_postgres_bindir: Path) -> None:
    binary = copied_postgres_bindir / "postgres"
    with ThrowawayPostgres(bindir=copied_postgres_bindir) as pg_server:
        # An upgrade installs the new file under the same name; the running one is unlinked.
        replacement = binary.with_name("postgres.new")
        shutil.copy2(binary, replacement)
        os.replace(replacement, binary)
        server = the_server(pg_server.pid)
        assert server.binary_deleted
        assert server.binary == f"/proc/{pg_server.pid}/exe"
        assert server.binary_in_root == str(binary)
        assert server.version == server_version(pg_server)
