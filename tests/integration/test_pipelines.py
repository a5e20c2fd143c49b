"""Pipelines and batches through ``dbprobe slow``: each statement timed on its own.

Real drivers (psycopg 3's pipeline mode, asyncpg's executemany and cursors, pgbench's
\\startpipeline) and a frontend that sends the message orders no driver sends on demand,
against real servers with real BPF, on the packaged server (USDT) and on a copy without
USDT notes (the uprobe fallback): both must give the same statements.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter

import pytest

from dbprobe.correlate.fingerprint import fingerprint
from dbprobe.demo.server import ThrowawayPostgres
from tests.support import pgwire
from tests.support.pgss import pgss_cluster
from tests.support.tracing import DbprobeRun, Finished

asyncpg = pytest.importorskip("asyncpg")

SLACK = 0.10  # a statement's duration: its own, within 10 %


@pytest.fixture(params=["usdt", "uprobe"])
def cluster(request, require_root_bpf):
    name = "pg_server" if request.param == "usdt" else "pg_server_no_usdt"
    return request.getfixturevalue(name)


def _traced(server: ThrowawayPostgres, threshold: str, workload) -> Finished:
    run = DbprobeRun(["slow", "--json", "--threshold", threshold, "-p", str(server.pid)])
    run.wait_attached()
    workload()
    return run.finish(settle_s=0.5)


def _of_backend(finished: Finished, pid: int) -> list[dict]:
    """The statements of one backend, in the order they ended."""
    return [q for q in finished.events("query") if q["pid"] == pid]


def _assert_own_duration(query: dict, seconds: float) -> None:
    low, high = seconds * 1000, seconds * 1000 * (1 + SLACK)
    assert low <= query["duration_ms"] <= high, (query, low, high)


def _text(sql: str) -> str:
    return fingerprint(sql).text


def test_psycopg_pipeline_reports_each_statement_with_its_own_duration(cluster):
    server = cluster
    with server.connect() as conn:
        def workload():
            with conn.pipeline():
                conn.execute("select pg_sleep(0.2)")
                conn.execute("select pg_sleep(0.35), 'other text'")
                conn.execute("select 1")
        finished = _traced(server, "100ms", workload)
        pid = conn.info.backend_pid

    first, second = _of_backend(finished, pid)
    assert (first["query"], second["query"]) == (
        "select pg_sleep(?)", "select pg_sleep(?), ?")
    _assert_own_duration(first, 0.2)
    _assert_own_duration(second, 0.35)
    assert {q["protocol"] for q in (first, second)} == {"extended"}
    assert not first["error"] and not second["error"]
    summary = finished.events("summary")[-1]
    assert summary["slow"] == 2
    assert summary["statements"] >= 3  # the fast one too, counted in the kernel


def test_asyncpg_executemany_reports_each_execution(cluster):
    server = cluster
    pids: list[int] = []

    async def batch() -> None:
        conn = await asyncpg.connect(host=str(server.socket_dir), port=server.port,
                                     user=server.superuser, database="postgres")
        try:
            pids.append(conn.get_server_pid())
            await conn.executemany("select pg_sleep($1)", [(0.15,), (0.25,)])
        finally:
            await conn.close()

    finished = _traced(server, "100ms", lambda: asyncio.run(batch()))

    first, second = _of_backend(finished, pids[0])
    assert first["query"] == second["query"] == _text("select pg_sleep($1)")
    _assert_own_duration(first, 0.15)
    _assert_own_duration(second, 0.25)
    assert finished.events("summary")[-1]["slow"] == 2


def test_message_orders_of_the_protocol(cluster):
    """One pipeline, one Sync: a named statement parsed before an unnamed one is parsed and
    run; Describe between Bind and Execute; a named portal; the same text twice; a portal
    fetched a row at a time by three Executes, then closed."""
    server = cluster
    cursor_sql = "select pg_sleep(0.11) from generate_series(1, 3)"
    with pgwire.WireConnection(server.socket_dir, server.port, server.superuser) as wire:
        pipeline = (
            pgwire.parse("select pg_sleep($1)", statement="nap"),
            pgwire.parse("select pg_sleep(0.12), 'unnamed'"),
            pgwire.bind(), pgwire.describe_portal(), pgwire.execute(),
            pgwire.bind("nap", portal="p1", params=("0.15",)),
            pgwire.describe_statement("nap"), pgwire.execute("p1"),
            pgwire.bind("nap", params=("0.1",)), pgwire.execute(),
            pgwire.parse(cursor_sql), pgwire.bind(portal="cur"),
            pgwire.execute("cur", 1), pgwire.execute("cur", 1), pgwire.FLUSH,
            pgwire.execute("cur", 1), pgwire.close_portal("cur"),
            pgwire.SYNC,
        )
        answers: list[pgwire.Responses] = []
        finished = _traced(server, "90ms", lambda: answers.append(wire.run(*pipeline)))
        pid = wire.backend_pid

    (answer,) = answers
    assert answer.errors == [] and answer.count("s") == 3  # PortalSuspended, per fetch
    queries = _of_backend(finished, pid)
    assert [q["query"] for q in queries] == [
        _text("select pg_sleep(0.12), 'unnamed'"), *[_text("select pg_sleep($1)")] * 2,
        *[_text(cursor_sql)] * 3]
    for query, seconds in zip(queries, (0.12, 0.15, 0.1, 0.11, 0.11, 0.11)):
        _assert_own_duration(query, seconds)
        assert query["protocol"] == "extended" and not query["error"]
    # The statements that only parsed (and their Syncs) are no statements.
    assert finished.events("summary")[-1]["statements"] == 6


def test_error_in_a_pipeline_reports_the_failure_and_not_the_skipped(cluster):
    server = cluster
    failing = "select 1 / (count(*) - 1) from (select pg_sleep(0.15)) as napped"
    with server.connect() as conn:
        errors: list[str] = []

        def workload():
            try:
                with conn.pipeline():
                    conn.execute("select pg_sleep(0.12)")
                    conn.execute(failing)
                    conn.execute("select pg_sleep(0.3), 'skipped'")
                    conn.execute("select 2")
            except Exception as error:  # noqa: BLE001 - the division by zero, re-raised at sync
                errors.append(type(error).__name__)
        finished = _traced(server, "0", workload)
        pid = conn.info.backend_pid

    assert errors == ["DivisionByZero"]
    ran, failed = _of_backend(finished, pid)
    assert (ran["query"], ran["error"]) == ("select pg_sleep(?)", False)
    _assert_own_duration(ran, 0.12)
    assert (failed["query"], failed["error"]) == (_text(failing), True)
    _assert_own_duration(failed, 0.15)


def test_cursor_fetched_in_several_executes_is_one_statement_per_fetch(pg_server, require_root_bpf):
    """asyncpg's cursor: a Bind, then each fetch an Execute with a row limit and a Sync."""
    sql = "select g, pg_sleep(0.1) from generate_series(1, 5) as g"
    pids: list[int] = []
    rows: list[int] = []

    async def fetch_in_parts() -> None:
        conn = await asyncpg.connect(host=str(pg_server.socket_dir), port=pg_server.port,
                                     user=pg_server.superuser, database="postgres")
        try:
            pids.append(conn.get_server_pid())
            async with conn.transaction():
                cursor = await conn.cursor(sql)
                for count in (1, 2, 2):
                    rows.append(len(await cursor.fetch(count)))
        finally:
            await conn.close()

    finished = _traced(pg_server, "80ms", lambda: asyncio.run(fetch_in_parts()))

    assert rows == [1, 2, 2]
    fetches = _of_backend(finished, pids[0])
    assert [q["query"] for q in fetches] == [_text(sql)] * 3
    for fetch, seconds in zip(fetches, (0.1, 0.2, 0.2)):
        _assert_own_duration(fetch, seconds)


