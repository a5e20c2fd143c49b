"""How many times dbprobe's probes fire per transaction (each hit is a trap into the
kernel and a BPF program run in the backend), counted by bpftrace on the same sites."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import bpftrace
from bench.cluster import BenchServer
from bench.pgbench import Workload, run_pgbench
from bench.tracers import TracerProcess
from dbprobe.elf import ElfBinary
from dbprobe.plan import plan_family
from dbprobe.recipes import load_recipe
from dbprobe.targets import choose_targets

FAMILIES = ("query", "locks", "txn")


@dataclass(frozen=True, slots=True)
class ProbeHits:
    protocol: str
    transactions: int
    per_transaction: dict[str, float]  # bpftrace probe -> hits per transaction
    families: dict[str, tuple[str, ...]]  # dbprobe family -> its probes

    def family_hits(self, family: str) -> float:
        return sum(self.per_transaction.get(probe, 0.0) for probe in self.families[family])


def dbprobe_probes(server: BenchServer) -> dict[str, tuple[str, ...]]:
    """The probes dbprobe attaches to this server for each family, as bpftrace names them."""
    target = choose_targets(pid=server.pid, binary=None, databases=("postgresql",))[0]
    recipe = load_recipe("postgresql")
    with ElfBinary(server.binary) as binary:
        plans = {family: plan_family(recipe, family, binary, target.version) for family in FAMILIES}
    return {family: tuple(dict.fromkeys(
                bpftrace.probe_spec(str(server.binary), site.mechanism, site.label, site.on_return)
                for site in plan.sites))
            for family, plan in plans.items()}


def count_hits(server: BenchServer, workload: Workload, workdir: Path) -> ProbeHits:
    families = dbprobe_probes(server)
    every_probe = [probe for probes in families.values() for probe in probes]
    counter = TracerProcess("bpftrace-hits", ["bpftrace", "-e", bpftrace.hit_count_script(every_probe)],
                            workdir, ready_mark=bpftrace.READY_LINE, mark_on_stdout=True)
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
