"""How many times dbprobe's probes fire per transaction (each hit is a trap into the
kernel and a BPF program run in the backend), counted by bpftrace on the same sites."""

from __future__ import annotations

from dataclasses import dataclass

from bench import bpftrace
from bench.cluster import BenchServer
from bench.pgbench import Workload, run_pgbench
from bench.tracer_process import TracerProcess
from bench.tracers import Tools


@dataclass(frozen=True, slots=True)
class ProbeHits:
    protocol: str
    transactions: int
    per_transaction: dict[str, float]  # bpftrace probe -> hits per transaction
    families: dict[str, tuple[str, ...]]  # dbprobe family -> its probes

    def family_hits(self, family: str) -> float:
        return sum(self.per_transaction.get(probe, 0.0) for probe in self.families[family])


def count_hits(server: BenchServer, workload: Workload, tools: Tools) -> ProbeHits:
    families = tools.dbprobe.planned_probes(server.pid)
    every_probe = list(dict.fromkeys(probe for probes in families.values() for probe in probes))
    script = bpftrace.hit_count_script(every_probe)
    counter = TracerProcess("bpftrace-hits", ["bpftrace", "-e", script], tools.workdir,
                            ready_mark=bpftrace.READY_LINE, mark_on_stdout=True)
    try:
        counter.wait_ready()
        server.wait_quiet()
        result = run_pgbench(server.server, workload)
        counter.stop()
        counts = bpftrace.probe_counts(counter.stdout_path.read_text(errors="replace"))
    finally:
        counter.kill()
        counter.stdout_path.unlink(missing_ok=True)
    return ProbeHits(workload.protocol, result.transactions,
                     {probe: counts.get(probe, 0) / result.transactions for probe in every_probe},
                     families)
