"""USDT semaphores as a running process sees them: is a tracer really enabling its probes?"""

from __future__ import annotations

import os
from pathlib import Path

from dbprobe.binary.elf import ElfBinary


def semaphore_file_offset(binary: Path, provider: str, name: str) -> int | None:
    """The file offset of a probe's semaphore; None when the probe has none."""
    with ElfBinary(binary) as elf:
        offsets = {site.semaphore_offset for site in elf.usdt_probe_sites(provider, name)}
    offsets.discard(0)
    return offsets.pop() if offsets else None


def semaphore_value(pid: int, binary: Path, file_offset: int) -> int:
    """The u16 semaphore at ``file_offset`` of ``binary`` in the memory of process ``pid``."""
    address = _mapped_address(pid, binary, file_offset)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        memory.seek(address)
        return int.from_bytes(memory.read(2), "little")


def _mapped_address(pid: int, binary: Path, file_offset: int) -> int:
    real = os.path.realpath(binary)
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or os.path.realpath(fields[5]) != real:
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        offset = int(fields[2], 16)
        if offset <= file_offset < offset + (end - start):
            return start + file_offset - offset
    raise LookupError(f"offset {file_offset:#x} of {binary} is not mapped in pid {pid}")
