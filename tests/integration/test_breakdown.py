"""Where a statement's time goes (``dbprobe slow``'s breakdown), on a real PostgreSQL with
real BPF: a sleep is off CPU in Timeout:PgSleep, an aggregate is on CPU, a row-lock wait is
Lock:transactionid, a scan of a table the page cache lost is I/O, and the parts add up."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.tracing import DbprobeRun

PARTS = ("cpu_ms", "io_ms", "lock_ms", "lwlock_ms", "client_ms", "runq_ms", "other_ms")
ADDS_UP = 0.10  # the parts are within 10% of the statement's duration
HOLD_S = 0.8


@pytest.fixture
def server(require_root_bpf, pg_server):
    return pg_server


def _trace(server, *options: str) -> DbprobeRun:
    options = options or ("--breakdown",)
    run = DbprobeRun(["slow", "--json", "--threshold", "50ms", "-p", str(server.pid), *options])
    run.wait_attached()
    return run


def _queries(run: DbprobeRun) -> list[dict]:
    time.sleep(0.3)
    finished = run.stop(signal.SIGTERM)
    assert finished.returncode == 0, finished.stderr
    return finished.events("query")


def _one(queries: list[dict], text: str) -> dict:
    (query,) = [q for q in queries if q["query"] == text]
    return query


def _waits(query: dict) -> dict[str, dict]:
    return {wait["event"]: wait for wait in query["waits"]}


def assert_adds_up(query: dict) -> None:
    total = sum(query[part] for part in PARTS)
    assert total == pytest.approx(query["duration_ms"], rel=ADDS_UP), query


def test_a_sleep_is_off_cpu_in_pg_sleep(server):
    run = _trace(server)
    server.psql("select pg_sleep(0.3);")
    query = _one(_queries(run), "select pg_sleep(?)")
    assert_adds_up(query)
    sleep = _waits(query)["Timeout:PgSleep"]
    assert sleep["count"] >= 1
    assert sleep["ms"] == pytest.approx(300, abs=30)
    assert query["other_ms"] >= sleep["ms"] - 0.01  # a timeout is neither I/O nor a lock
    assert query["cpu_ms"] < 0.1 * query["duration_ms"]


def test_an_aggregate_is_on_cpu(server):
    run = _trace(server)
    # work_mem keeps generate_series's rows in memory: no temporary file to write.
    server.psql("set work_mem = '512MB'; "
                "select count(*), sum(length(md5(g::text))) from generate_series(1, 600000) g;")
    query = _one(_queries(run), "select count(*), sum(length(md5(g::text))) from generate_series(?, ?) g")
    assert_adds_up(query)
    # Time runnable but waiting for a CPU is the machine's (two busy cores), not the
    # statement's: of the rest, at least 80% is on CPU.
    assert query["cpu_ms"] >= 0.8 * (query["duration_ms"] - query["runq_ms"]), query
    assert query["io_ms"] + query["lock_ms"] + query["lwlock_ms"] < 0.1 * query["duration_ms"]
    assert query["writes"] == 0


def test_a_row_lock_wait_is_lock_transactionid(server):
    table = f"accounts_{uuid.uuid4().hex[:8]}"
    server.psql(f"create table {table} (id int primary key, balance int);"
                f"insert into {table} select g, 100 from generate_series(1, 10) g;")
    try:
        with server.connect() as blocker, server.connect() as waiter:
            slow = _trace(server)
            locks = DbprobeRun(["locks", "--json", "-p", str(server.pid)])
            locks.wait_attached()
            blocker.execute("begin")
            blocker.execute(f"update {table} set balance = balance - 10 where id = 1")
            waiting = threading.Thread(target=waiter.execute, daemon=True, args=(
                f"update {table} set balance = balance + 10 where id = 1",))
            waiting.start()
            time.sleep(HOLD_S)
            blocker.execute("commit")
            waiting.join(10)
            queries = _queries(slow)
            time.sleep(0.2)
            finished_locks = locks.stop(signal.SIGTERM)
    finally:
        server.psql(f"drop table {table};", check=False)

    query = _one(queries, f"update {table} set balance = balance + ? where id = ?")
    assert_adds_up(query)
    lock = _waits(query)["Lock:transactionid"]
    (wait,) = [w for w in finished_locks.events("lock_wait") if w["locktype"] == "transactionid"]
    assert lock["ms"] == pytest.approx(wait["wait_ms"], abs=20), (lock, wait)
    assert query["lock_ms"] >= lock["ms"] - 0.01  # each rounded to the microsecond
    assert lock["ms"] >= HOLD_S * 1000 * 0.9


def _drop_caches() -> None:
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def test_a_scan_of_a_table_out_of_the_page_cache_is_io(server):
    table = f"big_{uuid.uuid4().hex[:8]}"
    # About 200 MB, over shared_buffers (128 MB), vacuumed so that reading it sets no hint
    # bits and writes nothing back. Its rows are read through an index on a random key:
    # pages in random order, which the kernel's readahead does not fetch ahead, so the
    # backend waits for the disk (a sequential scan on this machine's fast disk mostly
    # finds its pages read ahead, and waits little).
    server.psql(f"create table {table} as select g, (random() * 1e9)::int as r, "
                f"repeat('x', 480) as pad from generate_series(1, 400000) g; "
                f"create index on {table} (r); vacuum freeze {table}; checkpoint;")
    scan = f"select sum(length(pad)) from {table} where r < 200000000"
    try:
        size = _relation_size(server, table)
        run = _trace(server)
        with server.connect() as session:
            # One backend does the whole scan: parallel workers are processes of their own,
            # whose time is not the statement's (see README).
            session.execute("set max_parallel_workers_per_gather = 0; set enable_seqscan = off; "
                            "set enable_bitmapscan = off")
            _drop_caches()
            session.execute(scan).fetchone()
        queries = _queries(run)
    finally:
        server.psql(f"drop table {table};", check=False)

    query = _one(queries, f"select sum(length(pad)) from {table} where r < ?")
    assert_adds_up(query)
    assert query["read_bytes"] >= 0.5 * size, (query, size)
    assert query["reads"] >= 0.5 * size // 8192
    read = _waits(query)["IO:DataFileRead"]
    assert read["count"] >= 0.5 * size // 8192, query  # a wait event per pread
    assert read["ms"] == pytest.approx(query["read_ms"], rel=0.1), query
    assert query["io_ms"] >= read["ms"] - 0.01
    assert query["io_ms"] > 0.2 * query["duration_ms"], query
    assert query["writes"] == 0


def _relation_size(server, table: str) -> int:
    with server.connect() as session:
        return session.execute(f"select pg_relation_size('{table}')").fetchone()[0]


def test_without_the_breakdown_the_events_have_none(server):
    run = _trace(server, "--threshold", "50ms")
    server.psql("select pg_sleep(0.1);")
    query = _one(_queries(run), "select pg_sleep(?)")
    assert "cpu_ms" not in query and "waits" not in query


def test_the_wait_profile_sums_every_backend_and_each_class(server):
    run = DbprobeRun(["waits", "--json", "-p", str(server.pid)])
    run.wait_attached()
    with server.connect() as session:
        for _ in range(2):
            session.execute("select pg_sleep(0.3)")
            time.sleep(0.2)  # idle: the backend waits for its client
    time.sleep(0.3)
    finished = run.stop(signal.SIGTERM)
    assert finished.returncode == 0, finished.stderr
    summary = finished.events("summary")[-1]
    waits = {wait["event"]: wait for wait in summary["waits"]}
    assert waits["Timeout:PgSleep"]["count"] >= 2
    assert waits["Timeout:PgSleep"]["ms"] == pytest.approx(600, abs=60)
    assert waits["Client:ClientRead"]["ms"] >= 0.9 * 200  # the idle time between the two
    (sleeps,) = [item for item in summary["classes"] if item["query"] == "select pg_sleep(?)"]
    assert sleeps["calls"] == 2
    assert sleeps["other_ms"] == pytest.approx(600, abs=60)
    assert sleeps["waits"][0]["event"] == "Timeout:PgSleep"


def _summary_classes(run: DbprobeRun) -> dict[str, dict]:
    time.sleep(0.3)
    finished = run.stop(signal.SIGTERM)
    assert finished.returncode == 0, finished.stderr
    (summary,) = finished.events("summary")
    return {entry["query"]: entry for entry in summary["classes"]}


def assert_class_adds_up(entry: dict) -> None:
    total = sum(entry[part] for part in PARTS)
    assert total == pytest.approx(entry["total_ms"], rel=ADDS_UP), entry


def test_every_statement_of_a_class_is_summed_in_the_digest(server):
    """Not only the slow ones: with a threshold no statement reaches, each class of the
    digest still sums where its statements' time went, counted in the kernel."""
    run = _trace(server, "--breakdown", "--threshold", "10s")
    aggregate = "select count(*), sum(length(md5(g::text))) from generate_series(1, 300000) g;\n"
    server.psql("set work_mem = '512MB';\n" + "select pg_sleep(0.1);\n" * 3 + aggregate * 2
                + "select 1;\n" * 300)
    classes = _summary_classes(run)

    sleep = classes["select pg_sleep(?)"]
    assert (sleep["calls"], sleep["timed_calls"], sleep["slow_calls"]) == (3, 3, 0)
    assert sleep["other_ms"] == pytest.approx(300, abs=45), sleep
    assert sleep["cpu_ms"] < 0.1 * sleep["total_ms"]
    pg_sleep = {wait["event"]: wait for wait in sleep["waits"]}["Timeout:PgSleep"]
    assert pg_sleep["count"] >= 3 and pg_sleep["ms"] == pytest.approx(300, abs=45), sleep["waits"]

    cpu_bound = classes["select count(*), sum(length(md5(g::text))) from generate_series(?, ?) g"]
    assert (cpu_bound["calls"], cpu_bound["timed_calls"]) == (2, 2)
    assert cpu_bound["cpu_ms"] >= 0.8 * (cpu_bound["total_ms"] - cpu_bound["runq_ms"]), cpu_bound

    fast = classes["select ?"]
    assert (fast["calls"], fast["timed_calls"]) == (300, 300)
    for entry in (sleep, cpu_bound, fast):
        assert_class_adds_up(entry)


