"""Discovery finds the real throwaway servers, their backends and versions."""

from __future__ import annotations

import contextlib
import itertools
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
    ServerProcess,
    backend_info,
    find_servers,
    ns_pid_of,
    server_for_pid,
)
from dbprobe.discover.replaced import SCAN_EVERY_S, BinaryWatch, Changes
from dbprobe.discover.targets import choose_targets
from dbprobe.errors import DbprobeError
from dbprobe.demo.server import ThrowawayPostgres, installed_postgres_bindir
from tests.support.chroot import ChrootedPostgres
from tests.support.mariadb import ThrowawayMariaDB
from tests.support.pgcopy import make_usdt_less_copy
from tests.support.tracing import DbprobeRun, Finished, run_dbprobe

POSTGRESQL, MARIADB = "postgresql", "mariadb"
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
        == f"pid {own.pid} ({own.name()}) is not a PostgreSQL, MariaDB or MySQL server process"
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


# -- a server in a plain chroot ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chrooted_postgres() -> Iterator[ChrootedPostgres]:
    if os.geteuid() != 0:
        pytest.skip("chroot needs root (CI runs as root)")
    with ChrootedPostgres() as server:
        yield server


def test_server_in_a_plain_chroot_is_found_through_its_host_path(chrooted_postgres: ChrootedPostgres) -> None:
    server = the_server(chrooted_postgres.pid)
    assert server.db == POSTGRESQL and server.version == server_version_of(chrooted_postgres)
    # /proc/PID/exe names the host's path (the chroot is in our mount namespace), not the
    # path inside the root: that is the one to open through /proc/PID/root.
    assert server.binary == f"/proc/{chrooted_postgres.pid}/root{chrooted_postgres.binary_inside}"
    assert os.path.samefile(server.binary, chrooted_postgres.binary_on_host)
    assert server.binary_in_root == chrooted_postgres.binary_inside
    assert server.root == str(chrooted_postgres.root)
    assert server.user == "postgres"
    assert (server.data_dir, server.port) == ("/data", chrooted_postgres.port)
    assert (server.container, server.ns_pid, server.binary_deleted) == (None, None, False)
    assert len(server.processes) > 1  # the postmaster's children are found too


def server_version_of(server: ChrootedPostgres) -> str:
    with server.connect() as connection:
        return connection.execute("SELECT current_setting('server_version')").fetchone()[0].split()[0]


def test_slow_traces_a_chrooted_server_and_a_plain_one_together(
    chrooted_postgres: ChrootedPostgres, pg_server: ThrowawayPostgres, require_root_bpf
) -> None:
    # Without -p, dbprobe traces every server it finds: both binaries, one program.
    run = DbprobeRun(["slow", "--json", "--threshold", "150ms"])
    run.wait_attached()
    with chrooted_postgres.connect() as chrooted, pg_server.connect() as plain:
        backends = {}
        for name, connection in (("chrooted", chrooted), ("plain", plain)):
            backends[name] = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            connection.execute("SELECT pg_sleep(0.2)")
    finished = run.finish(settle_s=0.5)

    seen = {query["pid"] for query in finished.events("query") if query["query"] == "SELECT pg_sleep(?)"}
    assert {backends["chrooted"], backends["plain"]} <= seen, finished.stderr
    assert f"pid {chrooted_postgres.pid} (" in finished.stderr
    assert f"query: /proc/{chrooted_postgres.pid}/root{chrooted_postgres.binary_inside} via usdt" in finished.stderr
    assert "not traced" not in finished.stderr and "not tracing" not in finished.stderr


# -- binaries replaced on disk, --binary ---------------------------------------------------------


@needs_root
def test_a_replaced_binary_and_the_restarted_server_are_told(copied_postgres_bindir: Path) -> None:
    binary = copied_postgres_bindir / "postgres"
    with ThrowawayPostgres(bindir=copied_postgres_bindir) as pg_server:
        traced = choose_targets(pid=pg_server.pid, binary=None, databases=(POSTGRESQL,))
        # Its clock moves a scan interval at each reading: every check looks for servers.
        watch = BinaryWatch(traced, clock=itertools.count(step=SCAN_EVERY_S).__next__)
        assert watch.check() == Changes([], [])
        assert watch.restart_is_traced(traced[0].servers[0]) is True

        replacement = binary.with_name("postgres.new")  # as dpkg installs a new version
        shutil.copy2(binary, replacement)
        os.replace(replacement, binary)
        (replaced_line,) = watch.check().messages
        assert replaced_line.startswith(f"{binary} was replaced on disk by a new file")
        assert "is not traced until dbprobe has attached to the new file" in replaced_line
        assert watch.restart_is_traced(traced[0].servers[0]) is False

        old_pid = pg_server.pid
        pg_server.restart()
        assert pg_server.pid != old_pid
        changes = watch.check()
        assert changes.messages == [f"PostgreSQL server pid {pg_server.pid} runs the new {binary} "
                                    f"and is not traced yet: attaching to the new file"]
        assert [server.pid for server in changes.untraced] == [pg_server.pid]
        assert watch.check() == Changes([], [])


@needs_root
def test_binary_option_names_the_servers_running_it(pg_server: ThrowawayPostgres, require_root_bpf) -> None:
    binary = os.path.realpath(pg_server.bindir / "postgres")
    finished = run_dbprobe("slow", "--binary", binary, "--duration", "1")
    assert finished.returncode == 0, finished.stderr
    assert f"pid {pg_server.pid} (" in finished.stderr
    assert "no server running yet" not in finished.stderr


def assert_one_line_error(finished: Finished, expected: str) -> None:
    assert finished.returncode == 2, (finished.stdout, finished.stderr)
    assert finished.stderr.splitlines() == [f"dbprobe: error: {expected}"]


@needs_root
def test_binary_option_refuses_what_is_no_server_binary_of_this_machine(tmp_path: Path, require_root_bpf) -> None:
    fifo = tmp_path / "postgres"
    os.mkfifo(fifo)
    assert_one_line_error(run_dbprobe("slow", "--binary", str(fifo)),
                          f"--binary {fifo}: a named pipe (FIFO), not a server binary")
    assert_one_line_error(run_dbprobe("locks", "--binary", "/dev/null"),
                          "--binary /dev/null: a character device, not a server binary")

    foreign = tmp_path / "aarch64" / "postgres"  # the server, its header saying AArch64
    foreign.parent.mkdir()
    shutil.copy(os.path.realpath(installed_postgres_bindir() / "postgres"), foreign)
    with open(foreign, "r+b") as file:
        file.seek(18)  # e_machine
        file.write((183).to_bytes(2, "little"))  # EM_AARCH64
    finished = run_dbprobe("slow", "--binary", str(foreign))
    assert_one_line_error(finished, f"--binary {foreign}: built for aarch64, and this machine is "
                                    f"x86_64: only its own binaries can be traced")
