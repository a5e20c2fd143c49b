"""``dbprobe slow`` against real PostgreSQL clusters with real BPF.

The same scenario runs against the packaged server (USDT probes with semaphores) and
against a copy of it without USDT notes (the uprobe fallback).
"""

from __future__ import annotations

import signal
import time

import pytest

from dbprobe.binary.elf import ElfBinary
from tests.support.tracing import DbprobeRun, semaphore_value, uprobe_events_left

SLOW_S = 0.25
THRESHOLD = "120ms"
TOLERANCE_MS = 150  # scheduling on a busy two-core machine; never below the true duration


@pytest.fixture(params=["usdt", "uprobe"])
def cluster(request, require_root_bpf):
    name = "pg_server" if request.param == "usdt" else "pg_server_no_usdt"
    return request.param, request.getfixturevalue(name)


def _workload(server, opened_before) -> None:
    # Simple protocol: psql sends each statement as a Query message.
    server.psql(f"select pg_sleep({SLOW_S}); select 42;" + "select 1;" * 50)
    # Extended protocol: psycopg binds parameters (Parse/Bind/Execute), on a connection
    # opened before dbprobe attached and on one opened after.
    opened_before.execute("select pg_sleep(%s)", (SLOW_S,))
    for _ in range(50):
        opened_before.execute("select %s::int", (1,))
    with server.connect() as opened_after:
        opened_after.execute("select pg_sleep(%s), %s::text", (SLOW_S, "secret-value"))
    # Cancelled by statement_timeout: reported as an error, with its text.
    server.psql("set statement_timeout = '300ms'; select pg_sleep(2);", check=False)


def test_reports_slow_queries_of_both_protocols(cluster):
    mechanism, server = cluster
    with server.connect() as opened_before:
        run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, "-p", str(server.pid)])
        run.wait_attached()
        _workload(server, opened_before)
        time.sleep(0.5)
        finished = run.stop(signal.SIGTERM)

    assert finished.returncode == 0, finished.stderr
    queries = finished.events("query")
    by_protocol = {(q["protocol"], q["error"]): q for q in queries}
    assert len(queries) == 4, queries

    simple = by_protocol[("simple", False)]
    assert simple["query"] == "select pg_sleep(?)"
    extended = [q for q in queries if q["protocol"] == "extended"]
    assert sorted(q["query"] for q in extended) == ["select pg_sleep(?)", "select pg_sleep(?), ?::text"]
    cancelled = by_protocol[("simple", True)]
    assert cancelled["query"] == "select pg_sleep(?)"
    assert 300 <= cancelled["duration_ms"] < 300 + TOLERANCE_MS

    for query in (simple, *extended):
        assert SLOW_S * 1000 <= query["duration_ms"] < SLOW_S * 1000 + TOLERANCE_MS, query
    for query in queries:
        # Both recipes read the activity at pgstat_report_activity's entry, a uprobe.
        assert query["source"] == "uprobe"
        assert query["db"] == "postgresql" and query["database"] == "postgres"
        assert "secret-value" not in query["query"]

    summary = finished.events("summary")[-1]
    assert summary["slow"] == 4
    # The fast statements never reached user space, yet the kernel counted every one.
    assert summary["statements"] >= 4 + 50 + 50
    assert summary["statements_by_protocol"]["simple"] >= 50
    assert summary["statements_by_protocol"]["extended"] >= 50
    assert summary["lost_events"] == 0
    assert sum(bucket["count"] for bucket in summary["histogram_us"]) == summary["statements"]
    assert "tracing queries at or over 120 ms" in finished.stderr
    assert f"via {mechanism}" in finished.stderr


def test_show_literals_prints_the_statement_as_sent(pg_server, require_root_bpf):
    run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, "--show-literals", "-p", str(pg_server.pid)])
    run.wait_attached()
    pg_server.psql(f"select 'visible-literal', pg_sleep({SLOW_S});")
    finished = run.stop()
    (query,) = finished.events("query")
    assert query["query"] == f"select 'visible-literal', pg_sleep({SLOW_S});"


def test_text_report_lines_and_digest_on_duration_end(pg_server, require_root_bpf):
    run = DbprobeRun(["slow", "--threshold", THRESHOLD, "--duration", "6", "-p", str(pg_server.pid)])
    run.wait_attached()
    pg_server.psql(f"select pg_sleep({SLOW_S});" * 2 + "select 1;")
    finished = run.wait(timeout=30)

    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0].split() == ["TIME", "PID", "DATABASE", "PROTO", "MS", "QUERY"]
    live = [line for line in lines[1:3]]
    assert all(line.endswith("select pg_sleep(?)") and " simple " in line for line in live)
    assert any(line.startswith("# Slow-query digest") for line in lines)
    assert any("2 at or over 120 ms; 0 events lost" in line for line in lines)
    # Every statement is in the digest's classes, the fast one too.
    assert any(line.startswith("# 3 statements seen in the kernel") and line.endswith(" in 2 classes")
               for line in lines), lines
    rank_one = next(i for i, line in enumerate(lines) if line.split()[:1] == ["1"])
    assert lines[rank_one + 1].strip() == "select pg_sleep(?)"
    assert "Latency of all statements (kernel histogram):" in lines


def test_interval_prints_a_digest_per_window(pg_server, require_root_bpf):
    run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, "--interval", "2",
                      "--duration", "5", "-p", str(pg_server.pid)])
    run.wait_attached()
    pg_server.psql(f"select pg_sleep({SLOW_S});")
    finished = run.wait(timeout=30)
    summaries = finished.events("summary")
    assert len(summaries) == 3  # two intervals and the remainder at exit
    assert sum(summary["slow"] for summary in summaries) == 1


