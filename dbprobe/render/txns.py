"""Rendering transactions: live lines, JSON objects, the digest."""

from __future__ import annotations

import json

from tabulate import tabulate

from dbprobe.digest.txns import TxnDigest
from dbprobe.kernel.maps import TxnTotals
from dbprobe.model import Statement, Transaction
from dbprobe.render.text import (clock_ms, fit, histogram_json, histogram_text, iso_time, span,
                                 statement_text)

_LIVE_HEADER = f"{'TIME':<12} {'PID':<7} {'DATABASE':<12} {'VXID':<10} {'MS':>10} {'OUTCOME':<7} {'STMTS':>5} {'IDLE MS':>9} STATEMENTS"


def _statements(statements: tuple[Statement, ...], count: int, show_literals: bool) -> str:
    texts = [statement_text(s, show_literals) for s in statements]
    more = count - len(statements)
    return "; ".join(texts) + (f"; ... {more} more" if more > 0 else "")


def live_header(width: int | None) -> str:
    return fit(_LIVE_HEADER, width)


def live_line(txn: Transaction, *, show_literals: bool, width: int | None) -> str:
    line = (f"{clock_ms(txn.end):<12} {txn.pid:<7} {(txn.database or '-')[:12]:<12} {txn.vxid or '-':<10} "
            f"{txn.duration_ms:>10.2f} {txn.outcome:<7} {txn.statement_count:>5} {txn.idle_ms:>9.1f} "
            f"{_statements(txn.statements, txn.statement_count, show_literals)}")
    return fit(line, width)


def txn_record(txn: Transaction, *, show_literals: bool) -> dict:
    return {
        "event": "txn",
        "ts": iso_time(txn.end),
        "start": iso_time(txn.start),
        "pid": txn.pid,
        "tid": txn.tid,
        "db": txn.db,
        "database": txn.database,
        "vxid": txn.vxid,
        "duration_ms": round(txn.duration_ms, 3),
        "outcome": txn.outcome,
        "statement_count": txn.statement_count,
        "statements": [{"query": statement_text(s, show_literals),
                        "fingerprint": s.fingerprint.id} for s in txn.statements],
        "idle_in_txn_ms": round(txn.idle_ms, 3),
        "source": txn.mechanism,
    }


def txn_json(txn: Transaction, *, show_literals: bool) -> str:
    return json.dumps(txn_record(txn, show_literals=show_literals), ensure_ascii=False)


def digest_text(digest: TxnDigest, totals: TxnTotals, *, started: float, ended: float,
                threshold_ms: float, lost: int, show_literals: bool, width: int | None) -> str:
    seconds = max(ended - started, 0.0)
    count = totals.commits + totals.aborts
    mean = totals.total_ns / count / 1e6 if count else 0.0
    lines = [
        f"# Transaction digest, {span(started, ended)}",
        f"# {count:,} transactions seen in the kernel ({count / seconds if seconds else 0:,.1f}/s, "
        f"mean {mean:.3f} ms): {totals.commits:,} commits, {totals.aborts:,} aborts",
        f"# {digest.seen:,} at or over {threshold_ms:g} ms; {lost:,} events lost",
        "",
    ]
    if digest.longest:
        rows = [[rank, str(t.pid), t.vxid or "-", t.duration_ms, t.outcome, t.statement_count, t.idle_ms,
                 _statements(t.statements, t.statement_count, show_literals)]
                for rank, t in enumerate(digest.longest, start=1)]
        table = tabulate(rows, headers=["Rank", "PID", "VXID", "MS", "Outcome", "Stmts", "Idle ms", "Statements"],
                         tablefmt="simple", floatfmt=".1f", intfmt=",")
        lines += ["Longest transactions:", *(fit(line, width) for line in table.splitlines()), ""]
    lines += ["Duration of all transactions (kernel histogram):", histogram_text(totals.histogram, unit="us")]
    return "\n".join(lines)


def summary_json(digest: TxnDigest, totals: TxnTotals, *, started: float, ended: float,
                 threshold_ms: float, lost: int, show_literals: bool) -> str:
    return json.dumps({
        "event": "summary",
        "start": iso_time(started), "end": iso_time(ended),
        "threshold_ms": threshold_ms,
        "transactions": totals.commits + totals.aborts,
        "commits": totals.commits, "aborts": totals.aborts,
        "transaction_time_ms": round(totals.total_ns / 1e6, 3),
        "reported": digest.seen, "lost_events": lost,
        "longest": [txn_record(t, show_literals=show_literals) for t in digest.longest],
        "histogram_us": histogram_json(totals.histogram),
    }, ensure_ascii=False)
