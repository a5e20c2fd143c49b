"""A server binary replaced on disk by a new file (what a package upgrade does: ``mv`` of a
new inode into place) and the server restarted on it: the one-shot commands attach to the
new file and go on, into the same report and digest, and detach both programs on exit."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbprobe.binary.elf import ElfBinary
from dbprobe.demo.server import ThrowawayPostgres
from tests.support.pgcopy import make_copy
from tests.support.tracing import DbprobeRun, run_dbprobe, semaphore_value, uprobe_events_left

SLOW_S = 0.25
THRESHOLD = "120ms"
REATTACH_TIMEOUT_S = 120.0  # a scan (every 5 s) and a compile, on a busy two-core machine
TRACED_AGAIN = "is traced again: attached"


@pytest.fixture
def copied_postgres(require_root_bpf) -> Iterator[ThrowawayPostgres]:
    """A cluster running a copy of the installed PostgreSQL (USDT notes and semaphores
    kept), which the test may replace: no other tracer is on this file."""
    copy_root = Path(tempfile.mkdtemp(prefix="dbprobe-replaced-"))
    copy_root.chmod(0o755)  # the postgres OS user runs programs from it
    try:
        with ThrowawayPostgres(bindir=make_copy(copy_root / "postgresql")) as server:
            yield server
    finally:
        shutil.rmtree(copy_root, ignore_errors=True)


def replace_binary(binary: Path) -> None:
    """As dpkg installs a new version: a new file renamed over the old one."""
    replacement = binary.with_name("postgres.dpkg-new")
    shutil.copy2(binary, replacement)
    before = os.stat(binary).st_ino
    os.replace(replacement, binary)
    assert os.stat(binary).st_ino != before


def wait_for(run: DbprobeRun, text: str, timeout: float) -> float:
    started = time.monotonic()
    while text not in run.stderr:
        assert run.process.poll() is None, f"dbprobe exited:\n{run.stderr}"
        assert time.monotonic() - started < timeout, f"no {text!r} within {timeout} s:\n{run.stderr}"
        time.sleep(0.1)
    return time.monotonic() - started


def query_semaphore(binary: Path) -> int:
    # One probe, one semaphore, however many places the probe is at.
    sites = ElfBinary(str(binary)).usdt_probe_sites("postgresql", "query__execute__done")
    (semaphore,) = {site.semaphore for site in sites}
    assert semaphore, "the packaged postgres has USDT semaphores"
    return semaphore


@pytest.mark.parametrize("selector", ["-p", "--binary"])
def test_slow_attaches_to_the_new_file_of_a_restarted_server(copied_postgres: ThrowawayPostgres,
                                                             selector: str) -> None:
    pg = copied_postgres
    binary = pg.bindir / "postgres"
    semaphore = query_semaphore(binary)
    chosen = str(pg.pid) if selector == "-p" else str(binary)
    run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, selector, chosen])
    run.wait_attached()
    assert "no server running yet" not in run.stderr
    pg.psql(f"select pg_sleep({SLOW_S}), 'before';")

    replace_binary(binary)
    old_pid = pg.pid
    pg.restart()
    assert pg.pid != old_pid
    waited = wait_for(run, TRACED_AGAIN, REATTACH_TIMEOUT_S)
    print(f"\nthe restarted server was traced again {waited:.1f} s after it started")
    # Our program, on the new file (raised once per place the probe is at).
    assert semaphore_value(pg.pid, str(binary), semaphore) >= 1, run.stderr
    pg.psql(f"select pg_sleep({SLOW_S}), 'after';")
    new_pid = pg.pid
    finished = run.finish(settle_s=0.5)

    queries = [query for query in finished.events("query") if query["query"].startswith("select pg_sleep")]
    assert [query["query"] for query in queries] == ["select pg_sleep(?), ?"] * 2
    assert len({query["pid"] for query in queries}) == 2
    assert finished.events("summary")[-1]["slow"] == 2  # one digest for both programs
    assert (f"PostgreSQL server pid {new_pid} runs the new {binary} and is not traced yet: "
            f"attaching to the new file") in finished.stderr
    assert f"PostgreSQL server pid {new_pid} {TRACED_AGAIN}" in finished.stderr
    assert f"PostgreSQL server pid {old_pid} stopped; still tracing" in finished.stderr
    # Both programs detached: nothing left in tracefs, the new file's semaphore back to 0.
    assert uprobe_events_left({run.process.pid}) == []
    assert semaphore_value(new_pid, str(binary), semaphore) == 0


def test_txn_and_locks_follow_the_restarted_server_too(copied_postgres: ThrowawayPostgres) -> None:
    pg = copied_postgres
    binary = pg.bindir / "postgres"
    txn = DbprobeRun(["txn", "--json", "--threshold", THRESHOLD, "-p", str(pg.pid)])
    locks = DbprobeRun(["locks", "--json", "--binary", str(binary)])
    txn.wait_attached()
    locks.wait_attached()
    replace_binary(binary)
    pg.restart()
    for run in (txn, locks):
        wait_for(run, TRACED_AGAIN, REATTACH_TIMEOUT_S)
    with pg.connect() as connection:
        backend = connection.execute("select pg_backend_pid()").fetchone()[0]
        with connection.transaction():
            connection.execute("select pg_sleep(%s)", (SLOW_S,))
    finished_txn, finished_locks = txn.finish(settle_s=0.5), locks.finish()

    slow = [t for t in finished_txn.events("txn") if t["duration_ms"] >= SLOW_S * 1000]
    assert [t["pid"] for t in slow] == [backend], finished_txn.stdout
    assert finished_txn.events("summary")[-1]["commits"] >= 1
    assert finished_locks.events("summary"), finished_locks.stdout
    for run in (txn, locks):
        assert f"PostgreSQL server pid {pg.pid} {TRACED_AGAIN}" in run.stderr
        assert uprobe_events_left({run.process.pid}) == []
    assert semaphore_value(pg.pid, str(binary), query_semaphore(binary)) == 0


def test_binary_option_names_the_servers_of_its_file_through_a_link_or_replaced(
        copied_postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    pg = copied_postgres
    binary = pg.bindir / "postgres"
    link = tmp_path / "postgres"  # as /usr/bin/postgres links to the installed one
    link.symlink_to(binary)
    finished = run_dbprobe("slow", "--binary", str(link), "--duration", "0.5")
    assert finished.returncode == 0, finished.stderr
    assert "postgresql 15" in finished.stderr and f": pid {pg.pid} (" in finished.stderr
    assert f"query: {binary} via usdt" in finished.stderr
    assert "no server running yet" not in finished.stderr

    replace_binary(binary)  # the server runs the old file now, which the path no longer names
    finished = run_dbprobe("slow", "--binary", str(binary), "--duration", "0.5")
    assert finished.returncode == 0, finished.stderr
    assert (f"PostgreSQL server pid {pg.pid} runs the file {binary} named before it was "
            f"replaced, and --binary {binary} does not trace it: trace it with -p {pg.pid}"
            ) in finished.stderr
