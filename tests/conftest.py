"""Shared fixtures: throwaway database servers, started only by the tests that ask for them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbprobe.demo.server import ThrowawayPostgres
from tests.support.mariadb import ThrowawayMariaDB
from tests.support.pgcopy import make_usdt_less_copy

INTEGRATION_DIR = Path(__file__).parent / "integration"
ROOT_BPF_REASON = "needs root and BPF (CI runs as root)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration/ as ``integration`` (declared in pyproject)."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def _stale_events_before_the_tests() -> set[str]:
    from tests.support.tracing import stale_uprobe_events

    return set(stale_uprobe_events())


@pytest.fixture(autouse=True)
def _no_tracer_outlives_its_test(request: pytest.FixtureRequest,
                                 _stale_events_before_the_tests: set[str]) -> Iterator[None]:
    """A test that fails before stopping its dbprobe must not leave it attached, and no
    integration test may leave a uprobe event of dbprobe's defined in tracefs: neither one
    of the processes it started, nor one of any dbprobe process that died during it."""
    yield
    from tests.support.tracing import kill_leftover_runs, stale_uprobe_events, uprobe_events_left

    kill_leftover_runs()
    if INTEGRATION_DIR in request.path.parents:
        left = uprobe_events_left()
        assert not left, "uprobe events left in tracefs:\n" + "\n".join(left)
        stale = set(stale_uprobe_events()) - _stale_events_before_the_tests
        assert not stale, "uprobe events of dead dbprobe processes in tracefs:\n" + "\n".join(sorted(stale))


@pytest.fixture
def require_root_bpf() -> None:
    """Skip the requesting test unless it runs as root, which BPF needs; CI runs as root."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_BPF_REASON)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def usdt_less_postgres_bindir() -> Iterator[Path]:
    """The bindir of a copy of the installed PostgreSQL whose postgres has no USDT notes."""
    copy_root = Path(tempfile.mkdtemp(prefix="dbprobe-pg-no-usdt-"))
    copy_root.chmod(0o755)  # the postgres OS user runs programs from it
    try:
        yield make_usdt_less_copy(copy_root / "postgresql")
    finally:
        shutil.rmtree(copy_root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_no_usdt(usdt_less_postgres_bindir: Path) -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres(bindir=usdt_less_postgres_bindir) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[ThrowawayMariaDB]:
    with ThrowawayMariaDB() as server:
        yield server


@pytest.fixture(scope="session")
def mysql_rootfs_cached(request: pytest.FixtureRequest):
    """Debian unstable's root file system with Oracle's MySQL server, from the day's cache."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_BPF_REASON)
    from tests.support.contained_mysql import mysql_rootfs

    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def progress(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[{message}]")

    return mysql_rootfs(progress)


@pytest.fixture(scope="session")
def contained_mysql(mysql_rootfs_cached):
    """A real Oracle MySQL server run as in a container: own pid and mount namespaces, chroot."""
    from tests.support.contained_mysql import ContainedMySQL

    with ContainedMySQL(mysql_rootfs_cached) as server:
        yield server