def test_detach_lowers_the_usdt_semaphores(pg_server, require_root_bpf):
    # The lock report's USDT probes have semaphores: dbprobe raises them while attached.
    binary = ElfBinary(str(pg_server.bindir / "postgres"))
    (probe,) = binary.usdt_probe_sites("postgresql", "deadlock__found")
    postmaster = pg_server.pid
    # 0 unless another tracer on this machine is attached to the same binary right now.
    before = semaphore_value(postmaster, binary.path, probe.semaphore)

    run = DbprobeRun(["locks", "-p", str(postmaster)])
    run.wait_attached()
    assert semaphore_value(postmaster, binary.path, probe.semaphore) == before + 1
    with pg_server.connect() as conn:  # a backend forked after attach sees it raised too
        backend = conn.execute("select pg_backend_pid()").fetchone()[0]
        assert semaphore_value(backend, binary.path, probe.semaphore) == before + 1
        finished = run.stop()
        assert finished.returncode == 0, finished.stderr
        assert semaphore_value(backend, binary.path, probe.semaphore) == before
    assert semaphore_value(postmaster, binary.path, probe.semaphore) == before
    assert uprobe_events_left({run.process.pid}) == []


def test_pid_filter_ignores_other_servers_of_the_same_binary(pg_server, require_root_bpf):
    from dbprobe.demo.server import ThrowawayPostgres

    with ThrowawayPostgres() as other:
        run = DbprobeRun(["slow", "--json", "--show-literals", "--threshold", THRESHOLD,
                          "-p", str(pg_server.pid)])
        run.wait_attached()
        other.psql(f"select pg_sleep({SLOW_S}), 'other';")
        pg_server.psql(f"select pg_sleep({SLOW_S}), 'traced';")
        finished = run.stop()
    queries = finished.events("query")
    assert [q["query"] for q in queries] == [f"select pg_sleep({SLOW_S}), 'traced';"]


def test_keeps_running_when_the_server_stops(require_root_bpf):
    from dbprobe.demo.server import ThrowawayPostgres

    server = ThrowawayPostgres().start()
    try:
        run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, "-p", str(server.pid)])
        run.wait_attached()
        server.psql(f"select pg_sleep({SLOW_S});")
        postmaster = server.pid
        server.stop()
        deadline = time.monotonic() + 10
        while "stopped" not in run.stderr and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.process.poll() is None, "dbprobe exited with the server"
        finished = run.stop()
    finally:
        server.stop()
    assert f"PostgreSQL server pid {postmaster} stopped; still tracing" in finished.stderr
    assert finished.returncode == 0
    assert len(finished.events("query")) == 1
    assert finished.events("summary")[-1]["slow"] == 1


def _short_connection_to_a_new_database(pg_server, prefix: str, before_create=lambda: None):
    """The database of a slow statement on a short connection to a database created while
    dbprobe runs, and that database's name. No backend of the new database is alive when
    its event arrives: the name comes from the server's own files (the WAL its CREATE
    DATABASE flushed)."""
    database = f"{prefix}_{int(time.time() * 1000) % 10**9}"
    run = DbprobeRun(["slow", "--json", "--threshold", THRESHOLD, "-p", str(pg_server.pid)])
    run.wait_attached()
    before_create()
    pg_server.psql(f"CREATE DATABASE {database}")
    try:
        # dbprobe reads the event only once the connection is gone, as on a busy machine.
        run.process.send_signal(signal.SIGSTOP)
        try:
            pg_server.psql(f"select pg_sleep({SLOW_S}), 'short';", dbname=database)
            time.sleep(0.3)  # the backend exits after psql does
        finally:
            run.process.send_signal(signal.SIGCONT)
        finished = run.finish(settle_s=0.5)
    finally:
        pg_server.psql(f"DROP DATABASE {database}")
    (query,) = [q for q in finished.events("query") if q["query"].startswith("select pg_sleep")]
    return query, database


def test_a_short_connection_to_a_database_created_since_start_is_named(pg_server, require_root_bpf):
    query, database = _short_connection_to_a_new_database(pg_server, "created_after_start")
    assert query["database"] == database, query


def _checkpoint_keeping_segments_for_reuse(pg_server) -> None:
    """As on a server that has run for a while: checkpoints have renamed old WAL segments
    to the names of future ones, so the newest file names are not the WAL being written;
    and the CHECKPOINT just before the CREATE DATABASE makes its pg_database change a
    full-page image."""
    pg_server.psql("create table if not exists wal_filler(x int)")
    for _ in range(2):
        pg_server.psql("insert into wal_filler values (1); select pg_switch_wal();" * 6 + "CHECKPOINT")
    pg_server.psql("CHECKPOINT")
    current = pg_server.psql("select pg_walfile_name(pg_current_wal_lsn())").strip()
    segments = sorted(path.name for path in (pg_server.datadir / "pg_wal").iterdir()
                      if len(path.name) == 24)
    assert current not in segments[-2:], (current, segments)


def test_a_new_database_is_named_after_checkpoints_kept_segments_for_reuse(
        pg_server, require_root_bpf):
    query, database = _short_connection_to_a_new_database(
        pg_server, "created_after_checkpoints",
        before_create=lambda: _checkpoint_keeping_segments_for_reuse(pg_server))
    assert query["database"] == database, query
