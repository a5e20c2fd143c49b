"""What every text report shares: statement text as shown, clocks, fitting lines, histograms.

Pure functions; the width is a parameter so layouts can be tested exactly at a fixed size.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Protocol, Sequence

from dbprobe.correlate.fingerprint import Fingerprint

_WHITESPACE = re.compile(r"\s+")
# C0 controls but the newline that separates a report's lines, DEL, C1 controls, and the
# Unicode marks that reorder or hide text on a terminal (bidirectional overrides, isolates).
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Shown(Protocol):
    """Anything with a statement's text and its fingerprint (a query, a lock waiter's statement)."""

    text: str
    fingerprint: Fingerprint


def statement_text(statement: Shown, show_literals: bool) -> str:
    """What a report shows of a statement: normalised, unless literals are asked for."""
    if show_literals:
        return _WHITESPACE.sub(" ", statement.text).strip()
    return statement.fingerprint.text


def terminal_safe(text: str) -> str:
    """The text with every control character written as an escape (\\x1b, \\x07, \\r...), so
    what a client put into a statement cannot move the cursor, recolour or clear the screen."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# Clocks -------------------------------------------------------------------------------------

def clock(wall: float) -> str:
    """Local time of day to the second: 23:29:38."""
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S")


def clock_ms(wall: float) -> str:
    """Local time of day to the millisecond: 23:29:38.155."""
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


def span(started: float, ended: float) -> str:
    """A digest's window: 23:29:37 to 23:29:52 (15.1 s)."""
    return f"{clock(started)} to {clock(ended)} ({max(ended - started, 0.0):.1f} s)"


def iso_time(wall: float) -> str:
    """UTC, microseconds, Z: 2026-11-27T21:17:06.469123Z. Per event, so the second's text is reused."""
    second = int(wall)
    return f"{_utc_second(second)}.{int((wall - second) * 1e6):06d}Z"


@lru_cache(maxsize=64)
def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


# Fitting ------------------------------------------------------------------------------------

def cut(text: str, size: int) -> str:
    """At most `size` characters, an ellipsis marking a cut."""
    return text if len(text) <= size else text[: size - 1] + "…"


def fit(line: str, width: int | None) -> str:
    """The line cut to the terminal's width; None never cuts."""
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + "…"


def milliseconds(value: float) -> str:
    return f"{value:g} ms"


def count(number: int, noun: str) -> str:
    """1 probe, 2 probes."""
    return f"{number} {noun}{'s' if number != 1 else ''}"


# Histograms ---------------------------------------------------------------------------------

def slot_bounds(slot: int) -> tuple[int, int]:
    """The [low, high) range of a kernel histogram slot: 0 holds [0, 1), k holds [2^(k-1), 2^k)."""
    return (0, 1) if slot == 0 else (1 << (slot - 1), 1 << slot)


def histogram_text(counts: Sequence[int], *, unit: str, bar_width: int = 40) -> str:
    """A log2 histogram in the manner of BCC's tools, from the first to the last used slot."""
    used = [slot for slot, number in enumerate(counts) if number]
    if not used:
        return "  (no statements)"
    peak = max(counts)
    label_width = max(len(_slot_range(slot, unit)) for slot in range(used[0], used[-1] + 1))
    lines = [f"  {'range'.rjust(label_width)}  {'count':>9}  distribution"]
    for slot in range(used[0], used[-1] + 1):
        number = counts[slot]
        bar = "*" * (round(bar_width * number / peak) if number else 0)
        lines.append(f"  {_slot_range(slot, unit).rjust(label_width)}  {number:>9,}  |{bar.ljust(bar_width)}|")
    return "\n".join(lines)


def histogram_json(counts: Sequence[int]) -> list[dict]:
    """The used buckets of a log2 histogram of microseconds, with their [low, high) bounds."""
    return [{"low": slot_bounds(slot)[0], "high": slot_bounds(slot)[1], "count": number}
            for slot, number in enumerate(counts) if number]


def _slot_range(slot: int, unit: str) -> str:
    low, high = slot_bounds(slot)
    return f"{_scaled(low, unit)} .. {_scaled(high, unit)}"


def _scaled(value: int, unit: str) -> str:
    """A bucket bound in the largest unit that keeps it readable: 512 us, 65.5 ms, 1.05 s."""
    if unit == "us":
        if value >= 1_000_000:
            return f"{value / 1_000_000:.3g} s"
        if value >= 1000:
            return f"{value / 1000:.3g} ms"
        return f"{value} us"
    return f"{value} {unit}"
