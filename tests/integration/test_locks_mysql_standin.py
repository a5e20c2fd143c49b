"""``dbprobe locks --binary`` on the MySQL stand-in (tests/fixtures/mysql8_standin.cc), real BPF.

A real MySQL 9 server is traced in test_locks_mysql_real.py; MySQL 5.x and 8.0 builds are
imitated here, since no package of theirs is reachable. The stand-in reports its waits as
mysqld does:
thd_wait_begin/thd_wait_end (C++ functions as in MySQL 8, C ones in the 5.6 flavour) and
metadata-lock waits in MDL_wait::timed_wait, a second at a time; its statements arrive
through dispatch_command in either layout the MySQL recipe knows. This proves the recipe
binds and the program pairs the waits; it proves nothing of a real mysqld's call sites.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.standin import StandinFlavour, StandinServer, build_standin
from tests.support.tracing import DbprobeRun, Finished

TOLERANCE_MS = 300  # scheduling on a busy machine; never below the true wait

DISPATCH_LAYOUTS = {
    "8.0": StandinFlavour(version="8.0.36"),
    "5.6": StandinFlavour(version="5.6.51", packet_signature=True),
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mysql-lock-standins")
    return {name: build_standin(directory, flavour) for name, flavour in DISPATCH_LAYOUTS.items()}


def stop(tracing: DbprobeRun) -> Finished:
    time.sleep(0.3)  # let the last events reach dbprobe
    finished = tracing.stop(signal.SIGTERM)
    assert finished.returncode == 0, finished.stderr
    return finished


def assert_waited(wait: dict, ms: int) -> None:
    # The stand-in sets a metadata lock's release time a few microseconds before it waits.
    assert ms - 1 <= wait["wait_ms"] < ms + TOLERANCE_MS, wait


@pytest.mark.parametrize("layout", DISPATCH_LAYOUTS)
def test_row_and_metadata_lock_waits(layout, standins, require_root_bpf):
    tracing = DbprobeRun(["locks", "--json", "--binary", str(standins[layout])])
    tracing.wait_attached()
    with StandinServer(standins[layout]) as server:
        server.query_waiting("rowlock", "UPDATE t SET v = 2 WHERE id = 1", ms=300)
        # Three calls of MDL_wait::timed_wait: two short waits that expire, then the grant.
        server.query_waiting("mdl", "ALTER TABLE t ADD COLUMN w INT", ms=2300)
        server.query_waiting("sleep", "SELECT SLEEP(0.3)", ms=300)
        for _ in range(20):
            server.query("SELECT 1")
        finished = stop(tracing)

    row, metadata = finished.events("lock_wait")
    assert (row["locktype"], row["target"], row["outcome"]) == ("row lock", "an InnoDB row lock", "ended")
    assert row["query"] == "UPDATE t SET v = ? WHERE id = ?"
    assert_waited(row, 300)
    assert (metadata["locktype"], metadata["target"]) == ("metadata lock", "a table metadata lock")
    assert metadata["outcome"] == "granted"
    assert metadata["query"] == "ALTER TABLE t ADD COLUMN w INT"
    assert_waited(metadata, 2300)
    for wait in (row, metadata):
        assert (wait["db"], wait["mode"], wait["blockers"], wait["source"]) == ("mysql", "-", [], "uprobe")
    summary = finished.events("summary")[-1]
    assert (summary["waits"], summary["still_waiting"], summary["lost_events"]) == (2, 0, 0)
    assert "MDL_wait" in finished.stderr  # the recipe's variant with metadata-lock kinds
