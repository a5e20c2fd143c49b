"""What one uprobe hit costs at a 1-byte nop, a 5-byte nop and two kinds of function entry, the
experiment the README describes under "Benchmarks": ``python -m bench.nop5 [--rounds N]``.

It compiles bench/nop5.c, whose sites are functions of their own, and in each round runs it
once per site untraced and once with an empty BPF program on the site, one after the other,
so the machine's load is alike for both. The cost of a hit is the traced run's CPU per call
less the untraced one's. The program reports the bytes at the site after its calls, which say
what the kernel did with the probe: an int3 trap (cc) or a call into its trampoline (e8).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "nop5.c"
SITES = ("nop1", "nop5", "endbr64", "push")
SITE_SHOWN = {
    "nop1": "1-byte nop (sdt.h's USDT site)",
    "nop5": "5-byte nop",
    "endbr64": "function entry, endbr64",
    "push": "function entry, push %rbp",
}
EMPTY_PROGRAM = "int on_hit(struct pt_regs *ctx) { return 0; }"


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the program, as its output line says."""

    cpu_ns: float  # the thread's CPU per call
    wall_ns: float
    site_bytes: str  # hex, the first five bytes at the site after the calls
    trampoline: bool  # the kernel's uprobe trampoline is mapped in the process

    @property
    def how_hit(self) -> str:
        if self.site_bytes.startswith("e8") and self.trampoline:
            return "call into the trampoline"
        if self.site_bytes.startswith("cc"):
            return "int3 trap"
        return f"not probed ({self.site_bytes})"


def parse_run(line: str) -> Run:
    cpu, wall, site_bytes, trampoline = line.split()
    return Run(float(cpu), float(wall), site_bytes, trampoline == "1")


@dataclass(frozen=True, slots=True)
class SiteResult:
    site: str
    untraced_ns: float  # median over the rounds
    hit_ns: float  # median of (traced - untraced) per round
    hit_range: tuple[float, float]
    how_hit: str  # what the kernel did in the traced runs, if they all agree


def summarise(rounds: Sequence[dict[str, tuple[Run, Run]]]) -> list[SiteResult]:
    """Per site, from each round's (untraced, traced) pair."""
    results = []
    for site in rounds[0]:
        pairs = [round_[site] for round_ in rounds]
        hits = [traced.cpu_ns - untraced.cpu_ns for untraced, traced in pairs]
        ways = {traced.how_hit for _, traced in pairs}
        results.append(SiteResult(
            site=site,
            untraced_ns=statistics.median(untraced.cpu_ns for untraced, _ in pairs),
            hit_ns=statistics.median(hits),
            hit_range=(min(hits), max(hits)),
            how_hit=ways.pop() if len(ways) == 1 else "varied: " + ", ".join(sorted(ways)),
        ))
    return results


def ratios_to(results: Sequence[SiteResult], reference: str) -> dict[str, float]:
    base = next(result.hit_ns for result in results if result.site == reference)
    return {result.site: result.hit_ns / base for result in results}


def render(results: Sequence[SiteResult], rounds: int, calls: int) -> str:
    ratios = ratios_to(results, "nop1")
    lines = [
        f"{rounds} rounds of {calls:,} calls per run, kernel {platform.release()}",
        "",
        "| site | untraced ns/call | uprobe hit ns [range] | vs 1-byte nop | the kernel's way |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        low, high = result.hit_range
        lines.append(f"| {SITE_SHOWN[result.site]} | {result.untraced_ns:.1f} | "
                     f"{result.hit_ns:.0f} [{low:.0f}-{high:.0f}] | {ratios[result.site]:.2f} | "
                     f"{result.how_hit} |")
    return "\n".join(lines)


def build(folder: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("nop5: gcc is not installed")
    binary = folder / "nop5"
    subprocess.run([gcc, "-O2", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def run(binary: Path, site: str, calls: int) -> Run:
    result = subprocess.run([str(binary), site, str(calls)], capture_output=True, text=True,
                            check=True)
    return parse_run(result.stdout)


def traced_run(bpf, binary: Path, site: str, calls: int) -> Run:
    bpf.attach_uprobe(name=str(binary), sym=f"site_{site}", fn_name="on_hit")
    try:
        return run(binary, site, calls)
    finally:
        bpf.detach_uprobe(name=str(binary), sym=f"site_{site}")


def measure(binary: Path, rounds: int, calls: int) -> list[dict[str, tuple[Run, Run]]]:
    from bcc import BPF

    bpf = BPF(text=EMPTY_PROGRAM)
    try:
        return [{site: (run(binary, site, calls), traced_run(bpf, binary, site, calls))
                 for site in SITES} for _ in range(rounds)]
    finally:
        bpf.cleanup()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nop5", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls per run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nop5.") as folder:
        binary = build(Path(folder))
        results = summarise(measure(binary, args.rounds, args.calls))
    print(render(results, args.rounds, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
