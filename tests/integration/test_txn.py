"""``dbprobe txn`` on real clusters, USDT and uprobe fallback."""

from __future__ import annotations

import time

import pytest

from tests.support.tracing import DbprobeRun

IDLE_S = 0.4
TOLERANCE_MS = 300


@pytest.fixture(params=["usdt", "uprobe"])
def cluster(request, require_root_bpf):
    name = "pg_server" if request.param == "usdt" else "pg_server_no_usdt"
    return request.param, request.getfixturevalue(name)


def test_long_and_aborted_transactions_with_their_statements(cluster):
    mechanism, server = cluster
    server.psql("create table if not exists txn_probe (id int primary key, v int);"
                "insert into txn_probe values (1, 0) on conflict do nothing;")
    with server.connect() as session:
        pid = session.execute("select pg_backend_pid()").fetchone()[0]
        run = DbprobeRun(["txn", "--json", "--threshold", "200ms", "-p", str(server.pid)])
        run.wait_attached()
        session.execute("begin")
        session.execute("update txn_probe set v = v + 1 where id = 1")
        time.sleep(IDLE_S)  # idle in transaction
        session.execute("select pg_sleep(0.1)")
        session.execute("select 1")
        session.execute("commit")
        session.execute("begin")
        session.execute("select pg_sleep(0.25)")
        session.execute("rollback")
        for _ in range(20):
            session.execute("select 1")  # fast implicit transactions: counted, not reported
        time.sleep(0.3)
        finished = run.stop()

    assert finished.returncode == 0, finished.stderr
    txns = [t for t in finished.events("txn") if t["pid"] == pid]
    assert [t["outcome"] for t in txns] == ["commit", "abort"], txns
    long_one, aborted = txns
    assert [s["query"] for s in long_one["statements"]] == [
        "begin", "update txn_probe set v = v + ? where id = ?", "select pg_sleep(?)"]
    assert long_one["statement_count"] == 5  # begin, update, sleep, select, commit
    assert IDLE_S * 1000 <= long_one["idle_in_txn_ms"] < IDLE_S * 1000 + TOLERANCE_MS
    assert (IDLE_S + 0.1) * 1000 <= long_one["duration_ms"] < (IDLE_S + 0.1) * 1000 + TOLERANCE_MS
    assert aborted["statement_count"] == 3 and 250 <= aborted["duration_ms"] < 250 + TOLERANCE_MS
    assert all(t["source"] == "uprobe" for t in txns)  # the activity reports, in both recipes
    # The local id is read from the backend's PGPROC when it goes idle in transaction.
    backend_id, lxid = long_one["vxid"].split("/")
    assert int(backend_id) > 0 and int(lxid) > 0

    summary = finished.events("summary")[-1]
    assert summary["commits"] >= 21 and summary["aborts"] >= 1
    assert summary["reported"] == len(finished.events("txn"))
    assert sum(b["count"] for b in summary["histogram_us"]) == summary["transactions"]
    assert summary["longest"][0]["duration_ms"] >= summary["longest"][-1]["duration_ms"]


def test_a_connection_start_up_is_not_a_transaction(pg_server, require_root_bpf):
    run = DbprobeRun(["txn", "--json", "--threshold", "0", "-p", str(pg_server.pid)])
    run.wait_attached()
    for _ in range(3):
        with pg_server.connect():
            pass  # connected and gone, without a statement
    with pg_server.connect() as session:
        session.execute("select 1")
    time.sleep(0.3)
    finished = run.stop()
    assert finished.returncode == 0, finished.stderr
    txns = finished.events("txn")
    assert [t["statement_count"] for t in txns] == [1], txns
    assert finished.events("summary")[-1]["transactions"] == 1


def test_text_report(pg_server, require_root_bpf):
    run = DbprobeRun(["txn", "--threshold", "100ms", "--duration", "5", "-p", str(pg_server.pid)])
    run.wait_attached()
    pg_server.psql("begin; select pg_sleep(0.15); commit;")
    finished = run.wait(timeout=30)
    lines = finished.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "PID", "DATABASE", "VXID"]
    assert "commit" in lines[1] and lines[1].endswith("begin; select pg_sleep(?); commit")
    assert any(line.startswith("# Transaction digest") for line in lines)
    assert "Longest transactions:" in lines
