"""The time the kernel spends in a tracer's BPF programs, from its own statistics.

With statistics enabled (BPF_ENABLE_STATS: while the returned descriptor is open), the
kernel counts each program's runs and run time, and shows them in the fdinfo of every
descriptor of the program. A tracer's programs are read through /proc/PID/fdinfo: the
figure does not depend on what else the machine runs, unlike CPU per transaction.
Statistics add a clock read to every program run, of every tracer alike.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_ENABLE_STATS = 32
_BPF_STATS_RUN_TIME = 0
_RUN_TIME = re.compile(r"^run_time_ns:\s*(\d+)$", re.MULTILINE)
_PROGRAM_ID = re.compile(r"^prog_id:\s*(\d+)$", re.MULTILINE)


@contextmanager
def bpf_stats() -> Iterator[bool]:
    """Keep the kernel's BPF run-time statistics on; yields whether they could be."""
    number = _BPF_SYSCALL.get(platform.machine())
    fd = -1
    if number is not None:
        attr = ctypes.create_string_buffer(128)
        attr[0:4] = _BPF_STATS_RUN_TIME.to_bytes(4, "little")
        fd = ctypes.CDLL(None, use_errno=True).syscall(number, _BPF_ENABLE_STATS, attr, 128)
    try:
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)


def bpf_run_time_ns(pids: Iterable[int]) -> int | None:
    """Run time so far of the BPF programs the processes hold, each program once."""
    seen: dict[int, int] = {}
    for pid in pids:
        try:
            infos = list(Path(f"/proc/{pid}/fdinfo").iterdir())
        except OSError:
            return None
        for info in infos:
            try:
                text = info.read_text()
            except OSError:
                continue
            program, run_time = _PROGRAM_ID.search(text), _RUN_TIME.search(text)
            if program and run_time:
                seen[int(program.group(1))] = int(run_time.group(1))
    return sum(seen.values())
