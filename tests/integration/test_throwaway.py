"""The throwaway servers are real, run as their OS users, and leave nothing behind."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
import pytest

from dbprobe.errors import DbprobeError
from dbprobe.demo.server import ThrowawayPostgres, installed_postgres_bindir
from tests.support.mariadb import ThrowawayMariaDB
from tests.support.pgcopy import has_usdt_notes


def expected_server_uid(os_user: str) -> int:
    return pwd.getpwnam(os_user).pw_uid if os.geteuid() == 0 else os.geteuid()


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    return {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="tcp")
        if conn.pid == pid and conn.status == psutil.CONN_LISTEN
    }


def server_processes(pid: int) -> list[psutil.Process]:
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


def assert_all_gone(processes: list[psutil.Process]) -> None:
    survivors = [proc.pid for proc in processes if proc.is_running() and proc.status() != "zombie"]
    assert survivors == []


def notes_mentioning_stapsdt(binary: Path) -> int:
    notes = subprocess.run(
        ["readelf", "--notes", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    return notes.count("stapsdt")


def pg_config_sharedir(bindir: Path) -> Path:
    return Path(
        subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )


# --- PostgreSQL ---------------------------------------------------------------------


def test_postgres_runs_as_postgres_user_and_leaves_nothing_behind() -> None:
    server = ThrowawayPostgres().start()
    try:
        assert server.psql("select 1").strip() == "1"
        postmaster = psutil.Process(server.pid)
        assert postmaster.uids().effective == expected_server_uid("postgres")
        assert Path(postmaster.exe()) == server.bindir / "postgres"
        assert listening_addresses(server.pid) == {("127.0.0.1", server.port)}
        assert server.port not in (5432, 3306)
        assert (server.socket_dir / f".s.PGSQL.{server.port}").is_socket()
        processes = server_processes(server.pid)
        assert len(processes) > 1  # the postmaster and its auxiliary processes
        workdir = server.workdir
        assert workdir.stat().st_mode & 0o777 == 0o700
        assert workdir.stat().st_uid == expected_server_uid("postgres")
    finally:
        server.stop()
    assert_all_gone(processes)
    assert not workdir.exists()
    server.stop()  # idempotent


def test_postgres_fixture_answers_through_psql_and_psycopg(pg_server: ThrowawayPostgres) -> None:
    assert pg_server.psql("select 40 + 2").strip() == "42"
    with pg_server.connect() as conn:
        row = conn.execute("select current_user, current_setting('port')::int").fetchone()
    assert row == ("postgres", pg_server.port)
    assert f"port={pg_server.port}" in pg_server.dsn


def test_postgres_psql_reports_errors_as_one_line(pg_server: ThrowawayPostgres) -> None:
    with pytest.raises(DbprobeError, match="ERROR: .*no_such_table"):
        pg_server.psql("select * from no_such_table")
    assert pg_server.psql("select * from no_such_table", check=False) == ""


def test_postgres_restart_applies_settings_on_the_same_cluster() -> None:
    with ThrowawayPostgres() as server:
        server.psql("create table survives_restart (x int); insert into survives_restart values (7)")
        first_pid = server.pid
        server.restart({"shared_preload_libraries": "pg_stat_statements"})
        assert server.pid != first_pid
        assert not psutil.pid_exists(first_pid)
        assert server.psql("show shared_preload_libraries").strip() == "pg_stat_statements"
        assert server.psql("select x from survives_restart").strip() == "7"


def test_postgres_run_as_postgres_runs_pgbench_against_the_server(
    pg_server: ThrowawayPostgres,
) -> None:
    pgbench = pg_server.run_as_postgres(
        ["pgbench", "--initialize", "--scale=1", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = pgbench.communicate(timeout=120)
    assert pgbench.returncode == 0, stderr
    assert pg_server.psql("select count(*) from pgbench_branches").strip() == "1"


def test_postgres_that_cannot_start_raises_with_its_log_and_cleans_up() -> None:
    base_dir = Path(tempfile.mkdtemp(prefix="dbprobe-test-"))
    base_dir.chmod(0o755)  # reachable by the postgres OS user
    try:
        server = ThrowawayPostgres(settings={"no_such_parameter": "1"}, base_dir=base_dir)
        with pytest.raises(DbprobeError, match="exited at start.*no_such_parameter"):
            server.start()
        assert list(base_dir.iterdir()) == []
    finally:
        shutil.rmtree(base_dir)


def test_default_ports_are_refused() -> None:
    with pytest.raises(DbprobeError, match="5432"):
        ThrowawayPostgres(port=5432)


def test_servers_left_running_are_stopped_at_interpreter_exit() -> None:
    program = textwrap.dedent(
        """
        from dbprobe.demo.server import ThrowawayPostgres
        server = ThrowawayPostgres().start()
        print(server.pid, server.workdir, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True
    )
    pid, workdir = done.stdout.split()
    assert not psutil.pid_exists(int(pid))
    assert not Path(workdir).exists()


