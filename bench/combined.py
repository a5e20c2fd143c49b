"""The slow-query, lock and transaction reports on one trace of one server, in one process,
as ``dbprobe demo`` runs them: ``python -m bench.combined PID``.

The benchmark's "slow+locks+txn, one process" configuration runs this; it prints the
reports' JSON records on stdout (the slow-query report's summary first among the
summaries) and dbprobe's status lines on stderr, and stops on SIGINT as dbprobe does.
"""

from __future__ import annotations

import sys

from dbprobe.errors import DbprobeError
from dbprobe.kernel.trace import TraceRequest
from dbprobe.render.output import Output
from dbprobe.reports.locks import LockReport
from dbprobe.reports.queries import SlowQueryReport
from dbprobe.reports.runner import trace_reports
from dbprobe.reports.txns import TxnReport

SLOW_THRESHOLD_NS = 100_000_000
TXN_THRESHOLD_NS = 100_000_000


def main(pid: int) -> int:
    output = Output(json=True, show_literals=False, width=None)
    reports = [SlowQueryReport(output, SLOW_THRESHOLD_NS), LockReport(output, 0),
               TxnReport(output, TXN_THRESHOLD_NS)]
    request = TraceRequest(families=("query", "locks", "txn"), databases=("postgresql",), pid=pid,
                           thresholds_ns={"query": SLOW_THRESHOLD_NS, "txn": TXN_THRESHOLD_NS})
    try:
        trace_reports(reports, request, duration_s=None, interval_s=None)
    except DbprobeError as error:
        print(f"dbprobe: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
