"""``dbprobe list`` and ``dbprobe doctor`` run as a user runs them, against real servers.

The packaged PostgreSQL has USDT probes, its copy without ``.note.stapsdt`` falls back to
uprobes, and MariaDB has no USDT at all: each says so, with the reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from dbprobe.demo.server import ThrowawayPostgres
from tests.support.mariadb import ThrowawayMariaDB
from tests.support.tracing import Finished, run_dbprobe

LIST_FIELDS = {"db", "version", "pid", "ns_pid", "container", "binary", "host_binary", "binary_deleted",
               "root", "data_dir", "port", "user", "processes", "recipe_error", "families", "backends"}
DOCTOR_MACHINE_CHECKS = ("privileges", "kernel", "kernel config", "btf", "tracefs", "uprobes", "bcc",
                         "kernel headers", "bpf", "ring buffer")


def listed(finished: Finished) -> dict[int, dict]:
    """pid -> the server's record, from ``list --json``."""
    assert finished.returncode == 0, finished.stderr
    records = finished.json_lines()
    assert all(set(record) == LIST_FIELDS for record in records), records
    return {record["pid"]: record for record in records}


def recipe_families(db: str) -> set[str]:
    """The families probes/<db>.toml declares, read from the file itself."""
    recipe = Path(__file__).resolve().parents[2] / "probes" / f"{db}.toml"
    return set(tomllib.loads(recipe.read_text())["families"]) if recipe.is_file() else set()


def traced_via(detail: str, family: str) -> str | None:
    """From a server check's detail ("BINARY: query, txn via usdt; locks via uprobe (...)"),
    the mechanism `family` is traced with."""
    match = re.search(rf"(?:: |; )[\w, ]*\b{family}\b[\w, ]* via (\w+)", detail)
    return match.group(1) if match else None


def test_list_json_says_how_each_server_is_traced(
    require_root_bpf: None, pg_server: ThrowawayPostgres, pg_server_no_usdt: ThrowawayPostgres,
    mariadb_server: ThrowawayMariaDB,
) -> None:
    servers = listed(run_dbprobe("list", "--json"))

    with_usdt = servers[pg_server.pid]
    assert (with_usdt["db"], with_usdt["port"], with_usdt["user"]) == ("postgresql", pg_server.port, "postgres")
    assert with_usdt["data_dir"] == str(pg_server.datadir)
    assert with_usdt["binary"] == os.path.realpath(pg_server.bindir / "postgres")
    assert set(with_usdt["families"]) == recipe_families("postgresql")
    query = with_usdt["families"]["query"]
    assert (query["mechanism"], query["reason"]) == ("usdt", None)
    # The activity is read at pgstat_report_activity's entry, with its state, on every build;
    # the USDT build's executions end and lock waits come from its static probes.
    assert query["probes"] == ["pgstat_report_activity", "pq_set_parallel_leader",
                               "postgresql:query__execute__done",
                               "AbortCurrentTransaction"]
    assert "postgresql:deadlock__found" in with_usdt["families"]["locks"]["probes"]

    without_usdt = servers[pg_server_no_usdt.pid]
    assert without_usdt["binary"] == os.path.realpath(pg_server_no_usdt.bindir / "postgres")
    fallback = without_usdt["families"]["query"]
    assert fallback["mechanism"] == "uprobe"
    assert "no USDT probes" in fallback["reason"]
    assert "pgstat_report_activity" in fallback["probes"]
    assert "PortalRun (return)" in fallback["probes"]

    mariadb = servers[mariadb_server.pid]
    assert (mariadb["db"], mariadb["processes"], mariadb["backends"]) == ("mariadb", 1, [])
    assert mariadb["recipe_error"] is None, mariadb["recipe_error"]
    assert mariadb["families"]["query"]["mechanism"] == "uprobe"


