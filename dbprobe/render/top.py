"""`dbprobe top`'s screen: pure functions from one interval's statement classes to lines.

Everything the terminal shows is made here, for a given width and height, so the screen is
tested as text; the terminal app only draws these lines. The keys are here too, as what
each does to the view, since the footer names them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from typing import Sequence

from dbprobe.digest.classes import SORT_KEYS, ClassDigest, ClassTotals
from dbprobe.model import Statement
from dbprobe.render.queries import BREAKDOWN_PARTS
from dbprobe.render.text import clock, cut, fit, statement_text, terminal_safe

SORTS = tuple(SORT_KEYS)  # total, mean, calls, p99, errors: keys 1 to 5
ALL_DATABASES = None

# name, width; the query takes what is left of the line.
COLUMNS = (("CALLS/S", 7), ("MS/S", 7), ("MEAN", 6), ("P95", 6), ("P99", 6), ("ERR/S", 5),
           ("DATABASE", 8))
_NUMBER_COLUMNS = len(COLUMNS) - 1  # right-aligned; the database is left-aligned

SORT_COLUMNS = {"total": "MS/S", "mean": "MEAN", "calls": "CALLS/S", "p99": "P99", "errors": "ERR/S"}
# With the breakdown on: where most of a class's time went ("io 72%"), before the database.
TIME_COLUMN = ("MOSTLY", 11)

HEADER_LINES = 3
TABLE_HEADER_LINE = HEADER_LINES  # the line a terminal shows highlighted
FOOTER = "1-5 s S sort   d database   space p pause   q quit"


@dataclass(frozen=True, slots=True)
class TopView:
    """What the person at the terminal chose to see."""

    sort: str = "total"
    database: str | None = ALL_DATABASES  # only this database's classes
    paused: bool = False
    show_literals: bool = False


@dataclass(frozen=True, slots=True)
class TopHeader:
    """What the screen says of the trace, beside the numbers of the interval."""

    servers: str  # "PostgreSQL server pid 709"
    interval_s: float
    ended: float  # wall clock: the end of the interval shown
    message: str = ""  # the last warning, shown until the next one


# The screen ---------------------------------------------------------------------------------

def screen(digest: ClassDigest | None, header: TopHeader, view: TopView, *, width: int,
           height: int) -> list[str]:
    """The whole screen: header, table and footer, each line exactly `width` wide, `height`
    lines (fewer only when the terminal is smaller than the header and footer). ``digest``
    is None until the first interval ends."""
    top = _header(digest, header, view)
    room = height - len(top) - 2  # the table's own header, and the footer
    if room < 0:
        lines = (top + [FOOTER])[:height]
    else:
        lines = top + _table_lines(digest, view, width, room) + [FOOTER]
    return [fit_cells(line, width) for line in lines]


def _header(digest: ClassDigest | None, header: TopHeader, view: TopView) -> list[str]:
    title = f"dbprobe top  {clock(header.ended)}  {header.servers}  every {header.interval_s:g} s"
    if digest is None:
        totals = "waiting for the first interval"
    else:
        totals = _totals(digest)
    state = (f"sorted by {SORT_COLUMNS[view.sort]} ({view.sort})   "
             f"database {_database_name(view.database)}"
             + ("   PAUSED" if view.paused else "")
             + (f"   {header.message}" if header.message else ""))
    return [terminal_safe(title), totals, terminal_safe(state)]


def _totals(digest: ClassDigest) -> str:
    seconds = digest.seconds or 1.0
    untracked = f"{digest.untracked:,} statements untracked" if digest.untracked else "0 untracked"
    return (f"{_rate(digest.calls / seconds)} statements/s   "
            f"{_rate(digest.total_ns / 1e6 / seconds)} ms/s   "
            f"{len(digest.classes):,} classes   {untracked}")


def _table_lines(digest: ClassDigest | None, view: TopView, width: int, room: int) -> list[str]:
    rows = [] if digest is None else table_rows(digest, view)
    if not rows and digest is not None:
        rows = ["(no statements in this interval" + ("" if view.database is ALL_DATABASES
                                                     else " in this database") + ")"]
    if len(rows) > room:
        rows = rows[: max(room - 1, 0)] + [f"... and {len(rows) - room + 1:,} more classes"][:room]
    return [table_header(digest is not None and has_breakdown(digest))] + rows + [""] * (room - len(rows))


# The table ----------------------------------------------------------------------------------

def has_breakdown(digest: ClassDigest) -> bool:
    """Whether the trace counted where the classes' time went (top --breakdown)."""
    return any(totals.breakdown is not None for totals in digest.classes.values())


def table_header(breakdown: bool = False) -> str:
    cells = [name.rjust(size) for name, size in COLUMNS[:_NUMBER_COLUMNS]]
    if breakdown:
        cells.append(TIME_COLUMN[0].ljust(TIME_COLUMN[1]))
    return " ".join(cells + [COLUMNS[-1][0].ljust(COLUMNS[-1][1]), "QUERY"])


