"""Assembling the one BPF program text a trace loads: sources, entry points, parameters.

BCC rewrites map operations (``events.ringbuf_output(...)``, ``totals.lookup(...)``) only
in the main source text, not in the files it includes; a map call left in a header
compiles to an indirect call the kernel rejects. So the quoted ``#include "..."`` lines of
the sources under ``probes/`` are expanded here, each file once, before compiling.

Each family's program is told which others are in the same trace (``DBP_WITH_<SOURCE>``),
so that a site they share does every family's part in one program run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from dbprobe.kernel.entrypoints import HookProgram, entry_points_source, group_sites
from dbprobe.recipes.bind import FamilyPlan

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"(?P<name>[^"]+)".*$', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class TraceProgram:
    source: str
    cflags: tuple[str, ...]
    hooks: tuple[HookProgram, ...]


PAGE_SIZE = 4096
DEFAULT_RINGBUF_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Parameters:
    """Compile-time parameters of the kernel side."""

    thresholds_ns: Mapping[str, int] = field(default_factory=dict)  # by family: query, txn
    filter_pids: bool = False  # trace only the processes user space puts in traced_pids
    ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES  # a power of two, at least a page
    breakdown: bool = False  # where each statement's time goes (probes/waits.h)
    wait_profile: bool = False  # and every off-CPU span summed per wait event
    task_pid_offset: int | None = None  # struct task_struct's pid, from the kernel's BTF

    def __post_init__(self) -> None:
        pages = self.ringbuf_bytes // PAGE_SIZE
        if self.ringbuf_bytes % PAGE_SIZE or pages < 1 or pages & (pages - 1):
            raise ValueError(f"the ring buffer must be a power of two pages of {PAGE_SIZE} "
                             f"bytes, not {self.ringbuf_bytes} bytes")

    def cflags(self) -> tuple[str, ...]:
        flags = [f"-DDBP_{family.upper()}_THRESHOLD_NS={int(ns)}ULL"
                 for family, ns in sorted(self.thresholds_ns.items())]
        if self.filter_pids:
            flags.append("-DDBP_FILTER_PIDS=1")
        if self.ringbuf_bytes != DEFAULT_RINGBUF_BYTES:
            flags.append(f"-DDBP_RINGBUF_PAGES={self.ringbuf_bytes // PAGE_SIZE}")
        if self.breakdown or self.wait_profile:
            flags.append("-DDBP_WITH_BREAKDOWN=1")
        if self.wait_profile:
            flags.append("-DDBP_WAITS_PROFILE=1")
        if self.task_pid_offset is not None:
            flags.append(f"-DDBP_TASK_PID_OFFSET={int(self.task_pid_offset)}")
        return tuple(flags)


def build_program(plans: Sequence[FamilyPlan], parameters: Parameters) -> TraceProgram:
    hooks = group_sites([site for plan in plans for site in plan.sites])
    seen: set[Path] = set()
    sources = dict.fromkeys(plan.family.source for plan in plans)
    text = "\n".join(expand_includes(source, seen) for source in sources)
    return TraceProgram(
        source=text + "\n" + entry_points_source(hooks),
        cflags=parameters.cflags() + family_flags(sources),
        hooks=tuple(hooks),
    )


def family_flags(sources: Sequence[Path]) -> tuple[str, ...]:
    """-DDBP_WITH_POSTGRESQL_QUERY for postgresql_query.bpf.c, and so on."""
    names = (re.sub(r"\W", "_", source.name.split(".", 1)[0]).upper() for source in sources)
    return tuple(f"-DDBP_WITH_{name}=1" for name in dict.fromkeys(names))


def expand_includes(path: Path, seen: set[Path]) -> str:
    """The file's text with its local includes inlined, each file at most once overall."""
    path = path.resolve()
    if path in seen:
        return ""
    seen.add(path)
    text = path.read_text()

    def inline(match: re.Match) -> str:
        included = path.parent / match.group("name")
        if not included.is_file():
            raise FileNotFoundError(f"{path.name} includes {match.group('name')}, which is missing")
        return expand_includes(included, seen)

    return _LOCAL_INCLUDE.sub(inline, text)
