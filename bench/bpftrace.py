"""bpftrace programs the benchmark runs, and reading what they print.

The reference is the in-kernel latency histogram a bpftrace user would write for the
workload's protocol, on the same USDT probes dbprobe uses: a simple query has
query__start/query__done; an extended-protocol (prepared) statement fires neither, so its
reference times the portal run, query__execute__start/done.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

READY_LINE = "bench: probes attached"  # printed by BEGIN, which runs once all probes are attached
USDT_PROVIDER = "postgresql"
REFERENCE_PROBES: dict[str, tuple[str, str]] = {
    "simple": ("query__start", "query__done"),
    "extended": ("query__execute__start", "query__execute__done"),
}


def reference_script(binary: str, protocol: str) -> str:
    start, done = REFERENCE_PROBES[protocol]
    return "\n".join([
        f'BEGIN {{ printf("{READY_LINE}\\n"); }}',
        f"usdt:{binary}:{USDT_PROVIDER}:{start} {{ @start[tid] = nsecs; }}",
        f"usdt:{binary}:{USDT_PROVIDER}:{done} /@start[tid]/ {{",
        "  @latency_ns = hist(nsecs - @start[tid]);",
        "  delete(@start[tid]);",
        "}",
        "END { clear(@start); }",
    ]) + "\n"


def hit_count_script(probes: Iterable[str]) -> str:
    """Count the hits of each probe (``usdt:BIN:provider:name``, ``uprobe:BIN:symbol``)."""
    return _on_every_probe(probes, "@hits[probe] = count();")


def empty_probes_script(probes: Iterable[str]) -> str:
    """The probes with nothing to do: what the hits alone cost (the trap into the kernel,
    the BPF program's entry and exit)."""
    return _on_every_probe(probes, "")


def _on_every_probe(probes: Iterable[str], action: str) -> str:
    # One block a probe: bpftrace 0.17 reads a usdt probe listed after a uprobe in one block
    # as a pattern matching every probe of the binary.
    blocks = "".join(f"{probe} {{ {action} }}\n" for probe in dict.fromkeys(probes))
    return f'BEGIN {{ printf("{READY_LINE}\\n"); }}\n{blocks}'


def histogram_total(output: str) -> int:
    """The number of values in the histograms bpftrace printed (the sum of their buckets)."""
    bucket = re.compile(r"^[\[(][^\])]*[\])]\s+(\d+)\s+\|", re.MULTILINE)
    return sum(int(count) for count in bucket.findall(output))


def probe_counts(output: str) -> dict[str, int]:
    """``@hits[probe]: N`` lines as {probe: N}."""
    line = re.compile(r"^@hits\[(.+)\]: (\d+)$", re.MULTILINE)
    return {probe: int(count) for probe, count in line.findall(output)}


def probe_spec(binary: str, mechanism: str, label: str, on_return: bool) -> str:
    """A dbprobe probe site (its plan's mechanism and label) as a bpftrace probe."""
    if mechanism == "usdt" and label.count(":") == 1:
        return f"usdt:{binary}:{label}"  # label is "provider:name"
    symbol = label.split(" ", 1)[0]  # "PortalRun (return)" -> "PortalRun"
    return f"{'uretprobe' if on_return else 'uprobe'}:{binary}:{symbol}"
