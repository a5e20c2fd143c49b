"""Reading a string from another process's memory, as root (for names the kernel side
records as addresses, such as LWLock tranche names)."""

from __future__ import annotations


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
