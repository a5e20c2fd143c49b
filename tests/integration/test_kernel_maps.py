"""The kernel maps user space reads, on a real server: their mirrors and what they hold."""

from __future__ import annotations

import time

from dbprobe.kernel.trace import Trace, TraceRequest

# Every map a report reads, beside the ring buffer.
READ_BY_REPORTS = ("totals", "query_hist", "txn_totals", "txn_hist", "pg_backends",
                   "pg_lwlock_totals")


def test_the_families_together_keep_each_backend_in_one_slot(pg_server, require_root_bpf):
    request = TraceRequest(families=("query", "locks", "txn"), databases=("postgresql",),
                           pid=pg_server.pid, thresholds_ns={"query": 20_000_000, "txn": 10**12})
    with Trace.open(request) as trace, pg_server.connect() as session:
        # A mirror smaller than the kernel's values would be overrun by every read.
        for name in READ_BY_REPORTS:
            trace.collector.table(name)
        pid = session.execute("select pg_backend_pid()").fetchone()[0]
        session.execute("begin")
        session.execute("select 'kept once' as text")
        time.sleep(0.05)
        activity = trace.collector.last_statement(pid)
        session.execute("commit")
        after = trace.collector.last_statement(pid)
        session.execute("select pg_sleep(0.03)")  # at or over the 20 ms threshold
        totals = trace.collector.totals()
        transactions = trace.collector.summed("txn_totals")

    # Idle in transaction after the select: its text, start and end, in the one slot.
    assert activity.text == "select 'kept once' as text"
    assert 0 < activity.start_ns < activity.end_ns
    assert activity.idle_state == 3  # STATE_IDLEINTRANSACTION
    assert after.text == "commit" and after.idle_state == 1  # STATE_IDLE
    assert totals.queries >= 5  # pg_backend_pid, begin, select, commit, pg_sleep
    assert totals.slow == 1 and totals.emitted >= 1  # counted in kernel, sent or not
    assert transactions["commits"] >= 2  # the pg_backend_pid and the begin..commit
