"""Rendering: live lines, the slow-query digest, log2 histograms, JSON objects.

Pure functions from records to text; the width is a parameter so the layout can be tested
exactly at a fixed size.
"""

from __future__ import annotations

import json
from typing import Sequence

from tabulate import tabulate

from dbprobe.digest.classes import QUANTILES, ClassTotals
from dbprobe.digest.queries import SlowQuerySummary
from dbprobe.model import Query, TimeBreakdown
from dbprobe.render.text import (clock_ms, cut, fit, histogram_json, histogram_text,
                                 iso_time, milliseconds, span, statement_text, terminal_safe)

LIVE_COLUMNS = (("TIME", 12), ("PID", 7), ("DATABASE", 12), ("PROTO", 8), ("MS", 10))


# Live lines ---------------------------------------------------------------------------

def live_header(width: int | None) -> str:
    cells = [name.ljust(size) if name != "MS" else name.rjust(size) for name, size in LIVE_COLUMNS]
    return fit(" ".join(cells) + " QUERY", width)


def live_line(query: Query, *, show_literals: bool, width: int | None) -> str:
    marks = ("[error] " if query.error else "") + ("[truncated] " if query.truncated else "")
    cells = [
        clock_ms(query.end).ljust(12),
        str(query.pid).ljust(7),
        cut(query.database or "-", 12).ljust(12),
        query.protocol.ljust(8),
        f"{query.duration_ms:10.2f}",
    ]
    if query.breakdown is not None:
        marks = f"[{breakdown_text(query.breakdown)}] " + marks
    return fit(" ".join(cells) + " " + marks + statement_text(query, show_literals), width)


def breakdown_text(breakdown: TimeBreakdown) -> str:
    """``cpu 12ms io 1.9s(3412 reads) lock 0 lwlock 200ms``, then the other parts that are
    not zero and the longest wait event."""
    reads = f"({breakdown.reads} reads)" if breakdown.reads else ""
    parts = [f"cpu {short_ms(breakdown.cpu_ms)}", f"io {short_ms(breakdown.io_ms)}{reads}",
             f"lock {short_ms(breakdown.lock_ms)}", f"lwlock {short_ms(breakdown.lwlock_ms)}"]
    parts += [f"{name} {short_ms(ms)}" for name, ms in (
        ("client", breakdown.client_ms), ("runq", breakdown.runq_ms), ("other", breakdown.other_ms))
        if ms >= 0.05]
    if breakdown.waits and breakdown.waits[0].ms >= 0.05:  # what rounds to 0 says nothing
        parts.append(f"top {breakdown.waits[0].event} {short_ms(breakdown.waits[0].ms)}")
    if breakdown.workers:
        parts.append(f"+{breakdown.workers} worker{'s' if breakdown.workers > 1 else ''}: "
                     f"cpu {short_ms(breakdown.workers_cpu_ms)} io {short_ms(breakdown.workers_io_ms)}")
    return " ".join(parts)


def short_ms(ms: float) -> str:
    """0, 0.3ms, 12ms, 1.9s: a duration in few characters."""
    if ms < 0.05:
        return "0"
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.1f}s"


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
        f'"query": {_dump_string(statement_text(query, show_literals))}, '
        f'"fingerprint": "{query.fingerprint.id}", "protocol": "{query.protocol}", '
        f'"source": "{query.mechanism}", "error": {"true" if query.error else "false"}, '
        f'"truncated": {"true" if query.truncated else "false"}{ns_pid}'
        f'{_breakdown_json(query.breakdown)}}}'
    )


def _breakdown_json(breakdown: TimeBreakdown | None) -> str:
    if breakdown is None:
        return ""
    parts = ", ".join(f'"{name}": {value}' for name, value in breakdown_fields(breakdown).items())
    waits = ", ".join(f'{{"event": {_dump_string(wait.event)}, "count": {wait.count}, '
                      f'"ms": {round(wait.ms, 3)}}}' for wait in breakdown.waits)
    return f', {parts}, "waits": [{waits}]'


BREAKDOWN_PARTS = ("cpu", "io", "lock", "lwlock", "client", "runq", "other")


def breakdown_fields(breakdown: TimeBreakdown) -> dict[str, float | int]:
    """The JSON fields of a breakdown, its wait events aside."""
    fields: dict[str, float | int] = {f"{part}_ms": round(getattr(breakdown, f"{part}_ms"), 3)
                                      for part in BREAKDOWN_PARTS}
    fields.update(reads=breakdown.reads, read_bytes=breakdown.read_bytes,
                  read_ms=round(breakdown.read_ms, 3), writes=breakdown.writes,
                  write_bytes=breakdown.write_bytes, write_ms=round(breakdown.write_ms, 3),
                  workers=breakdown.workers, workers_cpu_ms=round(breakdown.workers_cpu_ms, 3),
                  workers_io_ms=round(breakdown.workers_io_ms, 3),
                  workers_read_bytes=breakdown.workers_read_bytes)
    return fields


# The digest ---------------------------------------------------------------------------

def digest_text(summary: SlowQuerySummary, *, width: int | None, top: int = 20,
                show_literals: bool = False) -> str:
    parts = [_overall(summary), ""]
    classes = summary.classes.ranked()
    if classes:
        parts += ["Statements by total time (every statement, counted in the kernel):",
                  _profile_table(classes[:top], summary.classes.total_ns, width, show_literals)]
        if len(classes) > top:
            parts.append(f"... and {len(classes) - top} more classes")
    else:
        parts.append("No statement completed.")
    parts += ["", "Latency of all statements (kernel histogram):",
              histogram_text(summary.histogram.combined(), unit="us")]
    return "\n".join(parts)