# --- PostgreSQL without USDT --------------------------------------------------------


def test_usdt_less_copy_has_no_probes_yet_runs(
    usdt_less_postgres_bindir: Path, pg_server_no_usdt: ThrowawayPostgres
) -> None:
    original = installed_postgres_bindir() / "postgres"
    copy = usdt_less_postgres_bindir / "postgres"
    assert notes_mentioning_stapsdt(original) > 0  # the installed server has USDT probes
    assert notes_mentioning_stapsdt(copy) == 0
    assert has_usdt_notes(original) and not has_usdt_notes(copy)

    assert pg_server_no_usdt.psql("select 1").strip() == "1"
    assert Path(psutil.Process(pg_server_no_usdt.pid).exe()) == copy


def test_usdt_less_copy_finds_its_share_and_module_directories(
    usdt_less_postgres_bindir: Path, pg_server_no_usdt: ThrowawayPostgres
) -> None:
    # pg_config resolves its directories relative to its own location, as postgres does.
    original_sharedir = pg_config_sharedir(installed_postgres_bindir())
    copy_sharedir = pg_config_sharedir(usdt_less_postgres_bindir)
    assert copy_sharedir != original_sharedir
    assert copy_sharedir.resolve() == original_sharedir.resolve()
    # An extension needs both the share directory (control file) and the module directory.
    pg_server_no_usdt.psql("create extension if not exists pg_trgm")
    assert pg_server_no_usdt.psql("select similarity('dbprobe', 'dbprobe')").strip() == "1"


# --- MariaDB ------------------------------------------------------------------------


def test_mariadb_runs_as_mysql_user_and_stops_cleanly() -> None:
    server = ThrowawayMariaDB().start()
    try:
        assert server.sql("select 1").strip() == "1"
        mariadbd = psutil.Process(server.pid)
        assert mariadbd.uids().effective == expected_server_uid("mysql")
        assert Path(mariadbd.exe()) == server.binary.resolve()
        assert listening_addresses(server.pid) == {("127.0.0.1", server.port)}
        assert server.sql("select @@socket").strip() == str(server.socket)
        workdir = server.workdir
    finally:
        server.stop()
    assert_all_gone([mariadbd])
    assert not workdir.exists()
    server.stop()  # idempotent


def test_mariadb_fixture_answers_sql_and_client_sessions(mariadb_server: ThrowawayMariaDB) -> None:
    mariadb_server.sql("create database if not exists probe_db")
    mariadb_server.sql("create table if not exists t (x int)", database="probe_db")
    mariadb_server.sql("insert into t values (5)", database="probe_db")
    assert mariadb_server.sql("select sum(x) from t", database="probe_db").strip() == "5"

    client = mariadb_server.run_client(
        ["--batch", "--skip-column-names", "-e", "select 'from a client session'"],
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout, _ = client.communicate(timeout=60)
    assert client.returncode == 0
    assert stdout.strip() == "from a client session"
