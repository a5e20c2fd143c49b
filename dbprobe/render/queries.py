"""Rendering: live lines, the slow-query digest, log2 histograms, JSON objects.

Pure functions from records to text; the width is a parameter so the layout can be tested
exactly at a fixed size.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Sequence

from tabulate import tabulate

from dbprobe.digest.queries import QueryClass, SlowQuerySummary
from dbprobe.model import Query

LIVE_COLUMNS = (("TIME", 12), ("PID", 7), ("DATABASE", 12), ("PROTO", 8), ("MS", 10))
_WHITESPACE = re.compile(r"\s+")


# Live lines ---------------------------------------------------------------------------

def query_text(query: Query, show_literals: bool) -> str:
    """What a report shows of the statement: normalised unless literals are asked for."""
    if show_literals:
        return _WHITESPACE.sub(" ", query.text).strip()
    return query.fingerprint.text


def live_header(width: int | None) -> str:
    cells = [name.ljust(size) if name != "MS" else name.rjust(size) for name, size in LIVE_COLUMNS]
    return _fit(" ".join(cells) + " QUERY", width)


def live_line(query: Query, *, show_literals: bool, width: int | None) -> str:
    clock = datetime.fromtimestamp(query.end).strftime("%H:%M:%S.%f")[:-3]
    marks = ("[error] " if query.error else "") + ("[truncated] " if query.truncated else "")
    cells = [
        clock.ljust(12),
        str(query.pid).ljust(7),
        _cut(query.database or "-", 12).ljust(12),
        query.protocol.ljust(8),
        f"{query.duration_ms:10.2f}",
    ]
    return _fit(" ".join(cells) + " " + marks + query_text(query, show_literals), width)


_dump_string = json.JSONEncoder(ensure_ascii=False).encode


def query_json(query: Query, *, show_literals: bool) -> str:
    """One query as a JSON line. With --threshold 0 this runs for every statement, so the
    line is assembled from its known fields; only the strings go through the encoder."""
    database = "null" if query.database is None else _dump_string(query.database)
    ns_pid = "" if query.ns_pid is None else f', "ns_pid": {query.ns_pid}'
    return (
        f'{{"event": "query", "ts": "{iso_time(query.end)}", "pid": {query.pid}, '
        f'"tid": {query.tid}, "db": "{query.db}", "database": {database}, '
        f'"duration_ms": {round(query.duration_ms, 3)}, '
        f'"query": {_dump_string(query_text(query, show_literals))}, '
        f'"fingerprint": "{query.fingerprint.id}", "protocol": "{query.protocol}", '
        f'"source": "{query.mechanism}", "error": {"true" if query.error else "false"}, '
        f'"truncated": {"true" if query.truncated else "false"}{ns_pid}}}'
    )


# The digest ---------------------------------------------------------------------------

def digest_text(summary: SlowQuerySummary, *, width: int | None, top: int = 20) -> str:
    parts = [_overall(summary), ""]
    classes = summary.digest.ranked()
    if classes:
        parts += [f"Queries at or over {_ms(summary.threshold_ms)}, by total time:",
                  _profile_table(classes[:top], summary.digest.total_ms, width)]
        if len(classes) > top:
            parts.append(f"... and {len(classes) - top} more classes")
    else:
        parts.append(f"No query at or over {_ms(summary.threshold_ms)}.")
    parts += ["", "Latency of all statements (kernel histogram):",
              histogram_text(summary.histogram.combined(), unit="us")]
    return "\n".join(parts)


def _overall(summary: SlowQuerySummary) -> str:
    kernel = summary.kernel
    rate = kernel.queries / summary.seconds if summary.seconds else 0.0
    mean = kernel.query_ns / kernel.queries / 1e6 if kernel.queries else 0.0
    span = (f"{_clock(summary.started)} to {_clock(summary.ended)} "
            f"({summary.seconds:.1f} s)")
    by_protocol = ", ".join(f"{protocol} {sum(counts):,}"
                            for protocol, counts in summary.histogram.slots.items() if sum(counts))
    lines = [
        f"# Slow-query digest, {span}",
        f"# {kernel.queries:,} statements seen in the kernel ({rate:,.1f}/s, mean {mean:.3f} ms"
        + (f"; {by_protocol}" if by_protocol else "") + ")",
        f"# {summary.digest.count:,} at or over {_ms(summary.threshold_ms)} in "
        f"{len(summary.digest.classes):,} classes; {kernel.lost:,} events lost",
    ]
    if kernel.lost:
        lines.append("# WARNING: the ring buffer overflowed: raise --threshold to see every slow query")
    return "\n".join(lines)


def _profile_table(classes: Sequence[QueryClass], total_ms: float, width: int | None) -> str:
    """One row of numbers per class, its normalised query on the line under it, so the
    statement stays readable whatever the terminal's width."""
    headers = ["Rank", "Query ID", "Total ms", "%", "Calls", "Mean ms", "p95 ms", "Max ms", "Err"]
    rows = [
        [rank, query_class.fingerprint.id, query_class.durations.total_ms,
         100.0 * query_class.durations.total_ms / total_ms if total_ms else 0.0,
         query_class.calls, query_class.durations.mean_ms,
         query_class.durations.percentile(0.95), query_class.durations.max_ms,
         query_class.errors]
        for rank, query_class in enumerate(classes, start=1)
    ]
    table = tabulate(rows, headers=headers, tablefmt="simple",
                     floatfmt=("", "", ".1f", ".1f", "", ".2f", ".2f", ".2f", ""), intfmt=",")
    header, rule, *lines = table.splitlines()
    indent = " " * (len(rule.split()[0]) + 2)
    out = [_fit(header, width), _fit(rule, width)]
    for line, query_class in zip(lines, classes):
        out += [_fit(line, width), _fit(indent + query_class.fingerprint.text, width)]
    return "\n".join(out)


