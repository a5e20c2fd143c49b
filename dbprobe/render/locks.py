"""Rendering lock waits: live lines, JSON objects, the digest."""

from __future__ import annotations

import json
from typing import Sequence

from tabulate import tabulate

from dbprobe.engines.base import NO_MODE
from dbprobe.engines.registry import engine_for
from dbprobe.digest.locks import LockDigest, LWLockStats, StatementStats
from dbprobe.model import Blocker, Deadlock, LockWait, Statement
from dbprobe.render.text import (clock_ms, fit, histogram_json, histogram_text, iso_time, span,
                                 statement_text)

_LWLOCK_MODES = {0: "exclusive", 1: "shared", 2: "wait-until-free"}

# How waits usually end: not worth a mention, nor a line of their own under the threshold.
# "ended" is a MySQL wait whose server does not say whether the lock was granted.
ORDINARY_OUTCOMES = ("granted", "ended")


def _text(statement: Statement | None, show_literals: bool) -> str:
    return "(statement unknown)" if statement is None else statement_text(statement, show_literals)


def _state_seconds(blocker: Blocker, at: float) -> float | None:
    """How long the blocker had been in its state at wall-clock time `at`."""
    return None if blocker.state_since is None else max(at - blocker.state_since, 0.0)


def _blocker_line(blocker: Blocker, show_literals: bool, at: float) -> str:
    seconds = _state_seconds(blocker, at)
    state = blocker.state if seconds is None else f"{blocker.state} for {seconds:.1f} s"
    holds = f", holds {'+'.join(blocker.modes)}" if blocker.modes else ""
    session = " (session lock)" if blocker.session else ""
    via = f" [{blocker.source}]" if blocker.source != "dbprobe" else ""  # the server's own view
    return f"    blocker: pid {blocker.pid}, {state}{holds}{session}{via}: {_text(blocker.statement, show_literals)}"


def wait_lines(wait: LockWait, *, show_literals: bool, width: int | None, waited_ms: float | None = None) -> list[str]:
    """A wait as a few lines: what, how long, the waiter's statement, each blocker."""
    at = _moment(wait, waited_ms)
    if wait.end is None:
        when, how = clock_ms(at), f"WAITING {waited_ms or 0:.0f} ms so far"
    else:
        when, how = clock_ms(at), f"waited {wait.wait_ms:.1f} ms"
        if wait.outcome not in ORDINARY_OUTCOMES:
            how += f" ({wait.outcome})"
    what = wait.target_name if wait.mode == NO_MODE else f"{wait.mode} on {wait.target_name}"
    head = f"{when} pid {wait.pid} {wait.database or '-'}: {how} for {what}"
    lines = [head, f"    waiter:  {_text(wait.statement, show_literals)}"]
    if wait.blockers:
        lines += [_blocker_line(blocker, show_literals, at) for blocker in wait.blockers]
    else:
        lines.append(f"    blocker: {engine_for(wait.db).unseen_blocker(wait.target)}")
    return [fit(line, width) for line in lines]


def _moment(wait: LockWait, waited_ms: float | None) -> float:
    """When the line is about: the wait's end, or how far into it we are."""
    return wait.end if wait.end is not None else wait.start + (waited_ms or 0) / 1000


def wait_json(wait: LockWait, *, show_literals: bool, waited_ms: float | None = None) -> str:
    return json.dumps(wait_record(wait, show_literals=show_literals, waited_ms=waited_ms), ensure_ascii=False)


def wait_record(wait: LockWait, *, show_literals: bool, waited_ms: float | None = None) -> dict:
    target = wait.target
    at = _moment(wait, waited_ms)
    record = {
        "event": "lock_wait" if wait.end is not None else "lock_waiting",
        "ts": iso_time(at),
        "start": iso_time(wait.start),
        "pid": wait.pid,
        "tid": wait.tid,
        "db": wait.db,
        "database": wait.database,
        "wait_ms": round(wait.wait_ms, 3) if wait.wait_ms is not None else round(waited_ms or 0, 3),
        "outcome": wait.outcome,
        "locktype": target.locktype,
        "mode": wait.mode,
        "target": wait.target_name,
        "relation": target.relation,
        "database_oid": target.database,
        "transaction": target.transaction,
        "query": _text(wait.statement, show_literals) if wait.statement else None,
        "fingerprint": wait.statement.fingerprint.id if wait.statement else None,
        "blockers": [
            {"pid": b.pid, "query": _text(b.statement, show_literals) if b.statement else None,
             "fingerprint": b.statement.fingerprint.id if b.statement else None,
             "state": b.state, "state_ms": _rounded_ms(_state_seconds(b, at)),
             "modes": list(b.modes), "session": b.session, "source": b.source}
            for b in wait.blockers
        ],
        "source": wait.mechanism,
    }
    return record


