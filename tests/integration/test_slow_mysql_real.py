"""``dbprobe slow`` against a real Oracle MySQL 9 server in a container, with real BPF.

The server is Debian unstable's (tests/support/contained_mysql.py): its own pid and mount
namespaces, chrooted into its root, run as that root's mysql user; dbprobe finds it
through /proc/PID/root and traces dispatch_command with uprobes. Statements go through
MySQL Connector/Python (pure Python, over the server's unix socket): plain cursors send
COM_QUERY, SQL-level PREPARE/EXECUTE are COM_QUERY too, and prepared cursors use the binary
protocol, COM_STMT_PREPARE then COM_STMT_EXECUTE, which the server's own counters confirm.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.tracing import DbprobeRun

SLOW_S = 0.3
THRESHOLD = "100ms"
TOLERANCE_MS = 150  # scheduling on a busy two-core machine; never below the true duration
SCHEMA = "dbprobe_slow"


@pytest.fixture
def mysql(contained_mysql, require_root_bpf):
    contained_mysql.sql(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
    return contained_mysql


@pytest.fixture
def table(mysql):
    name = f"{SCHEMA}.t_{uuid.uuid4().hex[:8]}"
    mysql.sql(f"CREATE TABLE {name} (id INT PRIMARY KEY, v VARCHAR(40))",
              f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b')")
    yield name
    mysql.sql(f"DROP TABLE IF EXISTS {name}")


def trace(server, *options: str) -> DbprobeRun:
    run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, *options, "-p", str(server.pid)])
    run.wait_attached()
    return run


def run(connection, sql: str) -> list:
    cursor = connection.cursor()
    cursor.execute(sql)
    rows = cursor.fetchall() if cursor.with_rows else []
    cursor.close()
    return rows


def session_counters(connection) -> dict[str, int]:
    """The server's own count of this session's prepared statements. Com_stmt_* count both
    protocols' (COM_STMT_EXECUTE and SQL EXECUTE), Com_*_sql the SQL statements alone."""
    rows = run(connection, "SHOW SESSION STATUS WHERE Variable_name LIKE 'Com\\_stmt\\_%' "
                           "OR Variable_name IN ('Com_prepare_sql', 'Com_execute_sql')")
    return {name: int(value) for name, value in rows}


def assert_lasted(query: dict, seconds: float) -> None:
    assert seconds * 1000 <= query["duration_ms"] < seconds * 1000 + TOLERANCE_MS, query


def assert_from_the_container(query: dict, server) -> None:
    assert (query["db"], query["database"], query["source"]) == ("mysql", None, "uprobe")
    assert query["pid"] == server.pid and query["tid"] != server.pid
    assert query["ns_pid"] == server.ns_pid != server.pid  # the pid inside its namespace too


def test_text_statements_are_timed_with_their_normalised_text(mysql, table):
    with mysql.connect() as connection:
        tracing = trace(mysql)
        run(connection, f"SELECT SLEEP({SLOW_S})")
        run(connection, f'UPDATE {table} SET v = "secret" WHERE id = 1 AND SLEEP({SLOW_S}) = 0')
        for _ in range(50):
            run(connection, "SELECT 1")
        finished = tracing.finish()

    queries = finished.events("query")
    assert [query["query"] for query in queries] == [
        "SELECT SLEEP(?)", f"UPDATE {table} SET v = ? WHERE id = ? AND SLEEP(?) = ?"]
    for query in queries:
        assert query["protocol"] == "simple"
        assert_lasted(query, SLOW_S)
        assert_from_the_container(query, mysql)
    assert "secret" not in finished.stdout

    summary = finished.events("summary")[-1]
    assert summary["slow"] == 2
    # The fast statements never reached user space, yet the kernel counted every one.
    assert summary["statements"] >= 2 + 50
    assert summary["statements_by_protocol"]["simple"] == summary["statements"]
    assert sum(bucket["count"] for bucket in summary["histogram_us"]) == summary["statements"]
    assert summary["lost_events"] == 0
    assert f"mysql {mysql.rootfs.version}: pid {mysql.pid}" in finished.stderr
    assert "via uprobe" in finished.stderr and "(dispatch_command, dispatch_command (return))" in finished.stderr


