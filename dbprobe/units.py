"""Durations as users type them: ``50ms``, ``1.5s``, ``2m``, ``250us``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z\u00b5\u03bc]*)\s*", re.IGNORECASE)
_NANOSECONDS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "sec": 1_000_000_000, "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000,
}


def parse_duration_ns(text: str, *, default_unit: str) -> int:
    """Nanoseconds in `text`; a bare number is in `default_unit`. ValueError if unreadable."""
    match = _DURATION.fullmatch(text)
    unit = (match.group("unit").lower() if match else "") or default_unit
    if not match or unit not in _NANOSECONDS:
        raise ValueError(f"'{text}' is not a duration (examples: 50ms, 1s, 250us, 2m)")
    return round(float(match.group("number")) * _NANOSECONDS[unit])
