"""Where a statement's time goes on a real MariaDB server (uprobes on dispatch_command):
a sleep is off CPU, a CPU-bound statement is on CPU, and the parts add up. MariaDB has no
wait event word, so the off-CPU time is classed by what the kernel sees."""

from __future__ import annotations

import pytest

from tests.integration.test_breakdown import PARTS, assert_adds_up
from tests.support.tracing import DbprobeRun


@pytest.fixture
def mariadb(mariadb_server, require_root_bpf):
    return mariadb_server


def _queries(server, sql: str) -> list[dict]:
    run = DbprobeRun(["slow", "--json", "--threshold", "50ms", "--breakdown", "-p", str(server.pid)])
    run.wait_attached()
    server.sql(sql)
    finished = run.finish()
    assert finished.returncode == 0, finished.stderr
    return finished.events("query")


def test_a_sleep_is_off_cpu(mariadb):
    (query,) = _queries(mariadb, "SELECT SLEEP(0.3);")
    assert query["query"] == "SELECT SLEEP(?)"
    assert_adds_up(query)
    assert query["cpu_ms"] < 0.1 * query["duration_ms"]
    assert query["other_ms"] == pytest.approx(300, abs=40)
    assert query["waits"] == []  # no wait events to name


def test_a_cpu_bound_statement_is_on_cpu(mariadb):
    (query,) = _queries(mariadb, "SELECT BENCHMARK(3000000, MD5('dbprobe'));")
    assert query["query"] == "SELECT BENCHMARK(?, MD5(?))"
    assert_adds_up(query)
    assert query["cpu_ms"] >= 0.8 * (query["duration_ms"] - query["runq_ms"]), query
    assert sum(query[part] for part in PARTS if part not in ("cpu_ms", "runq_ms")) < (
        0.1 * query["duration_ms"])


def test_each_class_sums_where_its_statements_time_went(mariadb):
    run = DbprobeRun(["slow", "--json", "--threshold", "10s", "--breakdown", "-p", str(mariadb.pid)])
    run.wait_attached()
    mariadb.sql("SELECT SLEEP(0.1); SELECT SLEEP(0.1); SELECT BENCHMARK(1000000, MD5('dbprobe'));")
    finished = run.finish()
    assert finished.returncode == 0, finished.stderr
    (summary,) = finished.events("summary")
    classes = {entry["query"]: entry for entry in summary["classes"]}
    sleep, cpu_bound = classes["SELECT SLEEP(?)"], classes["SELECT BENCHMARK(?, MD5(?))"]
    assert (sleep["calls"], sleep["timed_calls"], cpu_bound["timed_calls"]) == (2, 2, 1)
    assert sleep["other_ms"] == pytest.approx(200, abs=30), sleep
    assert cpu_bound["cpu_ms"] >= 0.8 * (cpu_bound["total_ms"] - cpu_bound["runq_ms"]), cpu_bound
    for entry in (sleep, cpu_bound):
        assert sum(entry[part] for part in PARTS) == pytest.approx(entry["total_ms"], rel=0.10), entry