def _overall(summary: SlowQuerySummary) -> str:
    kernel = summary.kernel
    rate = kernel.queries / summary.seconds if summary.seconds else 0.0
    mean = kernel.query_ns / kernel.queries / 1e6 if kernel.queries else 0.0
    by_protocol = ", ".join(f"{protocol} {sum(counts):,}"
                            for protocol, counts in summary.histogram.slots.items() if sum(counts))
    slow = _slow_statements(summary)
    lines = [
        f"# Slow-query digest, {span(summary.started, summary.ended)}",
        f"# {kernel.queries:,} statements seen in the kernel ({rate:,.1f}/s, mean {mean:.3f} ms"
        + (f"; {by_protocol}" if by_protocol else "") + f") in {len(summary.classes.classes):,} classes",
        f"# {slow:,} at or over {milliseconds(summary.threshold_ms)}"
        + (f" ({summary.digest.count:,} reached user space)" if slow > summary.digest.count else "")
        + f"; {kernel.lost:,} events lost",
    ]
    if summary.classes.untracked:
        lines.append(f"# {summary.classes.untracked:,} statements not tracked by class: "
                     "the kernel's class table was full")
    if summary.classes.waits_untracked:
        lines.append(f"# {summary.classes.waits_untracked:,} wait events not summed by class: "
                     "the kernel's table of class wait events was full")
    if kernel.lost:
        lines.append("# WARNING: the ring buffer overflowed: raise --threshold to see every slow query")
    return "\n".join(lines)


def _slow_statements(summary: SlowQuerySummary) -> int:
    """Statements at or over the threshold, as the kernel counted them: lost events included."""
    return max(summary.kernel.slow, summary.digest.count)


def _profile_table(classes: Sequence[ClassTotals], total_ns: int, width: int | None,
                   show_literals: bool) -> str:
    """One row of numbers per class, its statement on the line under it, so the statement
    stays readable whatever the terminal's width."""
    headers = ["Rank", "Query ID", "Total ms", "%", "Calls", "Mean ms", "p50 ms", "p95 ms",
               "p99 ms", "Max ms", "Err", "Slow"]
    rows = [
        [rank, totals.fingerprint.id, totals.total_ms,
         100.0 * totals.total_ns / total_ns if total_ns else 0.0, totals.calls, totals.mean_ms,
         *(totals.percentile_ms(q) for q in QUANTILES), totals.max_ms, totals.errors,
         totals.slow_calls]
        for rank, totals in enumerate(classes, start=1)
    ]
    table = tabulate(rows, headers=headers, tablefmt="simple",
                     floatfmt=("", "", ".1f", ".1f", "", ".3f", ".3f", ".3f", ".3f", ".3f", "", ""),
                     intfmt=",")
    header, rule, *lines = table.splitlines()
    indent = " " * (len(rule.split()[0]) + 2)
    out = [fit(header, width), fit(rule, width)]
    for line, totals in zip(lines, classes):
        out += [fit(line, width), fit(indent + _class_parts(totals) + class_text(totals, show_literals), width)]
    return "\n".join(out)


def _class_parts(totals: ClassTotals) -> str:
    """Where a class's time went, summed over its calls, when the trace counted it."""
    time = totals.time
    return "" if time is None else f"[{breakdown_text(time)}] "


def class_text(totals: ClassTotals, show_literals: bool) -> str:
    """A class's statement: normalised, or its first text with --show-literals."""
    return terminal_safe(totals.sample if show_literals else totals.fingerprint.text)


def summary_json(summary: SlowQuerySummary, *, show_literals: bool) -> str:
    classes = summary.classes.ranked()
    total_ns = summary.classes.total_ns
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
        "slow": _slow_statements(summary),
        "slow_reported": summary.digest.count,
        "lost_events": kernel.lost,
        "untracked": summary.classes.untracked,
        "waits_untracked": summary.classes.waits_untracked,
        "classes": [class_json(rank, totals, total_ns, show_literals)
                    for rank, totals in enumerate(classes, start=1)],
        "histogram_us": histogram_json(summary.histogram.combined()),
    }
    return json.dumps(record, ensure_ascii=False)


def class_json(rank: int, totals: ClassTotals, total_ns: int, show_literals: bool) -> dict:
    record = {
        "rank": rank,
        "fingerprint": totals.fingerprint.id,
        "query": totals.fingerprint.text,
        "database": totals.database,
        "calls": totals.calls,
        "total_ms": round(totals.total_ms, 3),
        "share": round(totals.total_ns / total_ns, 4) if total_ns else 0.0,
        "mean_ms": round(totals.mean_ms, 3),
        **{f"p{round(q * 100)}_ms": round(totals.percentile_ms(q), 3) for q in QUANTILES},
        "max_ms": round(totals.max_ms, 3),
        "errors": totals.errors,
        "slow_calls": totals.slow_calls,
        "histogram_us": histogram_json(tuple(totals.slots)),
    }
    time = totals.time
    if time is not None:
        record.update(breakdown_fields(time), timed_calls=totals.timed,
                      waits=[{"event": wait.event, "count": wait.count, "ms": round(wait.ms, 3)}
                             for wait in time.waits])
    if show_literals:
        record["sample"] = totals.sample
    return record