def test_sql_level_prepare_and_execute_are_text_statements(mysql):
    with mysql.connect() as connection:
        tracing = trace(mysql, "--threshold", "0")
        run(connection, "PREPARE s FROM 'SELECT SLEEP(?), \"secret\"'")
        run(connection, f"SET @pause = {SLOW_S}")
        run(connection, "EXECUTE s USING @pause")
        run(connection, "DEALLOCATE PREPARE s")
        counters = session_counters(connection)
        finished = tracing.finish()

    texts = [query["query"] for query in finished.events("query")]
    assert texts[:4] == ["PREPARE s FROM ?", "SET @pause = ?", "EXECUTE s USING @pause",
                         "DEALLOCATE PREPARE s"]
    execute = finished.events("query")[2]
    assert execute["protocol"] == "simple"
    assert_lasted(execute, SLOW_S)
    assert_from_the_container(execute, mysql)
    assert "secret" not in finished.stdout
    # The server ran one SQL EXECUTE (which it counts in Com_stmt_execute too), sent as COM_QUERY.
    assert (counters["Com_prepare_sql"], counters["Com_execute_sql"]) == (1, 1)
    assert counters["Com_stmt_execute"] == 1
    assert finished.events("summary")[-1]["statements_by_protocol"]["prepared"] == 0


def test_binary_protocol_executions_are_timed_with_the_prepared_text(mysql, table):
    executions = 20
    with mysql.connect() as connection:
        before = session_counters(connection)
        tracing = trace(mysql)
        slow = connection.cursor(prepared=True)
        slow.execute("SELECT SLEEP(%s), %s", (SLOW_S, "secret"))
        slow.fetchall()
        update = connection.cursor(prepared=True)
        for number in range(executions):
            update.execute(f"UPDATE {table} SET v = %s WHERE id = %s", (f"secret-{number}", 2))
        slow.close()
        update.close()
        after = session_counters(connection)
        finished = tracing.finish()

    # The server saw the binary protocol: a COM_STMT_EXECUTE for each execution, no SQL EXECUTE.
    assert after["Com_stmt_execute"] - before["Com_stmt_execute"] == 1 + executions
    assert after["Com_execute_sql"] == before["Com_execute_sql"]
    assert after["Com_stmt_prepare"] - before["Com_stmt_prepare"] >= 2
    (query,) = finished.events("query")
    assert query["query"] == "SELECT SLEEP(?), ?"
    assert query["protocol"] == "prepared"
    assert_lasted(query, SLOW_S)
    assert_from_the_container(query, mysql)
    assert "secret" not in finished.stdout
    summary = finished.events("summary")[-1]
    assert summary["statements_by_protocol"]["prepared"] == 1 + executions
    by_fingerprint = {entry["query"]: entry for entry in summary["classes"]}
    assert by_fingerprint["SELECT SLEEP(?), ?"]["calls"] == 1


def test_statement_prepared_before_attach_is_named_by_its_id(mysql):
    # DO runs its expressions and returns no result set: nothing to read after an execute.
    with mysql.connect() as connection:
        before = connection.cmd_stmt_prepare(b"DO SLEEP(?)")
        tracing = trace(mysql, "--show-literals")
        after = connection.cmd_stmt_prepare(b"DO SLEEP(?), 'after'")
        for prepared in (before, after):
            connection.cmd_stmt_execute(prepared["statement_id"], data=(SLOW_S,),
                                        parameters=prepared["parameters"])
        connection.cmd_stmt_close(after["statement_id"])
        connection.cmd_stmt_close(before["statement_id"])
        finished = tracing.finish()

    unknown, known = finished.events("query")
    assert unknown["query"] == f"EXECUTE <prepared statement #{before['statement_id']}>"
    assert known["query"] == "DO SLEEP(?), 'after'"
    for query in (unknown, known):
        assert query["protocol"] == "prepared"
        assert_lasted(query, SLOW_S)
