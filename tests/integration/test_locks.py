"""``dbprobe locks`` with real contention on real clusters, USDT and uprobe fallback."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.support.tracing import DbprobeRun

HOLD_S = 1.2  # how long the blocker keeps its lock once the waiter queues
TOLERANCE_MS = 400


@pytest.fixture(params=["usdt", "uprobe"])
def cluster(request, require_root_bpf):
    name = "pg_server" if request.param == "usdt" else "pg_server_no_usdt"
    return request.param, request.getfixturevalue(name)


@pytest.fixture
def table(cluster):
    _, server = cluster
    name = f"accounts_{uuid.uuid4().hex[:8]}"
    server.psql(f"create table {name} (id int primary key, balance int);"
                f"insert into {name} select g, 100 from generate_series(1, 10) g;")
    yield name
    server.psql(f"drop table {name};", check=False)


def _in_background(connection, sql: str) -> threading.Thread:
    def run() -> None:
        try:
            connection.execute(sql)
        except Exception:  # the deadlock victim's error is expected
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _trace_locks(server, *extra: str) -> DbprobeRun:
    run = DbprobeRun(["locks", "--json", "-p", str(server.pid), *extra])
    run.wait_attached()
    return run


def test_row_lock_wait_names_the_idle_in_transaction_blocker(cluster, table):
    mechanism, server = cluster
    with server.connect() as blocker, server.connect() as waiter:
        blocker_pid = blocker.execute("select pg_backend_pid()").fetchone()[0]
        waiter_pid = waiter.execute("select pg_backend_pid()").fetchone()[0]
        run = _trace_locks(server)
        blocker.execute("begin")
        blocker.execute(f"update {table} set balance = balance - 10 where id = 1")
        queued = _in_background(waiter, f"update {table} set balance = balance + 10 where id = 1")
        time.sleep(HOLD_S)
        blocker.execute("commit")
        queued.join(10)
        time.sleep(0.3)
        finished = run.stop()

    assert finished.returncode == 0, finished.stderr
    (wait,) = [w for w in finished.events("lock_wait") if w["pid"] == waiter_pid]
    assert wait["outcome"] == "granted"
    assert wait["locktype"] == "transactionid" and wait["mode"] == "ShareLock"
    assert HOLD_S * 1000 - 100 <= wait["wait_ms"] < HOLD_S * 1000 + TOLERANCE_MS
    assert wait["query"] == f"update {table} set balance = balance + ? where id = ?"
    (blocker_seen,) = wait["blockers"]
    assert blocker_seen["pid"] == blocker_pid
    assert blocker_seen["state"] == "idle in transaction"
    # Idle since its update, just before the waiter queued, until the wait ended.
    assert HOLD_S * 1000 - 100 <= blocker_seen["state_ms"] < HOLD_S * 1000 + TOLERANCE_MS
    assert blocker_seen["query"] == f"update {table} set balance = balance - ? where id = ?"
    assert "ExclusiveLock" in blocker_seen["modes"]
    assert wait["source"] == "uprobe"  # ProcSleep, in both recipes
    # A wait longer than a second is shown while it lasts, before it ends.
    (waiting,) = [w for w in finished.events("lock_waiting") if w["pid"] == waiter_pid]
    assert waiting["blockers"][0]["pid"] == blocker_pid

    summary = finished.events("summary")[-1]
    assert summary["waits"] >= 1 and summary["deadlocks"] == 0 and summary["lost_events"] == 0
    assert any(s["query"] == f"update {table} set balance = balance - ? where id = ?"
               for s in summary["blocking_statements"])


def test_table_lock_with_two_blockers_and_catalog_names(cluster, table):
    _, server = cluster
    with server.connect() as reader_a, server.connect() as reader_b, server.connect() as locker:
        pids = {c.execute("select pg_backend_pid()").fetchone()[0] for c in (reader_a, reader_b)}
        run = _trace_locks(server, "--dsn", server.dsn)
        for reader in (reader_a, reader_b):
            reader.execute("begin")
            reader.execute(f"select count(*) from {table}")
        locker.execute("begin")
        queued = _in_background(locker, f"lock table {table} in access exclusive mode")
        time.sleep(HOLD_S)
        reader_a.execute("commit")
        reader_b.execute("commit")
        queued.join(10)
        locker.execute("commit")
        time.sleep(0.3)
        finished = run.stop()

    waits = [w for w in finished.events("lock_wait") if w["locktype"] == "relation"]
    assert len(waits) >= 1, finished.stdout
    wait = waits[0]
    assert wait["mode"] == "AccessExclusiveLock"
    assert wait["target"] == f"public.{table}", finished.stderr
    assert pids <= {b["pid"] for b in wait["blockers"]}, wait["blockers"]
    assert all(b["query"] == f"select count(*) from {table}" for b in wait["blockers"] if b["pid"] in pids)


def test_deadlock_is_reported_with_both_sides(cluster, table):
    _, server = cluster
    with server.connect() as first, server.connect() as second:
        run = _trace_locks(server)
        first.execute("begin")
        second.execute("begin")
        first.execute(f"update {table} set balance = 1 where id = 1")
        second.execute(f"update {table} set balance = 2 where id = 2")
        crossing = _in_background(first, f"update {table} set balance = 1 where id = 2")
        time.sleep(0.3)
        _in_background(second, f"update {table} set balance = 2 where id = 1").join(10)
        crossing.join(10)
        for connection in (first, second):
            connection.execute("rollback")
        time.sleep(0.3)
        finished = run.stop()

    (deadlock,) = finished.events("deadlock")
    pids = {wait["pid"] for wait in deadlock["waits"]}
    assert len(pids) == 2 and deadlock["victim"] in pids
    victim_wait = next(w for w in deadlock["waits"] if w["pid"] == deadlock["victim"])
    assert victim_wait["outcome"] == "deadlock"
    assert {b["pid"] for b in victim_wait["blockers"]} == pids - {deadlock["victim"]}
    summary = finished.events("summary")[-1]
    assert summary["deadlocks"] == 1
    # The victim's wait counts once: it is told in the deadlock, the others as they end.
    assert summary["waits"] == len(finished.events("lock_wait")) + 1


def test_short_waits_under_deadlock_timeout_are_reported(cluster, table):
    _, server = cluster
    with server.connect() as blocker, server.connect() as waiter:
        run = _trace_locks(server)
        blocker.execute("begin")
        blocker.execute(f"select * from {table} where id = 3 for update")
        queued = _in_background(waiter, f"update {table} set balance = 0 where id = 3")
        time.sleep(0.15)  # far below deadlock_timeout (1 s), which log_lock_waits needs
        blocker.execute("commit")
        queued.join(10)
        time.sleep(0.3)
        finished = run.stop()
    waits = finished.events("lock_wait")
    assert len(waits) == 1 and 100 <= waits[0]["wait_ms"] < 1000


def test_a_wait_ended_by_lock_timeout_ends_then_with_its_outcome(cluster, table):
    _, server = cluster
    with server.connect() as blocker, server.connect() as waiter:
        waiter_pid = waiter.execute("select pg_backend_pid()").fetchone()[0]
        run = _trace_locks(server)
        blocker.execute("begin")
        blocker.execute(f"select * from {table} where id = 4 for update")
        waiter.execute("set lock_timeout = '150ms'")
        _in_background(waiter, f"update {table} set balance = 0 where id = 4").join(10)
        time.sleep(0.5)  # the waiter's connection stays open: it does not go away
        blocker.execute("commit")
        finished = run.stop()
    (wait,) = [w for w in finished.events("lock_wait") if w["pid"] == waiter_pid]
    assert wait["outcome"] == "lock timeout"
    assert 150 <= wait["wait_ms"] < 150 + TOLERANCE_MS
    assert finished.events("summary")[-1]["still_waiting"] == 0


def test_a_waiter_that_gave_up_is_not_named_as_a_later_waiters_blocker(cluster, table):
    _, server = cluster
    with server.connect() as holder, server.connect() as quitter, server.connect() as waiter:
        holder_pid = holder.execute("select pg_backend_pid()").fetchone()[0]
        waiter_pid = waiter.execute("select pg_backend_pid()").fetchone()[0]
        run = _trace_locks(server)
        holder.execute("begin")
        holder.execute(f"select count(*) from {table}")  # AccessShareLock, held
        # The quitter asks for the table exclusively, gives up, and stays in its transaction.
        quitter.execute("begin")
        quitter.execute("set local lock_timeout = '100ms'")
        quitter.execute("savepoint before_wait")
        _in_background(quitter, f"lock table {table} in access exclusive mode").join(10)
        quitter.execute("rollback to savepoint before_wait")
        waiter.execute("begin")
        queued = _in_background(waiter, f"lock table {table} in access exclusive mode")
        time.sleep(0.4)
        holder.execute("commit")
        queued.join(10)
        waiter.execute("commit")
        quitter.execute("rollback")
        time.sleep(0.3)
        finished = run.stop()
    (wait,) = [w for w in finished.events("lock_wait") if w["pid"] == waiter_pid]
    assert [b["pid"] for b in wait["blockers"]] == [holder_pid]
