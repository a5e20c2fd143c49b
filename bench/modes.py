"""The configurations the benchmark compares, as a user would run them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mode:
    key: str
    title: str
    command: str  # what a user would type, for the report
    pg_stat_statements: bool = False
    default: bool = True  # run unless --modes says otherwise


MODES: dict[str, Mode] = {mode.key: mode for mode in (
    Mode("baseline", "no tracing", "(nothing attached)"),
    Mode("slow", "dbprobe slow 100ms", "dbprobe slow --threshold 100ms --json -p PID"),
    Mode("slow-ref", "dbprobe slow 100ms, --reference",
         "dbprobe slow --threshold 100ms --json -p PID, as the git revision given by "
         "--reference (default main) has it: a change measured against it in the same run",
         default=False),
    Mode("slow-breakdown", "dbprobe slow 100ms --breakdown",
         "dbprobe slow --threshold 100ms --breakdown --json -p PID: with where each "
         "statement's time goes (the scheduler and file-call tracepoints); run it with slow "
         "to measure what it adds", default=False),
    Mode("slow-breakdown-ref", "dbprobe slow 100ms --breakdown, --reference",
         "dbprobe slow --threshold 100ms --breakdown --json -p PID, as the git revision "
         "given by --reference has it", default=False),
    Mode("slow-watchpoint", "dbprobe slow 100ms + watchpoints",
         "dbprobe slow --threshold 100ms --json -p PID & python -m bench.watchpoint trace "
         "PID: a hardware write watchpoint on every backend's wait_event_info, its BPF "
         "program doing a breakdown's work per trap (the alternative to --breakdown's "
         "reading at each context switch)", default=False),
    Mode("slow-watchpoint-idle", "dbprobe slow 100ms + unwritten watchpoints",
         "as slow-watchpoint, each backend's watchpoint on a word it never writes "
         "(python -m bench.watchpoint trace PID --unwritten): no trap, the watchpoints' "
         "cost at context switches alone", default=False),
    Mode("slow-all", "dbprobe slow 0 (all)",
         "dbprobe slow --threshold 0 --json -p PID > FILE"),
    Mode("three", "slow+locks+txn",
         "dbprobe slow --threshold 100ms --json -p PID & dbprobe locks --json -p PID & "
         "dbprobe txn --threshold 100ms --json -p PID"),
    Mode("together", "slow+locks+txn, one process",
         "the three reports on one trace, as dbprobe demo runs them (python -m bench.combined "
         "PID: slow and txn at 100 ms, every lock wait)"),
    Mode("bpftrace", "bpftrace hist (ref)",
         "bpftrace -e 'usdt:POSTGRES:postgresql:query__start { @start[tid] = nsecs; } "
         "usdt:POSTGRES:postgresql:query__done /@start[tid]/ { @latency_ns = "
         "hist(nsecs - @start[tid]); delete(@start[tid]); }' (extended protocol: "
         "query__execute__start and query__execute__done)"),
    Mode("agent", "dbprobe agent (all)",
         "dbprobe agent --config FILE: every family (query, locks, txn; thresholds 100ms), "
         "following the bench server's binary"),
    Mode("pgss", "pg_stat_statements",
         "shared_preload_libraries=pg_stat_statements; CREATE EXTENSION pg_stat_statements",
         pg_stat_statements=True),
    Mode("empty", "empty probes (floor)",
         "bpftrace -e 'PROBES { }' where PROBES are those dbprobe slow attaches: what the "
         "probe hits alone cost", default=False),
    Mode("slow-onehit", "dbprobe slow 100ms, one hit",
         "python -m bench.onehit --threshold 100ms --json -p PID: slow fed by EndCommand "
         "and the backend's status entry, one probe hit per completed statement (README, "
         "Benchmarks)", default=False),
    Mode("empty-onehit", "empty probes, one hit (floor)",
         "bpftrace -e 'PROBES { }' where PROBES are those bench.onehit attaches "
         "(EndCommand, AbortCurrentTransaction)", default=False),
)}
