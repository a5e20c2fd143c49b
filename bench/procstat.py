"""CPU time and memory of processes and of the machine, from /proc.

A backend's CPU time disappears from /proc when it exits, but the kernel adds it to its
parent's ``cutime``/``cstime`` as soon as the parent reaps it. The postmaster reaps its
backends, so the CPU a server spent over an interval is the change of

    postmaster (utime + stime + cutime + cstime) + the same four for each living child

between two moments when no client backend is between exit and reaping. Uprobe and BPF
work runs in the traced process's context, so it is part of the backends' time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """The CPU fields of /proc/PID/stat, in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # reaped children's user time
    cstime: int  # reaped children's system time

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def total_ticks(self) -> int:
        """Its own time and that of the children it has reaped."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_pid_stat(text: str) -> ProcessCpu:
    """Parse /proc/PID/stat. The command name (field 2) is in parentheses and may itself
    hold spaces and parentheses, so the fields are counted from its last ')'."""
    head, paren, rest = text.rpartition(")")
    if not paren or "(" not in head:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()  # fields[0] is field 3 (state), so field n is fields[n - 3]
    if len(fields) < 15:
        raise ValueError(f"/proc/PID/stat line too short: {text[:80]!r}")
    return ProcessCpu(pid=pid, ppid=int(fields[1]), utime=int(fields[11]),
                      stime=int(fields[12]), cutime=int(fields[13]), cstime=int(fields[14]))


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """The machine-wide "cpu" line of /proc/stat, in clock ticks."""

    busy: int  # user + nice + system + irq + softirq (guest time is inside user)
    idle: int  # idle + iowait
    steal: int  # taken by the hypervisor for other guests

    def __sub__(self, earlier: MachineCpu) -> MachineCpu:
        return MachineCpu(self.busy - earlier.busy, self.idle - earlier.idle,
                          self.steal - earlier.steal)


def parse_machine_stat(text: str) -> MachineCpu:
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = (
                [int(value) for value in fields[1:9]] + [0] * 8)[:8]
            return MachineCpu(busy=user + nice + system + irq + softirq,
                              idle=idle + iowait, steal=steal)
    raise ValueError("no 'cpu' line in /proc/stat")


def tree_ticks(leader: ProcessCpu, children: Iterable[ProcessCpu]) -> int:
    """CPU of a process, of the children it reaped, and of its living children."""
    return leader.total_ticks + sum(child.total_ticks for child in children)


def parse_status_kib(text: str, field: str) -> int | None:
    """A "kB" field of /proc/PID/status, such as VmHWM (peak resident set size)."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            parts = value.split()
            return int(parts[0]) if parts else None
    return None


def ticks_to_seconds(ticks: int) -> float:
    return ticks / CLOCK_TICKS_PER_S


# --- reading the live system ----------------------------------------------------------


def read_process_cpu(pid: int) -> ProcessCpu | None:
    """None when the process is gone."""
    try:
        return parse_pid_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def read_machine_cpu() -> MachineCpu:
    return parse_machine_stat(Path("/proc/stat").read_text())


def children_of(pid: int) -> list[int]:
    """The living children of a process (from every thread's children list)."""
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(child) for child in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return children


def process_tree_ticks(leader_pid: int) -> int:
    """tree_ticks() of a live process: read the leader first, so a child that exits
    meanwhile is missed rather than counted twice."""
    leader = read_process_cpu(leader_pid)
    if leader is None:
        raise ProcessLookupError(leader_pid)
    children = [cpu for cpu in map(read_process_cpu, children_of(leader_pid)) if cpu is not None]
    return tree_ticks(leader, children)


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM of a live process; None when it is gone."""
    try:
        return parse_status_kib(Path(f"/proc/{pid}/status").read_text(), "VmHWM")
    except (FileNotFoundError, ProcessLookupError):
        return None