def table_rows(digest: ClassDigest, view: TopView) -> list[str]:
    """One line per class of the interval in the view's database, sorted by the view's key,
    its query whole."""
    seconds = digest.seconds or 1.0
    breakdown = has_breakdown(digest)
    return [_row(totals, seconds, view.show_literals, breakdown) for totals in digest.ranked(view.sort)
            if view.database is ALL_DATABASES or totals.database == view.database]


def _row(totals: ClassTotals, seconds: float, show_literals: bool, breakdown: bool) -> str:
    numbers = (_rate(totals.calls / seconds), _rate(totals.total_ms / seconds),
               _duration(totals.mean_ms), _duration(totals.percentile_ms(0.95)),
               _duration(totals.percentile_ms(0.99)), _rate(totals.errors / seconds))
    database = cut(terminal_safe(totals.database or "-"), COLUMNS[-1][1])
    cells = [text.rjust(size) for text, (_, size) in zip(numbers, COLUMNS)]
    if breakdown:
        cells.append(mostly(totals).ljust(TIME_COLUMN[1]))
    return " ".join(cells + [database.ljust(COLUMNS[-1][1]), _query(totals, show_literals)])


def mostly(totals: ClassTotals) -> str:
    """The part of a class's time that is the largest, and its share: ``io 72%``.

    A class whose statements were not followed (none timed) shows ``-``.
    """
    time = totals.time
    if time is None or not totals.timed:
        return "-"
    parts = {part: getattr(time, f"{part}_ms") for part in BREAKDOWN_PARTS}
    whole = sum(parts.values())
    if whole <= 0:
        return "-"
    part, ms = max(parts.items(), key=lambda item: item[1])
    return f"{part} {100 * ms / whole:.0f}%"


def _query(totals: ClassTotals, show_literals: bool) -> str:
    return terminal_safe(statement_text(Statement(totals.sample, totals.fingerprint), show_literals))


def _database_name(database: str | None) -> str:
    return "all" if database is ALL_DATABASES else database


def _rate(per_second: float) -> str:
    """A rate in at most 7 characters: 0, 0.2, 999.9, 12,345, 1,234,567 past that."""
    if per_second == 0:
        return "0"
    if per_second < 999.95:
        return f"{per_second:.1f}"
    return f"{per_second:,.0f}"


def _duration(ms: float) -> str:
    """A duration in at most 6 characters, in the unit that keeps it readable."""
    if ms < 0.9995:
        return f"{ms * 1000:.0f}us"
    if ms < 9.995:
        return f"{ms:.2f}ms"
    if ms < 99.95:
        return f"{ms:.1f}ms"
    if ms < 999.5:
        return f"{ms:.0f}ms"
    if ms < 9995:
        return f"{ms / 1000:.2f}s"
    if ms < 99950:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 1000:.0f}s"


# Terminal cells -----------------------------------------------------------------------------

def fit_cells(line: str, width: int) -> str:
    """The line in exactly `width` terminal cells: cut with an ellipsis, or padded. East Asian
    wide characters take two cells and combining marks none, as a terminal draws them."""
    if line.isascii():
        return fit(line, width).ljust(width)
    used, kept = 0, []
    for char in line:
        cells = _cells(char)
        if used + cells > width:
            while kept and used + 1 > width:  # room for the ellipsis
                used -= _cells(kept.pop())
            kept.append("…")
            used += 1
            break
        kept.append(char)
        used += cells
    return "".join(kept) + " " * (width - used)


def _cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


# One plain table per interval, when stdout is no terminal ----------------------------------

def interval_text(digest: ClassDigest, header: TopHeader, view: TopView) -> str:
    """An interval as plain lines: its time and totals, the table, a blank line; never cut."""
    lines = [f"# {clock(header.ended)}  {_totals(digest)}", table_header(has_breakdown(digest))]
    lines += table_rows(digest, view) or ["(no statements in this interval)"]
    return "\n".join(lines) + "\n"


# Keys ---------------------------------------------------------------------------------------

QUIT = "quit"


def on_key(view: TopView, key: str, databases: Sequence[str]) -> TopView | str:
    """The view after a key, or QUIT. ``databases``: the names seen so far, in the order
    ``d`` cycles through them (after all of them together).

    >>> on_key(TopView(), "3", []).sort
    'calls'
    >>> on_key(TopView(sort="errors"), "s", []).sort
    'total'
    """
    if key == "q":
        return QUIT
    if key in ("1", "2", "3", "4", "5"):
        return replace(view, sort=SORTS[int(key) - 1])
    if key in ("s", "S"):
        step = 1 if key == "s" else -1
        return replace(view, sort=SORTS[(SORTS.index(view.sort) + step) % len(SORTS)])
    if key in (" ", "p"):
        return replace(view, paused=not view.paused)
    if key == "d":
        return replace(view, database=_next_database(view.database, databases))
    return view


def _next_database(current: str | None, databases: Sequence[str]) -> str | None:
    cycle = [ALL_DATABASES, *databases]
    position = cycle.index(current) if current in cycle else 0
    return cycle[(position + 1) % len(cycle)]