def _rounded_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def deadlock_lines(deadlock: Deadlock, *, show_literals: bool, width: int | None) -> list[str]:
    lines = [f"{clock_ms(deadlock.ts)} DEADLOCK: pid {deadlock.victim} was chosen as the victim"]
    for wait in deadlock.waits:
        lines += ["  " + line for line in wait_lines(wait, show_literals=show_literals, width=width)]
    return [fit(line, width) for line in lines]


def deadlock_json(deadlock: Deadlock, *, show_literals: bool) -> str:
    return json.dumps({
        "event": "deadlock", "ts": iso_time(deadlock.ts), "victim": deadlock.victim,
        "waits": [wait_record(wait, show_literals=show_literals) for wait in deadlock.waits],
    }, ensure_ascii=False)


def digest_text(digest: LockDigest, lwlocks: Sequence[LWLockStats], *, started: float,
                ended: float, still_waiting: int, lost: int, width: int | None, top: int = 10) -> str:
    lines = [
        f"# Lock-wait digest, {span(started, ended)}",
        f"# {digest.waits:,} waits ended, {still_waiting:,} still waiting, "
        f"{len(digest.deadlocks):,} deadlocks; {lost:,} events lost",
        "",
    ]
    targets = digest.ranked_targets()
    if targets:
        rows = [[t.target_name, t.mode, t.durations.count, t.durations.total_ms,
                 t.durations.max_ms, t.durations.percentile(0.95)] for t in targets[:top]]
        lines += ["Waits by lock target and mode:",
                  *_table(rows, ["Target", "Mode", "Waits", "Total ms", "Max ms", "p95 ms"], width), ""]
        lines += ["Waiting statements:", *_statement_table(LockDigest.ranked(digest.waiting)[:top], "Waits", width), ""]
        blocking = LockDigest.ranked(digest.blocking)[:top]
        if blocking:
            lines += ["Blocking statements (what the blockers ran last):",
                      *_statement_table(blocking, "Blocked", width), ""]
        lines += ["Wait time histogram:", histogram_text(digest.histogram, unit="us"), ""]
    else:
        lines += ["No lock wait ended.", ""]
    if lwlocks:
        rows = [[l.tranche, _LWLOCK_MODES.get(l.mode, str(l.mode)), l.waits, l.total_ns / 1e6, l.max_ns / 1e6]
                for l in sorted(lwlocks, key=lambda l: -l.total_ns)[:top]]
        lines += ["LWLock waits by tranche (counted in kernel):",
                  *_table(rows, ["Tranche", "Mode", "Waits", "Total ms", "Max ms"], width)]
    return "\n".join(lines).rstrip()


def _statement_table(stats: Sequence[StatementStats], count_header: str, width: int | None) -> list[str]:
    rows = [[s.fingerprint.id, s.times, s.total_ms, s.fingerprint.text] for s in stats]
    return _table(rows, ["Query ID", count_header, "Total ms", "Query"], width)


def _table(rows: list[list], headers: list[str], width: int | None) -> list[str]:
    table = tabulate(rows, headers=headers, tablefmt="simple", floatfmt=".1f", intfmt=",")
    return [fit(line, width) for line in table.splitlines()]


def summary_json(digest: LockDigest, lwlocks: Sequence[LWLockStats], *, started: float, ended: float,
                 still_waiting: int, lost: int) -> str:
    def statements(stats: Sequence[StatementStats]) -> list[dict]:
        return [{"fingerprint": s.fingerprint.id, "query": s.fingerprint.text, "times": s.times,
                 "total_ms": round(s.total_ms, 3)} for s in stats]

    return json.dumps({
        "event": "summary",
        "start": iso_time(started), "end": iso_time(ended),
        "waits": digest.waits, "still_waiting": still_waiting, "deadlocks": len(digest.deadlocks),
        "lost_events": lost,
        "targets": [{"target": t.target_name, "locktype": t.locktype, "mode": t.mode,
                     "waits": t.durations.count, "total_ms": round(t.durations.total_ms, 3),
                     "max_ms": round(t.durations.max_ms, 3),
                     "p95_ms": round(t.durations.percentile(0.95), 3)}
                    for t in digest.ranked_targets()],
        "waiting_statements": statements(LockDigest.ranked(digest.waiting)),
        "blocking_statements": statements(LockDigest.ranked(digest.blocking)),
        "histogram_us": histogram_json(digest.histogram),
        "lwlocks": [{"tranche": l.tranche, "mode": _LWLOCK_MODES.get(l.mode, str(l.mode)),
                     "waits": l.waits, "total_ms": round(l.total_ns / 1e6, 3),
                     "max_ms": round(l.max_ns / 1e6, 3)} for l in lwlocks],
    }, ensure_ascii=False)