def test_list_shows_the_sessions_of_a_postgres_server(
    require_root_bpf: None, pg_server: ThrowawayPostgres,
) -> None:
    with pg_server.connect() as first, pg_server.connect(autocommit=False) as second:
        pids = [connection.execute("SELECT pg_backend_pid()").fetchone()[0] for connection in (first, second)]
        servers = listed(run_dbprobe("list", "--json", "-p", str(pids[0])))

    assert list(servers) == [pg_server.pid]  # -p names any process of the server
    backends = {backend["pid"]: backend for backend in servers[pg_server.pid]["backends"]}
    assert set(pids) <= set(backends)
    assert [(backends[pid]["kind"], backends[pid]["user"], backends[pid]["database"]) for pid in pids] == \
        [("client backend", "postgres", "postgres")] * 2
    assert (backends[pids[0]]["state"], backends[pids[1]]["state"]) == ("idle", "idle in transaction")
    assert "checkpointer" in {backend["kind"] for backend in backends.values()}


def test_list_text_shows_pids_and_mechanisms(
    require_root_bpf: None, pg_server: ThrowawayPostgres, pg_server_no_usdt: ThrowawayPostgres,
) -> None:
    finished = run_dbprobe("list")
    assert finished.returncode == 0, finished.stderr
    headings = [line for line in finished.stdout.splitlines() if line.startswith("postgresql ")]
    for server in (pg_server, pg_server_no_usdt):
        assert any(f": pid {server.pid}," in heading for heading in headings), finished.stdout
    block_of = {pid: block for block in finished.stdout.split("\n\n")
                for pid in (pg_server.pid, pg_server_no_usdt.pid) if f": pid {pid}," in block.splitlines()[0]}
    assert "  query     usdt" in block_of[pg_server.pid]
    assert "  query     uprobe" in block_of[pg_server_no_usdt.pid]


def test_list_of_a_pid_that_does_not_exist_is_one_error_line(require_root_bpf: None) -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    finished = run_dbprobe("list", "-p", str(pid_max + 1))
    assert finished.returncode == 2
    assert finished.stderr == f"dbprobe: error: no process with pid {pid_max + 1}\n"
    assert finished.stdout == ""


def test_list_of_a_process_that_is_no_server_is_one_error_line(require_root_bpf: None) -> None:
    finished = run_dbprobe("list", "-p", str(os.getpid()))
    assert finished.returncode == 2
    assert len(finished.stderr.splitlines()) == 1
    assert "is not a PostgreSQL, MariaDB or MySQL server process" in finished.stderr


def test_doctor_passes_on_this_machine_and_checks_each_server(
    require_root_bpf: None, pg_server: ThrowawayPostgres, pg_server_no_usdt: ThrowawayPostgres,
) -> None:
    as_json = run_dbprobe("doctor", "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    checks = as_json.json_lines()
    assert all(set(check) == {"check", "status", "detail", "fix"} for check in checks)
    by_name = {check["check"]: check for check in checks}
    assert set(DOCTOR_MACHINE_CHECKS) <= set(by_name)
    assert [check for check in checks if check["status"] == "fail"] == []
    assert all(check["fix"] for check in checks if check["status"] != "ok")
    assert by_name["privileges"]["status"] == by_name["bpf"]["status"] == "ok"
    assert by_name["ring buffer"]["status"] == "ok"
    assert by_name["kernel headers"]["status"] == "ok"
    with_usdt = by_name[f"postgresql pid {pg_server.pid}"]
    assert with_usdt["status"] == "ok" and traced_via(with_usdt["detail"], "query") == "usdt"
    fallback = by_name[f"postgresql pid {pg_server_no_usdt.pid}"]
    assert fallback["status"] == "ok" and traced_via(fallback["detail"], "query") == "uprobe"

    as_text = run_dbprobe("doctor")
    assert as_text.returncode == 0, as_text.stdout + as_text.stderr
    lines = as_text.stdout.splitlines()
    # Only the servers of this test: others on the host may come and go between the two runs.
    ours = (*DOCTOR_MACHINE_CHECKS, with_usdt["check"], fallback["check"])
    for check in (by_name[name] for name in ours):
        assert any(line.startswith(f"{check['status']:<4}  {check['check']}  ") for line in lines), check
    assert lines[-1].startswith("dbprobe can run")
    assert as_text.stderr == ""  # BCC's compiler chatter stays out of the report