PIPELINE_SCRIPT = """\
\\set aid random(1, 100000)
\\set delta random(-5000, 5000)
\\startpipeline
select abalance from pgbench_accounts where aid = :aid;
update pgbench_accounts set abalance = abalance + :delta where aid = :aid;
select abalance from pgbench_accounts where aid = :aid;
select count(*) from pgbench_branches;
\\endpipeline
"""


@pytest.fixture(params=["usdt", "uprobe"])
def pgss_server(request, require_root_bpf):
    bindir = request.getfixturevalue("usdt_less_postgres_bindir") if request.param == "uprobe" else None
    with pgss_cluster(bindir) as server:
        yield server


def _pgbench(server: ThrowawayPostgres, mode: str) -> None:
    bench = server.run_as_postgres(
        ["pgbench", "--no-vacuum", f"--protocol={mode}", "--client=2", "--jobs=1",
         "--transactions=150", "--file=-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = bench.communicate(PIPELINE_SCRIPT, timeout=120)
    assert bench.returncode == 0, stderr
    assert "number of transactions actually processed: 300/300" in stdout, stdout


def _shape(sql: str) -> str:
    """A statement as each side prints it, placeholders and case aside."""
    return re.sub(r"\$\d+|\?|:[a-z]+", "?", " ".join(sql.split())).lower().rstrip(";")


@pytest.mark.parametrize("mode", ["prepared", "extended"])
def test_pgbench_pipeline_counts_agree_with_pg_stat_statements(pgss_server, mode):
    server = pgss_server
    server.psql("select pg_stat_statements_reset()")

    finished = _traced(server, "0", lambda: _pgbench(server, mode))

    pgss = server.psql("select calls, query from pg_stat_statements "
                       "where query not like '%pg_stat_statements%'")
    expected = Counter()
    for line in pgss.splitlines():
        calls, query = line.split("|", 1)
        expected[_shape(query)] += int(calls)
    summary = finished.events("summary")[-1]
    traced = Counter()
    for query_class in summary["classes"]:
        traced[_shape(query_class["query"])] += query_class["calls"]
    in_script = Counter(_shape(line) for line in PIPELINE_SCRIPT.splitlines()
                        if line and not line.startswith("\\"))
    assert expected == Counter({statement: 300 * times for statement, times in in_script.items()})
    # Every class, as many calls as pg_stat_statements counted: no prepare counted, no
    # statement of a pipeline lost in another.
    assert traced == expected, (traced, expected)
    assert summary["statements"] == sum(expected.values())
    assert summary["lost_events"] == 0
