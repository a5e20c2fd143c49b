"""The workload: select-only pgbench over the simple or the extended protocol."""

from __future__ import annotations

import re
import resource
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.errors import BenchError

if TYPE_CHECKING:
    from dbprobe.demo.server import ThrowawayPostgres

# pgbench's query mode for each protocol the benchmark compares.
PROTOCOL_FLAGS: dict[str, tuple[str, ...]] = {
    "simple": (),                      # pgbench -S: one simple Query message per transaction
    "extended": ("-M", "prepared"),    # Bind/Execute of a prepared statement
}
MAX_THREADS = 2  # pgbench -j: the machine this was written for has two cores


@dataclass(frozen=True, slots=True)
class Workload:
    protocol: str  # a key of PROTOCOL_FLAGS
    clients: int
    seconds: int

    @property
    def threads(self) -> int:
        return min(MAX_THREADS, self.clients)

    def argv(self) -> list[str]:
        # -n: no vacuum before each run; the tables do not change under -S.
        return ["pgbench", "-n", "-S", *PROTOCOL_FLAGS[self.protocol], "-c", str(self.clients),
                "-j", str(self.threads), "-T", str(self.seconds)]

    def describe(self) -> str:
        return "pgbench " + " ".join(self.argv()[1:])


@dataclass(frozen=True, slots=True)
class PgbenchResult:
    tps: float  # pgbench's figure, without the initial connection time
    transactions: int
    wall_seconds: float
    client_cpu_seconds: float  # pgbench's own user + system time


def parse_pgbench_output(output: str) -> tuple[float, int]:
    """(tps, transactions processed) from pgbench's report."""
    tps = re.search(r"^tps = ([0-9.]+) \(without initial connection", output, re.MULTILINE)
    done = re.search(r"^number of transactions actually processed: (\d+)", output, re.MULTILINE)
    if tps is None or done is None:
        raise ValueError("no tps or transaction count in pgbench's output")
    return float(tps.group(1)), int(done.group(1))


def run_pgbench(server: ThrowawayPostgres, workload: Workload) -> PgbenchResult:
    """Run pgbench to its end. Its CPU time is read from the rusage of reaped children,
    so nothing else may be reaped by this process while it runs."""
    before = _children_cpu_seconds()
    started = time.monotonic()
    process = server.run_as_postgres(workload.argv(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate()
    wall = time.monotonic() - started
    client_cpu = _children_cpu_seconds() - before
    if process.returncode != 0:
        raise BenchError(f"{workload.describe()} failed: {_last_line(output)}")
    try:
        tps, transactions = parse_pgbench_output(output)
    except ValueError as error:
        raise BenchError(f"{workload.describe()}: {error}: {_last_line(output)}") from None
    return PgbenchResult(tps=tps, transactions=transactions, wall_seconds=wall,
                         client_cpu_seconds=client_cpu)


def initialise(server: ThrowawayPostgres, scale: int) -> None:
    process = server.run_as_postgres(["pgbench", "-i", "-q", "-s", str(scale)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate()
    if process.returncode != 0:
        raise BenchError(f"pgbench -i -s {scale} failed: {_last_line(output)}")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
