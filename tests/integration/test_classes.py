"""Every statement counted in the kernel by class, against the servers' own counters.

pgbench runs as fast as it can with pg_stat_statements loaded in the same cluster, and
``dbprobe slow`` with a threshold no statement reaches: the digest must still have every
statement, class by class as pg_stat_statements counts them, with nothing lost and a tracer
that did almost no work. The same against MariaDB's status counters.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter

import pytest

from dbprobe.demo.server import ThrowawayPostgres
from tests.support.pgss import pgss_cluster
from tests.support.tracing import DbprobeRun

PGBENCH_SECONDS = 15
NEVER_SLOW = "60000"  # ms: no statement of the workload is sent to user space
# What the tracer may spend over a run whatever the server's rate: its poll loop and one
# reading of the class map at the end. Sending each statement to user space would cost
# 20-35 us of tracer CPU apiece: several seconds for the statements of one run here.
TRACER_CPU_BUDGET_S = 1.0


@pytest.fixture(scope="module")
def pgss_server():
    with pgss_cluster() as server:
        yield server


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _shape(sql: str) -> str:
    """A statement as each side prints it, placeholders, numbers and case aside
    (pg_stat_statements keeps ORDER BY 1 as written: a column's position, not a literal)."""
    return re.sub(r"\$\d+|\?|\b\d+\b", "?", " ".join(sql.split())).lower().rstrip(";")


def _pgss_calls(server: ThrowawayPostgres) -> Counter:
    calls = Counter()
    rows = server.psql("select calls, query from pg_stat_statements "
                       "where query not like '%pg_stat_statements%'")
    for line in rows.splitlines():
        count, query = line.split("|", 1)
        calls[_shape(query)] += int(count)
    return calls


@pytest.mark.parametrize("protocol", ["simple", "prepared"])
def test_every_pgbench_statement_is_counted_as_pg_stat_statements_counts_it(require_root_bpf,
                                                                           pgss_server, protocol):
    server = pgss_server
    server.psql("select pg_stat_statements_reset()")
    run = DbprobeRun(["slow", "--json", "--threshold", NEVER_SLOW, "-p", str(server.pid)])
    run.wait_attached()
    cpu_before = _cpu_seconds(run.process.pid)
    bench = server.run_as_postgres(
        ["pgbench", "--no-vacuum", "--select-only", f"--protocol={protocol}", "--client=8",
         "--jobs=2", f"--time={PGBENCH_SECONDS}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = bench.communicate(timeout=PGBENCH_SECONDS + 60)
    assert bench.returncode == 0, stderr
    tracer_cpu = _cpu_seconds(run.process.pid) - cpu_before
    finished = run.finish(settle_s=0.5)

    expected = _pgss_calls(server)
    summary = finished.events("summary")[-1]
    traced = Counter()
    for query_class in summary["classes"]:
        traced[_shape(query_class["query"])] += query_class["calls"]
    select = "select abalance from pgbench_accounts where aid = ?"
    assert expected[select] > 20_000, (expected, stdout)
    assert traced == expected, (traced, expected)
    assert summary["statements"] == sum(expected.values())
    assert (summary["lost_events"], summary["untracked"], summary["slow"]) == (0, 0, 0)
    assert finished.events("query") == []
    top = summary["classes"][0]
    assert _shape(top["query"]) == select and top["database"] == "postgres"
    assert 0 < top["p50_ms"] <= top["p95_ms"] <= top["p99_ms"] <= top["max_ms"], top
    assert tracer_cpu < TRACER_CPU_BUDGET_S, (tracer_cpu, expected[select])


@pytest.fixture
def mariadb(mariadb_server, require_root_bpf):
    return mariadb_server


def _status(server, name: str) -> int:
    line = server.sql(f"SHOW GLOBAL STATUS LIKE '{name}'").split()
    return int(line[-1])


def test_every_mariadb_statement_is_counted_as_its_status_counters_count_them(mariadb):
    import mysql.connector

    mariadb.sql("CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.t (a INT)")
    run = DbprobeRun(["slow", "--json", "--threshold", NEVER_SLOW, "-p", str(mariadb.pid)])
    run.wait_attached()
    selects_before = _status(mariadb, "Com_select")
    executes_before = _status(mariadb, "Com_stmt_execute")
    mariadb.sql("".join(f"SELECT a FROM shop.t WHERE a = {n};" for n in range(1500)))
    connection = mysql.connector.connect(unix_socket=str(mariadb.socket), user="root",
                                         use_pure=True)
    cursor = connection.cursor(prepared=True)
    for n in range(400):
        cursor.execute("INSERT INTO shop.t VALUES (?)", (n,))
    connection.commit()
    connection.close()
    selects = _status(mariadb, "Com_select") - selects_before
    executes = _status(mariadb, "Com_stmt_execute") - executes_before
    finished = run.finish(settle_s=0.5)

    summary = finished.events("summary")[-1]
    calls = {query_class["query"]: query_class["calls"] for query_class in summary["classes"]}
    assert calls.get("SELECT a FROM shop.t WHERE a = ?") == 1500, calls
    assert calls.get("INSERT INTO shop.t VALUES (?+)") == executes == 400, calls
    # Com_select also counts the one SHOW STATUS above (a SELECT from the status table).
    counted_selects = sum(count for query, count in calls.items()
                          if query.upper().startswith("SELECT"))
    assert counted_selects + 1 >= selects >= 1500
    assert (summary["lost_events"], summary["untracked"]) == (0, 0)
    assert "shop.t WHERE a = 7" not in finished.stdout


# Statements that take the scanner through each of its states, sent to a real server: the
# class the kernel computed for each must be the model's (dbprobe.kernel.classhash).
SCANNER_CORPUS = [
    "select 1", "SELECT  abalance FROM pgbench_accounts WHERE aid = 42", "select 1.5, .5, 1e5, 0x1f",
    "select 'it''s', e'a\\'b', 'x' 'y'", 'select "Mixed""Case" from (select 1 as "Mixed""Case") s',
    "select $$dollar 'quoted' $$", "select $tag$tagged$tag$", "select 1 -- a comment",
    "select /* a /* nested */ comment */ 2", "select 'é', 'ü' as \"naïve\"", "select 12abc",
    "select x1 from (select 1 as x1) t", "select\t1\n,\r2", "select 'unterminated",
    "select 1 where 1 in (1, 2, 3)", "select * from pg_class where relname = $x$pg_class$x$",
    "select ?", "select 1::int8, -2, +3", "select 'a' || 'b'", "select 1./* c */2",
]


def test_the_kernel_computes_each_class_as_the_model_does(pg_server, require_root_bpf):
    from dbprobe.kernel.classhash import class_hash
    from dbprobe.kernel.records import RawClassSample
    from dbprobe.kernel.trace import Trace, TraceRequest

    request = TraceRequest(families=("query",), databases=("postgresql",), pid=pg_server.pid,
                           thresholds_ns={"query": 10**12})
    samples: dict[tuple[int, int, int], bytes] = {}
    with Trace.open(request) as trace:
        trace.on(RawClassSample, lambda raw: samples.setdefault(
            (raw.server, raw.database_oid, raw.hash), raw.text))
        with pg_server.connect(autocommit=True) as session:
            # Twice: each class is counted again, not made again.
            for statement in SCANNER_CORPUS * 2:
                try:
                    session.execute(statement)
                except Exception:
                    pass  # an error ends a statement too; it is counted in its class
        trace.collector.drain()
        counters = trace.collector.class_counters()

    # Each statement's class, as the model computes it, is one the kernel counted; a
    # statement of a class seen already (select 1 -- a comment) sent no sample of its own.
    kernel_classes = {key.hash for key in counters.classes}
    missing = [s for s in SCANNER_CORPUS if class_hash(s.encode()) not in kernel_classes]
    assert not missing
    for key, stats in counters.classes.items():
        text = samples[(key.server, key.database_oid, key.hash)]
        assert key.hash == class_hash(text), text
        assert key.server == pg_server.pid
    for statement in ("select 12abc", "select 'it''s', e'a\\'b', 'x' 'y'", "select 1.5, .5, 1e5, 0x1f"):
        [stats] = [v for k, v in counters.classes.items() if k.hash == class_hash(statement.encode())]
        assert stats.calls == 2, statement