def test_without_the_breakdown_the_classes_have_none(server):
    run = _trace(server, "--threshold", "10s")
    server.psql("select pg_sleep(0.05);\n")
    sleep = _summary_classes(run)["select pg_sleep(?)"]
    assert sleep["calls"] == 1
    assert "cpu_ms" not in sleep and "timed_calls" not in sleep


PARALLEL = ("set max_parallel_workers_per_gather = 2; set parallel_setup_cost = 0; "
            "set parallel_tuple_cost = 0; set min_parallel_table_scan_size = 0;\n")


def test_parallel_workers_time_is_the_leaders_statements_beside_its_own(server):
    server.psql("drop table if exists wide; create table wide as select g as x, md5(g::text) as pad "
                "from generate_series(1, 1000000) g; analyze wide;")
    run = _trace(server)
    server.psql(PARALLEL + "select sum(length(pad)) from wide;\n")
    time.sleep(0.3)
    finished = run.stop(signal.SIGTERM)
    assert finished.returncode == 0, finished.stderr
    (query,) = [q for q in finished.events("query") if q["query"] == "select sum(length(pad)) from wide"]
    assert_adds_up(query)  # the leader's own time; the workers' is beside it
    assert 1 <= query["workers"] <= 2, query  # as many as the server could launch
    assert query["workers_cpu_ms"] > 0 and query["workers_read_bytes"] > 0, query
    (summary,) = finished.events("summary")
    (entry,) = [c for c in summary["classes"] if c["query"] == "select sum(length(pad)) from wide"]
    assert (entry["workers"], entry["workers_cpu_ms"]) == (query["workers"], query["workers_cpu_ms"])
