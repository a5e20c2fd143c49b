"""Reading another process's memory, as root: names the kernel side records as addresses
(LWLock tranche names), globals of a running server (its database OID)."""

from __future__ import annotations

import os


def read_c_string(pid: int, address: int, limit: int = 128) -> str | None:
    """The NUL-terminated string at `address` in process `pid`; None if unreadable."""
    if not address:
        return None
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            memory.seek(address)
            raw = memory.read(limit)
    except (OSError, OverflowError, ValueError):
        return None
    text = raw.split(b"\0", 1)[0]
    return text.decode("utf-8", errors="replace") if text else None


def read_u32(pid: int, address: int) -> int | None:
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            memory.seek(address)
            raw = memory.read(4)
    except (OSError, OverflowError, ValueError):
        return None
    return int.from_bytes(raw, "little") if len(raw) == 4 else None


def load_bias(pid: int, binary: str, is_pie: bool) -> int | None:
    """What to add to the binary's virtual addresses to find them in process `pid`."""
    if not is_pie:
        return 0
    try:
        wanted = os.stat(binary)
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 6 or int(fields[2], 16) != 0:
                    continue
                device, inode = fields[3], int(fields[4])
                if inode == wanted.st_ino and _device(device) == wanted.st_dev:
                    return int(fields[0].split("-")[0], 16)
    except OSError:
        return None
    return None


def _device(text: str) -> int:
    major, minor = (int(part, 16) for part in text.split(":"))
    return os.makedev(major, minor)