def histogram_text(counts: Sequence[int], *, unit: str, bar_width: int = 40) -> str:
    """A log2 histogram in the manner of BCC's tools, from the first to the last used slot."""
    used = [slot for slot, count in enumerate(counts) if count]
    if not used:
        return "  (no statements)"
    peak = max(counts)
    label_width = max(len(_slot_range(slot, unit)) for slot in range(used[0], used[-1] + 1))
    lines = [f"  {'range'.rjust(label_width)}  {'count':>9}  distribution"]
    for slot in range(used[0], used[-1] + 1):
        count = counts[slot]
        bar = "*" * (round(bar_width * count / peak) if count else 0)
        lines.append(f"  {_slot_range(slot, unit).rjust(label_width)}  {count:>9,}  |{bar.ljust(bar_width)}|")
    return "\n".join(lines)


def slot_bounds(slot: int) -> tuple[int, int]:
    """The [low, high) range of a kernel histogram slot: 0 holds [0, 1), k holds [2^(k-1), 2^k)."""
    return (0, 1) if slot == 0 else (1 << (slot - 1), 1 << slot)


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


def summary_json(summary: SlowQuerySummary, *, show_literals: bool) -> str:
    classes = summary.digest.ranked()
    total_ms = summary.digest.total_ms
    kernel = summary.kernel
    record = {
        "event": "summary",
        "start": iso_time(summary.started),
        "end": iso_time(summary.ended),
        "seconds": round(summary.seconds, 3),
        "threshold_ms": summary.threshold_ms,
        "statements": kernel.queries,
        "statements_by_protocol": {protocol: sum(counts)
                                   for protocol, counts in summary.histogram.slots.items()},
        "statement_time_ms": round(kernel.query_ns / 1e6, 3),
        "slow": summary.digest.count,
        "lost_events": kernel.lost,
        "classes": [_class_json(rank, query_class, total_ms, show_literals)
                    for rank, query_class in enumerate(classes, start=1)],
        "histogram_us": histogram_json(summary.histogram.combined()),
    }
    return json.dumps(record, ensure_ascii=False)


def histogram_json(counts: Sequence[int]) -> list[dict]:
    """The used buckets of a log2 histogram of microseconds, with their [low, high) bounds."""
    return [{"low": slot_bounds(slot)[0], "high": slot_bounds(slot)[1], "count": count}
            for slot, count in enumerate(counts) if count]


def _class_json(rank: int, query_class: QueryClass, total_ms: float, show_literals: bool) -> dict:
    durations = query_class.durations
    record = {
        "rank": rank,
        "fingerprint": query_class.fingerprint.id,
        "query": query_class.fingerprint.text,
        "calls": query_class.calls,
        "total_ms": round(durations.total_ms, 3),
        "share": round(durations.total_ms / total_ms, 4) if total_ms else 0.0,
        "mean_ms": round(durations.mean_ms, 3),
        "p95_ms": round(durations.percentile(0.95), 3),
        "max_ms": round(durations.max_ms, 3),
        "min_ms": round(durations.min_ms, 3),
        "errors": query_class.errors,
        "databases": dict(query_class.databases),
    }
    if show_literals and query_class.worst is not None:
        record["worst_sample"] = query_class.worst.text
    return record


# Small formatting helpers ----------------------------------------------------------------

def iso_time(wall: float) -> str:
    """UTC, microseconds, Z: 2026-11-27T21:17:06.469123Z. Per event, so the second's text is reused."""
    second = int(wall)
    return f"{_utc_second(second)}.{int((wall - second) * 1e6):06d}Z"


@lru_cache(maxsize=64)
def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S")


def _ms(value: float) -> str:
    return f"{value:g} ms"


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _fit(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + "…"
