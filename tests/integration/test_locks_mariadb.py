"""``dbprobe locks`` against a real MariaDB server with real BPF, real contention between sessions.

MariaDB reports its waits to its thread scheduler (thd_wait_begin/thd_wait_end) and
metadata-lock waits in MDL_wait::timed_wait: the waits come with their kind (an InnoDB row
lock, a table metadata lock, a user lock...) and the waiter's statement, never with the
holder. Sessions are MySQL Connector/Python connections; a waiting statement runs on a
thread of the test while another session holds the lock.
"""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest

from tests.support.sessions import TOLERANCE_MS, Hold, Waiter, assert_waited, run
from tests.support.tracing import DbprobeRun, Finished

HOLD_S = 1.2  # how long the holder keeps its lock once the waiter queues
SCHEMA = "dbprobe_locks"
# A wait's first line in the text report, once it has ended.
ENDED_WAIT = re.compile(r"^[\d:.]+ pid (?P<pid>\d+) -: waited (?P<ms>[\d.]+) ms"
                        r"(?: \((?P<outcome>\w+)\))? for (?P<target>.+)$")


@pytest.fixture
def mariadb(mariadb_server, require_root_bpf):
    mariadb_server.sql(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
    return mariadb_server


@pytest.fixture
def table(mariadb):
    name = f"{SCHEMA}.accounts_{uuid.uuid4().hex[:8]}"
    mariadb.sql(f"CREATE TABLE {name} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;"
                f"INSERT INTO {name} VALUES (1, 0), (2, 0), (3, 0)")
    yield name
    mariadb.sql(f"DROP TABLE IF EXISTS {name}")


def connect(server):
    import mysql.connector

    return mysql.connector.connect(unix_socket=str(server.socket), user="root", use_pure=True,
                                   autocommit=True)


def trace(server, *options: str) -> DbprobeRun:
    tracing = DbprobeRun(["locks", *options, "-p", str(server.pid)])
    tracing.wait_attached()
    return tracing


def stop(tracing: DbprobeRun) -> Finished:
    time.sleep(0.3)  # let the last events reach dbprobe
    finished = tracing.stop(signal.SIGTERM)
    assert finished.returncode == 0, finished.stderr
    return finished


def test_row_lock_wait_with_the_waiters_statement(mariadb, table):
    with connect(mariadb) as holder, connect(mariadb) as waiting:
        tracing = trace(mariadb, "--json")
        run(holder, "BEGIN")
        run(holder, f"UPDATE {table} SET v = 1 WHERE id = 1")
        hold = Hold(queued=time.time())
        waiter = Waiter(waiting, f"UPDATE {table} SET v = 2 WHERE id = 1")
        time.sleep(HOLD_S)
        hold.releasing = time.time()
        run(holder, "COMMIT")
        hold.released = time.time()
        waiter.join()
        finished = stop(tracing)

    assert waiter.error is None, waiter.error
    (wait,) = finished.events("lock_wait")
    assert (wait["locktype"], wait["mode"], wait["target"]) == ("row lock", "-", "an InnoDB row lock")
    assert wait["query"] == f"UPDATE {table} SET v = ? WHERE id = ?"
    assert_waited(wait, hold)
    # InnoDB does not tell a granted lock from a timeout through these functions.
    assert wait["outcome"] == "ended"
    assert wait["blockers"] == []
    assert (wait["db"], wait["pid"], wait["source"]) == ("mariadb", mariadb.pid, "uprobe")
    assert wait["tid"] != mariadb.pid
    # A wait longer than a second is shown while it lasts, before it ends.
    (waiting_event,) = finished.events("lock_waiting")
    assert (waiting_event["tid"], waiting_event["query"]) == (wait["tid"], wait["query"])

    summary = finished.events("summary")[-1]
    assert (summary["waits"], summary["still_waiting"], summary["lost_events"]) == (1, 0, 0)
    (target,) = summary["targets"]
    assert (target["target"], target["locktype"], target["waits"]) == ("an InnoDB row lock", "row lock", 1)
    assert summary["waiting_statements"][0]["query"] == wait["query"]


@pytest.mark.parametrize("output", ["--json", "text"])
def test_double_quoted_string_literals_are_hidden(mariadb, table, output):
    # "..." is a string in MySQL's dialect, not an identifier: its value is a literal to hide.
    with connect(mariadb) as holder, connect(mariadb) as waiting:
        tracing = trace(mariadb, *([output] if output == "--json" else []))
        run(holder, "BEGIN")
        run(holder, f"UPDATE {table} SET v = 1 WHERE id = 3")
        waiter = Waiter(waiting, f'UPDATE {table} SET v = LENGTH("secret-value") WHERE id = 3')
        time.sleep(0.3)
        run(holder, "COMMIT")
        waiter.join()
        finished = stop(tracing)

    assert waiter.error is None, waiter.error
    normalised = f"UPDATE {table} SET v = LENGTH(?) WHERE id = ?"
    if output == "--json":
        (wait,) = finished.events("lock_wait")
        assert wait["query"] == normalised
        assert finished.events("summary")[-1]["waiting_statements"][0]["query"] == normalised
    else:
        assert f"    waiter:  {normalised}" in finished.stdout.splitlines(), finished.stdout
    assert "secret-value" not in finished.stdout


def test_metadata_lock_wait_is_one_wait_however_many_seconds(mariadb, table):
    # The server waits for a metadata lock one second at a time; dbprobe reports one wait.
    held_s = 2.5
    with connect(mariadb) as holder, connect(mariadb) as waiting:
        tracing = trace(mariadb, "--json")
        run(holder, f"LOCK TABLES {table} WRITE")
        hold = Hold(queued=time.time())
        waiter = Waiter(waiting, f"SELECT v FROM {table} WHERE id = 2")
        time.sleep(held_s)
        hold.releasing = time.time()
        run(holder, "UNLOCK TABLES")
        hold.released = time.time()
        waiter.join()
        finished = stop(tracing)

    assert waiter.rows == [(0,)]
    (wait,) = finished.events("lock_wait")
    assert (wait["locktype"], wait["target"]) == ("metadata lock", "a table metadata lock")
    assert wait["outcome"] == "granted"
    assert wait["query"] == f"SELECT v FROM {table} WHERE id = ?"
    assert_waited(wait, hold)
    assert len(finished.events("lock_waiting")) == 1


def test_get_lock_waits_granted_and_timed_out(mariadb):
    name = f"dbprobe-{uuid.uuid4().hex[:8]}"
    with connect(mariadb) as holder, connect(mariadb) as waiting:
        tracing = trace(mariadb)
        run(holder, f"SELECT GET_LOCK('{name}', 10)")
        assert run(waiting, f"SELECT GET_LOCK('{name}', 1)") == [(0,)]  # timed out
        waiter = Waiter(waiting, f"SELECT GET_LOCK('{name}', 10)")
        time.sleep(0.5)
        run(holder, f"SELECT RELEASE_LOCK('{name}')")
        waiter.join()
        run(waiting, f"SELECT RELEASE_LOCK('{name}')")
        finished = stop(tracing)

    assert waiter.rows == [(1,)]
    lines = finished.stdout.splitlines()
    ended = [match for match in map(ENDED_WAIT.match, lines) if match]
    assert [(int(m["pid"]), m["outcome"], m["target"]) for m in ended] == [
        (mariadb.pid, "timeout", "a user lock (GET_LOCK)"),
        (mariadb.pid, None, "a user lock (GET_LOCK)"),
    ], finished.stdout
    # GET_LOCK times out a second after it asked, just before its wait began.
    assert 1000 - 10 <= float(ended[0]["ms"]) < 1000 + TOLERANCE_MS
    for match in ended:
        waiter_line, blocker_line = lines[lines.index(match.string) + 1:][:2]
        assert waiter_line == "    waiter:  SELECT GET_LOCK(?, ?)"
        assert blocker_line == ("    blocker: unknown (the server does not tell which session holds "
                                "the lock; ask it: SELECT IS_USED_LOCK('name') gives the holder's "
                                "connection id)")
    assert name not in finished.stdout  # literals stay out without --show-literals
    (digest_row,) = [line for line in lines if line.startswith("a user lock (GET_LOCK) ")]
    assert digest_row.split()[4:6] == ["-", "2"]  # no mode; two waits


def test_sleep_and_fast_statements_are_no_lock_waits(mariadb, table):
    with connect(mariadb) as session:
        tracing = trace(mariadb, "--json")
        run(session, "SELECT SLEEP(0.5)")
        for number in range(30):
            run(session, f"UPDATE {table} SET v = {number} WHERE id = 3")
            run(session, f"SELECT v FROM {table} WHERE id = 3")
        finished = stop(tracing)

    assert finished.events("lock_wait") == [] and finished.events("lock_waiting") == []
    summary = finished.events("summary")[-1]
    assert (summary["waits"], summary["still_waiting"], summary["lost_events"]) == (0, 0, 0)


def test_dsn_is_refused_for_a_mariadb_server(mariadb):
    finished = DbprobeRun(["locks", "--dsn", "host=/tmp", "-p", str(mariadb.pid)]).wait()
    assert finished.returncode == 2
    assert finished.stderr == (f"dbprobe: error: --dsn is a PostgreSQL connection string, and pid "
                               f"{mariadb.pid} is a MariaDB server: leave --dsn out\n")
    assert finished.stdout == ""


def test_list_shows_the_locks_family_via_uprobe(mariadb):
    finished = DbprobeRun(["list", "--json", "-p", str(mariadb.pid)]).wait()
    assert finished.returncode == 0, finished.stderr
    (server,) = finished.json_lines()
    locks = server["families"]["locks"]
    assert locks["mechanism"] == "uprobe"
    assert {"dispatch_command", "thd_wait_begin", "thd_wait_end"} <= set(locks["probes"])
