"""``dbprobe locks`` against a real Oracle MySQL 9 server in a container, real contention.

MySQL reports its waits to its thread scheduler (thd_wait_begin/thd_wait_end, C++
functions since 8.0) and metadata-lock waits in MDL_wait::timed_wait: each wait comes with
its kind, how it ended and the waiter's statement, never with the holder. The server is
Debian unstable's, in its own namespaces and root (tests/support/contained_mysql.py);
sessions are MySQL Connector/Python connections over its socket.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.sessions import TOLERANCE_MS, Hold, Waiter, assert_waited, run
from tests.support.tracing import DbprobeRun

HOLD_S = 1.2  # how long the holder keeps its lock once the waiter queues: one lock_waiting
SCHEMA = "dbprobe_locks"


@pytest.fixture
def mysql(contained_mysql, require_root_bpf):
    contained_mysql.sql(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
    return contained_mysql


@pytest.fixture
def table(mysql):
    name = f"{SCHEMA}.accounts_{uuid.uuid4().hex[:8]}"
    mysql.sql(f"CREATE TABLE {name} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
              f"INSERT INTO {name} VALUES (1, 0), (2, 0), (3, 0)")
    yield name
    mysql.sql(f"DROP TABLE IF EXISTS {name}")


def trace(server) -> DbprobeRun:
    tracing = DbprobeRun(["locks", "--json", "-p", str(server.pid)])
    tracing.wait_attached()
    return tracing


def assert_timed_out(waiter: Waiter) -> None:
    assert waiter.error is not None and getattr(waiter.error, "errno", None) == 1205, waiter.error


def assert_from_the_container(wait: dict, server) -> None:
    assert (wait["db"], wait["mode"], wait["blockers"], wait["source"]) == ("mysql", "-", [], "uprobe")
    assert wait["pid"] == server.pid and wait["tid"] != server.pid


def test_innodb_row_lock_waits_granted_and_timed_out(mysql, table):
    with mysql.connect() as holder, mysql.connect() as waiting:
        tracing = trace(mysql)
        run(holder, "BEGIN")
        run(holder, f"UPDATE {table} SET v = 1 WHERE id = 1")
        hold = Hold(queued=time.time())
        waiter = Waiter(waiting, f"UPDATE {table} SET v = 2 WHERE id = 1")
        time.sleep(HOLD_S)
        hold.releasing = time.time()
        run(holder, "COMMIT")
        hold.released = time.time()
        waiter.join()
        # Held past innodb_lock_wait_timeout: the waiter gives up after a second.
        run(waiting, "SET SESSION innodb_lock_wait_timeout = 1")
        run(holder, "BEGIN")
        run(holder, f"UPDATE {table} SET v = 1 WHERE id = 2")
        timed_out = Waiter(waiting, f"UPDATE {table} SET v = 2 WHERE id = 2")
        timed_out.join()
        run(holder, "COMMIT")
        finished = tracing.finish()

    assert waiter.error is None, waiter.error
    assert_timed_out(timed_out)
    granted, gave_up = finished.events("lock_wait")
    for wait in (granted, gave_up):
        assert (wait["locktype"], wait["target"]) == ("row lock", "an InnoDB row lock")
        assert wait["query"] == f"UPDATE {table} SET v = ? WHERE id = ?"
        # InnoDB does not tell a granted lock from a timeout through these functions.
        assert wait["outcome"] == "ended"
        assert_from_the_container(wait, mysql)
    assert_waited(granted, hold)
    assert 1000 - 10 <= gave_up["wait_ms"] < 1000 + TOLERANCE_MS, gave_up
    # A wait longer than a second is shown while it lasts.
    assert granted["tid"] in [event["tid"] for event in finished.events("lock_waiting")]

    summary = finished.events("summary")[-1]
    assert (summary["waits"], summary["still_waiting"], summary["lost_events"]) == (2, 0, 0)
    (target,) = summary["targets"]
    assert (target["target"], target["locktype"], target["waits"]) == ("an InnoDB row lock", "row lock", 2)
    assert f"mysql {mysql.rootfs.version}: pid {mysql.pid}" in finished.stderr
    assert "MDL_wait::timed_wait" in finished.stderr  # the variant that knows metadata-lock kinds


def test_metadata_lock_waits_granted_and_timed_out(mysql, table):
    with mysql.connect() as holder, mysql.connect() as waiting:
        tracing = trace(mysql)
        # An open transaction that read the table holds its shared metadata lock: DDL waits.
        run(holder, "BEGIN")
        run(holder, f"SELECT v FROM {table} WHERE id = 3")
        hold = Hold(queued=time.time())
        waiter = Waiter(waiting, f"ALTER TABLE {table} ADD COLUMN w INT")
        time.sleep(HOLD_S)
        hold.releasing = time.time()
        run(holder, "COMMIT")
        hold.released = time.time()
        waiter.join()
        # LOCK TABLES ... WRITE held past lock_wait_timeout: the reader gives up after a second.
        run(waiting, "SET SESSION lock_wait_timeout = 1")
        run(holder, f"LOCK TABLES {table} WRITE")
        timed_out = Waiter(waiting, f"SELECT v FROM {table} WHERE id = 3")
        timed_out.join()
        run(holder, "UNLOCK TABLES")
        finished = tracing.finish()

    assert waiter.error is None, waiter.error
    assert_timed_out(timed_out)
    granted, gave_up = finished.events("lock_wait")
    for wait in (granted, gave_up):
        assert (wait["locktype"], wait["target"]) == ("metadata lock", "a table metadata lock")
        assert_from_the_container(wait, mysql)
    assert (granted["outcome"], granted["query"]) == ("granted", f"ALTER TABLE {table} ADD COLUMN w INT")
    assert_waited(granted, hold)
    assert (gave_up["outcome"], gave_up["query"]) == ("timeout", f"SELECT v FROM {table} WHERE id = ?")
    assert 1000 - 10 <= gave_up["wait_ms"] < 1000 + TOLERANCE_MS, gave_up

    summary = finished.events("summary")[-1]
    assert (summary["waits"], summary["still_waiting"], summary["lost_events"]) == (2, 0, 0)


def test_sleep_and_fast_statements_are_no_lock_waits(mysql, table):
    with mysql.connect() as session:
        tracing = trace(mysql)
        run(session, "SELECT SLEEP(0.5)")
        for number in range(30):
            run(session, f"UPDATE {table} SET v = {number} WHERE id = 3")
            run(session, f"SELECT v FROM {table} WHERE id = 3")
        finished = tracing.finish()

    assert finished.events("lock_wait") == [] and finished.events("lock_waiting") == []
    summary = finished.events("summary")[-1]
    assert (summary["waits"], summary["still_waiting"], summary["lost_events"]) == (0, 0, 0)
