"""``dbprobe slow --binary`` on the MySQL stand-in (tests/fixtures/mysql8_standin.cc), real BPF.

A real MySQL 9 server is traced in test_slow_mysql_real.py; no MySQL 5.x or 8.0 package is
reachable here, so their builds are imitated: the stand-in exports dispatch_command with the
mangled name and argument layout of MySQL 8 (and of MySQL 5.6, the other layout the recipe
knows, and the 5.x USDT probes), reads each command into a network buffer and writes its
reply over it, as mysqld does. dbprobe attaches to the binary before any process runs it.
"""

from __future__ import annotations

import pytest

from tests.support.standin import StandinFlavour, StandinServer, build_standin
from tests.support.tracing import DbprobeRun

SLOW_MS = 300
THRESHOLD = "100ms"
TOLERANCE_MS = 150  # scheduling on a busy two-core machine; never below the true duration

DISPATCH_LAYOUTS = {
    "8.0": StandinFlavour(version="8.0.36"),
    "5.6": StandinFlavour(version="5.6.51", packet_signature=True),
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mysql-standins")
    return {name: build_standin(directory, flavour) for name, flavour in DISPATCH_LAYOUTS.items()}


@pytest.fixture(scope="module")
def usdt_standin(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("mysql-usdt-standin"),
                         StandinFlavour(version="5.7.44", usdt=True))


def trace(binary) -> DbprobeRun:
    run = DbprobeRun(["slow", "--json", "--show-literals", "--threshold", THRESHOLD,
                      "--binary", str(binary)])
    run.wait_attached()
    return run


def assert_lasted(query: dict, ms: int) -> None:
    assert ms <= query["duration_ms"] < ms + TOLERANCE_MS, query


@pytest.mark.parametrize("layout", DISPATCH_LAYOUTS)
def test_reports_slow_statements_of_both_protocols(layout, standins, require_root_bpf):
    run = trace(standins[layout])
    with StandinServer(standins[layout]) as server:
        server.query("SELECT SLEEP(0.3) /* slow text */", ms=SLOW_MS)
        for _ in range(20):
            server.query("SELECT 1")
        statement = server.prepare("SELECT * FROM orders WHERE id = ?")
        server.execute(statement, ms=SLOW_MS)
        for _ in range(10):
            server.execute(statement)
        server.close_statement(statement)
        finished = run.finish()

    text, prepared = finished.events("query")
    assert text["query"] == "SELECT SLEEP(0.3) /* slow text */"
    assert text["protocol"] == "simple"
    assert prepared["query"] == "SELECT * FROM orders WHERE id = ?"
    assert prepared["protocol"] == "prepared"
    for query in (text, prepared):
        assert_lasted(query, SLOW_MS)
        assert query["db"] == "mysql" and query["database"] is None
        assert query["source"] == "uprobe" and query["pid"] == server.pid

    summary = finished.events("summary")[-1]
    assert summary["slow"] == 2
    assert summary["statements_by_protocol"] == {"simple": 21, "extended": 0, "prepared": 11}
    assert summary["lost_events"] == 0
    assert f"mysql {DISPATCH_LAYOUTS[layout].version}" in finished.stderr
    assert "via uprobe" in finished.stderr and "(dispatch_command," in finished.stderr


@pytest.mark.parametrize("layout", DISPATCH_LAYOUTS)
def test_statement_prepared_before_attach_is_named_by_its_id(layout, standins, require_root_bpf):
    with StandinServer(standins[layout]) as server:
        before = server.prepare("SELECT * FROM orders WHERE id = ?")
        run = trace(standins[layout])
        server.execute(before, ms=SLOW_MS)
        finished = run.finish()

    (query,) = finished.events("query")
    assert query["query"] == f"EXECUTE <prepared statement #{before}>"
    assert query["protocol"] == "prepared"
    assert_lasted(query, SLOW_MS)


def test_usdt_probes_are_preferred_when_the_build_has_them(usdt_standin, require_root_bpf):
    run = trace(usdt_standin)
    with StandinServer(usdt_standin) as server:
        server.query("SELECT SLEEP(0.3) /* usdt */", ms=SLOW_MS)
        server.query("SELECT 1")
        finished = run.finish()

    (query,) = finished.events("query")
    # The stand-in overwrites its copy of the text before query__done, as a server frees it.
    assert query["query"] == "SELECT SLEEP(0.3) /* usdt */"
    assert query["source"] == "usdt" and query["protocol"] == "simple"
    assert_lasted(query, SLOW_MS)
    assert finished.events("summary")[-1]["statements"] == 2
    assert "via usdt" in finished.stderr
