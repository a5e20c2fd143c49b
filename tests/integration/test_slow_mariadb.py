"""``dbprobe slow`` against a real MariaDB server with real BPF (uprobes on dispatch_command).

Statements go through the mariadb client (the text protocol: one COM_QUERY a statement) and
through MySQL Connector/Python's prepared cursors and commands (the binary protocol:
COM_STMT_PREPARE, then COM_STMT_EXECUTE).
"""

from __future__ import annotations

import time

import pytest

from tests.support.tracing import DbprobeRun

SLOW_S = 0.3
THRESHOLD = "100ms"
TOLERANCE_MS = 150  # scheduling on a busy two-core machine; never below the true duration


@pytest.fixture
def mariadb(mariadb_server, require_root_bpf):
    return mariadb_server


def connect(server):
    import mysql.connector

    return mysql.connector.connect(unix_socket=str(server.socket), user="root", use_pure=True)


def trace(server, *options: str) -> DbprobeRun:
    run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, *options, "-p", str(server.pid)])
    run.wait_attached()
    return run


def assert_lasted(query: dict, seconds: float) -> None:
    assert seconds * 1000 <= query["duration_ms"] < seconds * 1000 + TOLERANCE_MS, query


def test_reports_slow_text_statements_and_counts_fast_ones(mariadb):
    run = trace(mariadb)
    mariadb.sql(f"SELECT SLEEP({SLOW_S}), 'secret-value';" + " SELECT 1;" * 50)
    # SQL-level prepared statements travel as text, like any other statement.
    mariadb.sql(f"PREPARE s FROM 'SELECT SLEEP({SLOW_S})'; EXECUTE s; DEALLOCATE PREPARE s;")
    finished = run.finish()

    queries = finished.events("query")
    assert [q["query"] for q in queries] == ["SELECT SLEEP(?), ?", "EXECUTE s"]
    for query in queries:
        assert_lasted(query, SLOW_S)
        assert query["protocol"] == "simple" and query["source"] == "uprobe"
        assert query["db"] == "mariadb" and query["database"] is None
        assert query["pid"] == mariadb.pid and query["tid"] != mariadb.pid
    assert "secret-value" not in finished.stdout

    summary = finished.events("summary")[-1]
    assert summary["slow"] == 2
    # The fast statements never reached user space, yet the kernel counted every one.
    assert summary["statements"] >= 2 + 50 + 2
    assert summary["statements_by_protocol"]["simple"] == summary["statements"]
    assert sum(bucket["count"] for bucket in summary["histogram_us"]) == summary["statements"]
    assert summary["lost_events"] == 0
    assert "mariadb 10." in finished.stderr and "via uprobe" in finished.stderr


def test_show_literals_prints_the_statement_as_sent(mariadb):
    run = trace(mariadb, "--show-literals")
    mariadb.sql(f"SELECT 'visible-literal', SLEEP({SLOW_S})")
    (query,) = run.finish().events("query")
    assert query["query"] == f"SELECT 'visible-literal', SLEEP({SLOW_S})"


def test_statements_running_at_once_are_paired_per_thread(mariadb):
    run = trace(mariadb, "--show-literals")
    first = mariadb.run_client(["-e", "SELECT SLEEP(0.6), 'first'"])
    time.sleep(0.2)
    second = mariadb.run_client(["-e", f"SELECT SLEEP({SLOW_S}), 'second'"])
    assert second.wait(10) == 0 and first.wait(10) == 0
    queries = {q["query"]: q for q in run.finish().events("query")}

    assert set(queries) == {"SELECT SLEEP(0.6), 'first'", f"SELECT SLEEP({SLOW_S}), 'second'"}
    assert_lasted(queries["SELECT SLEEP(0.6), 'first'"], 0.6)
    assert_lasted(queries[f"SELECT SLEEP({SLOW_S}), 'second'"], SLOW_S)
    assert len({q["tid"] for q in queries.values()}) == 2


def test_prepared_statement_executed_inside_a_transaction(mariadb):
    with connect(mariadb) as connection:
        run = trace(mariadb)
        connection.start_transaction()
        slow = connection.cursor(prepared=True)
        slow.execute("SELECT SLEEP(?), ?", (SLOW_S, "secret-value"))
        slow.fetchall()
        fast = connection.cursor(prepared=True)
        for number in range(30):
            fast.execute("SELECT ? + 1", (number,))
            fast.fetchall()
        connection.commit()
        finished = run.finish()

    (query,) = finished.events("query")
    assert query["query"] == "SELECT SLEEP(?), ?"
    assert query["protocol"] == "prepared" and query["source"] == "uprobe"
    assert_lasted(query, SLOW_S)
    summary = finished.events("summary")[-1]
    assert summary["statements_by_protocol"]["prepared"] == 1 + 30
    assert summary["statements_by_protocol"]["simple"] >= 2  # START TRANSACTION, COMMIT


def test_statement_prepared_before_attach_is_named_by_its_id(mariadb):
    # DO runs its expressions and returns no result set: nothing to read after an execute.
    with connect(mariadb) as connection:
        before = connection.cmd_stmt_prepare(b"DO SLEEP(?)")
        run = trace(mariadb, "--show-literals")
        after = connection.cmd_stmt_prepare(b"DO SLEEP(?), 'after'")
        for prepared in (before, after):
            connection.cmd_stmt_execute(prepared["statement_id"], data=(SLOW_S,),
                                        parameters=prepared["parameters"])
        connection.cmd_stmt_close(after["statement_id"])
        finished = run.finish()

    unknown, known = finished.events("query")
    assert unknown["query"] == f"EXECUTE <prepared statement #{before['statement_id']}>"
    assert known["query"] == "DO SLEEP(?), 'after'"
    for query in (unknown, known):
        assert query["protocol"] == "prepared"
        assert_lasted(query, SLOW_S)
