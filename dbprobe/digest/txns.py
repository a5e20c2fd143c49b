"""Aggregates of transactions: the longest kept with their statements, the kernel's totals."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbprobe.model import Transaction

LONGEST_KEPT = 10


@dataclass(slots=True)
class TxnDigest:
    """Transactions at or over the threshold; the longest kept with their statements."""

    seen: int = 0
    longest: list[Transaction] = field(default_factory=list)

    def add(self, txn: Transaction) -> None:
        self.seen += 1
        self.longest.append(txn)
        self.longest.sort(key=lambda t: -t.duration_ms)
        del self.longest[LONGEST_KEPT:]
