"""Rendering the wait-event profile (``dbprobe waits``): text tables and a JSON summary."""

from __future__ import annotations

import json

from tabulate import tabulate

from dbprobe.digest.waits import PARTS, ClassWaits, WaitProfile, ranked
from dbprobe.render.text import fit, iso_time, span, terminal_safe

EVENTS_PER_CLASS = 3  # wait events shown under each statement class


def digest_text(profile: WaitProfile, *, width: int | None, top: int = 20) -> str:
    parts = [f"# Wait-event profile, {span(profile.started, profile.ended)}",
             f"# {profile.total_ms / 1000:,.1f} s off CPU or in file reads and writes, in "
             f"{len(profile.events):,} wait events, over the traced backends", ""]
    if profile.events:
        parts += ["Time by wait event (every traced backend, in statements and idle):",
                  _events_table(profile, width, top)]
    else:
        parts.append("No wait seen.")
    if profile.classes:
        parts += ["", "Statement classes by total time, where it went:",
                  _classes_table(profile.classes[:top], width)]
    return "\n".join(parts)


def _events_table(profile: WaitProfile, width: int | None, top: int) -> str:
    total = profile.total_ms
    rows = [[terminal_safe(row.event), row.count, row.ms, 100.0 * row.ms / total if total else 0.0]
            for row in profile.events[:top]]
    table = tabulate(rows, headers=["Wait event", "Count", "Total ms", "%"], tablefmt="simple",
                     floatfmt=("", "", ".1f", ".1f"), intfmt=",")
    lines = [fit(line, width) for line in table.splitlines()]
    if len(profile.events) > top:
        lines.append(f"... and {len(profile.events) - top} more wait events")
    return "\n".join(lines)


def _classes_table(classes: list[ClassWaits], width: int | None) -> str:
    headers = ["Query ID", "Calls", "Total ms", *(f"{part}" for part in PARTS)]
    rows = [[item.fingerprint.id, item.calls, item.total_ms,
             *(_share(item.parts_ms[part], item.total_ms) for part in PARTS)]
            for item in classes]
    table = tabulate(rows, headers=headers, tablefmt="simple", floatfmt=".1f", intfmt=",")
    header, rule, *lines = table.splitlines()
    out = [fit(header, width), fit(rule, width)]
    indent = " " * (len(rule.split()[0]) + 2)
    for line, item in zip(lines, classes):
        out += [fit(line, width), fit(indent + terminal_safe(item.fingerprint.text), width)]
        for row in ranked(item.events)[:EVENTS_PER_CLASS]:
            out.append(fit(f"{indent}  {terminal_safe(row.event)}: {row.ms:,.1f} ms in "
                           f"{row.count:,}", width))
    return "\n".join(out)


def _share(part_ms: float, total_ms: float) -> str:
    return f"{100.0 * part_ms / total_ms:.0f}%" if total_ms else "-"


def summary_json(profile: WaitProfile) -> str:
    return json.dumps({
        "event": "summary", "start": iso_time(profile.started), "end": iso_time(profile.ended),
        "seconds": round(profile.seconds, 3), "total_ms": round(profile.total_ms, 3),
        "waits": [{"event": row.event, "count": row.count, "ms": round(row.ms, 3)}
                  for row in profile.events],
        "classes": [{
            "fingerprint": item.fingerprint.id, "query": item.fingerprint.text,
            "calls": item.calls, "total_ms": round(item.total_ms, 3),
            **{f"{part}_ms": round(item.parts_ms[part], 3) for part in PARTS},
            "waits": [{"event": row.event, "count": row.count, "ms": round(row.ms, 3)}
                      for row in ranked(item.events)],
        } for item in profile.classes],
    }, ensure_ascii=False)
