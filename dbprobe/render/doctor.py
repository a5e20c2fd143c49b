"""Rendering ``dbprobe doctor``: aligned check lines with their fixes, or JSON lines."""

from __future__ import annotations

import json
import textwrap
from typing import Sequence

from dbprobe.kernel.preflight import FAIL, OK, WARN, Check
from dbprobe.render.text import count

STATUS_WIDTH = max(len(status) for status in (OK, WARN, FAIL))
MIN_DETAIL_WIDTH = 20
FIX_PREFIX = "fix: "


def doctor_text(checks: Sequence[Check], width: int | None) -> str:
    """Aligned columns: status, check, detail (wrapped to `width`), then the fix on its own line.

    Fix lines are never wrapped: they are commands to copy as they are.
    """
    name_width = max(len(check.name) for check in checks)
    indent = " " * (STATUS_WIDTH + 2 + name_width + 2)
    detail_width = None if width is None else max(width - len(indent), MIN_DETAIL_WIDTH)
    lines = []
    for check in checks:
        detail = _wrap(check.detail, detail_width)
        lines.append(f"{check.status:<{STATUS_WIDTH}}  {check.name:<{name_width}}  {detail[0]}".rstrip())
        lines.extend(indent + line for line in detail[1:])
        if check.fix:
            lines.append(indent + FIX_PREFIX + check.fix)
    lines.append("")
    lines.append(verdict(checks))
    return "\n".join(lines)


def verdict(checks: Sequence[Check]) -> str:
    failed = sum(check.status == FAIL for check in checks)
    warned = sum(check.status == WARN for check in checks)
    if failed:
        return f"dbprobe cannot run: {count(failed, 'check')} failed (see the fix lines)"
    if warned:
        return f"dbprobe can run, with {count(warned, 'warning')}"
    return "dbprobe can run"


def _wrap(text: str, width: int | None) -> list[str]:
    if width is None:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def doctor_json(check: Check) -> str:
    return json.dumps({"check": check.name, "status": check.status, "detail": check.detail,
                       "fix": check.fix or None})
