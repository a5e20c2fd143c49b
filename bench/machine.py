"""What the benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Machine:
    cpu_model: str
    cores: int
    virtualised: bool
    memory_gib: float
    kernel: str
    distribution: str
    postgres: str
    bpftrace: str
    python: str
    date: str  # UTC, ISO 8601
    load_average: tuple[float, float, float]  # when the benchmark started


def describe_machine(postgres_version: str) -> Machine:
    cpuinfo = _read("/proc/cpuinfo")
    return Machine(
        cpu_model=_cpuinfo_field(cpuinfo, "model name") or platform.processor() or "unknown",
        cores=os.cpu_count() or 0,
        virtualised="hypervisor" in (_cpuinfo_field(cpuinfo, "flags") or "").split(),
        memory_gib=round(_meminfo_kib("MemTotal") / 2**20, 1),
        kernel=platform.release(),
        distribution=_os_release(),
        postgres=postgres_version,
        bpftrace=_program_version(["bpftrace", "--version"]),
        python=platform.python_version(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        load_average=os.getloadavg(),
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _meminfo_kib(name: str) -> int:
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    return 0


def _os_release() -> str:
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip('"')
    return "unknown"


def _program_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
