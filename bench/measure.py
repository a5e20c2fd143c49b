"""One measured run: a configuration attached, pgbench, and where the CPU went."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from bench.bpfstats import bpf_run_time_ns
from bench.cluster import BenchServer
from bench.pgbench import Workload, run_pgbench
from bench.procstat import MachineCpu, read_machine_cpu, ticks_to_seconds
from bench.modes import Mode
from bench.tracers import Tools, attach


@dataclass(frozen=True, slots=True)
class RunResult:
    mode: str
    protocol: str
    round: int
    sequence: int  # the run's place in time among all runs
    clients: int
    seconds: float  # pgbench's wall time
    tps: float
    transactions: int
    server_cpu_s: float  # postmaster and backends, BPF work in them included
    tracer_cpu_s: float  # the tracer processes (0 when nothing runs beside the server)
    client_cpu_s: float  # pgbench
    other_cpu_s: float  # everything else the machine ran meanwhile: noise
    steal_s: float  # CPU the hypervisor gave to other guests
    bpf_s: float | None  # run time of the tracer's BPF programs (in the backends), when known
    statements: int | None  # statements the configuration counted
    events: int | None  # statements it delivered to user space
    lost_events: int | None
    peak_rss_kib: int | None  # the tracer processes' VmHWM, added up
    attach_s: float | None  # tracer start to "probes attached"
    quiet: bool  # every client backend was reaped before and after (CPU figures exact)
    check: str


@dataclass(frozen=True, slots=True)
class _Snapshot:
    server_ticks: int
    tracer_ticks: int
    machine: MachineCpu
    bench_cpu_s: float

    @classmethod
    def take(cls, server: BenchServer, tracer_ticks: int) -> _Snapshot:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(server.cpu_ticks(), tracer_ticks, read_machine_cpu(),
                   usage.ru_utime + usage.ru_stime)


def measure(server: BenchServer, mode: Mode, workload: Workload, tools: Tools, *,
            round_number: int, sequence: int) -> RunResult:
    server.use_pg_stat_statements(mode.pg_stat_statements)
    attached = attach(mode, server, workload.protocol, tools)
    try:
        quiet = server.wait_quiet()
        pids = [process.pid for process in attached.processes]
        bpf_before = bpf_run_time_ns(pids) if pids else None
        before = _Snapshot.take(server, attached.cpu_ticks())
        result = run_pgbench(server.server, workload)
        quiet = server.wait_quiet() and quiet
        after = _Snapshot.take(server, attached.cpu_ticks())
        bpf_after = bpf_run_time_ns(pids) if pids else None
        peak_rss = attached.peak_rss_kib()
    except BaseException:
        attached.kill()
        raise
    counts = attached.finish()
    server_cpu = ticks_to_seconds(after.server_ticks - before.server_ticks)
    tracer_cpu = ticks_to_seconds(after.tracer_ticks - before.tracer_ticks)
    machine = after.machine - before.machine
    bench_cpu = after.bench_cpu_s - before.bench_cpu_s
    other = ticks_to_seconds(machine.busy) - server_cpu - tracer_cpu - result.client_cpu_seconds - bench_cpu
    return RunResult(
        mode=mode.key, protocol=workload.protocol, round=round_number, sequence=sequence,
        clients=workload.clients,
        seconds=result.wall_seconds, tps=result.tps, transactions=result.transactions,
        server_cpu_s=server_cpu, tracer_cpu_s=tracer_cpu, client_cpu_s=result.client_cpu_seconds,
        other_cpu_s=max(other, 0.0), steal_s=ticks_to_seconds(machine.steal),
        bpf_s=(bpf_after - bpf_before) / 1e9 if bpf_before is not None and bpf_after is not None
        else None,
        statements=counts.statements, events=counts.events, lost_events=counts.lost_events,
        peak_rss_kib=peak_rss, attach_s=attached.ready_seconds, quiet=quiet, check=counts.check,
    )
