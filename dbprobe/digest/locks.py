"""Aggregates of lock waits: by lock target and mode, by waiting and by blocking statement."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbprobe.digest.distribution import DurationDistribution, log2_slot
from dbprobe.kernel.records import HIST_SLOTS
from dbprobe.correlate.fingerprint import Fingerprint
from dbprobe.model import Deadlock, LockWait, Statement


@dataclass(slots=True)
class TargetStats:
    """Waits for one lock target in one mode."""

    target_name: str
    locktype: str
    mode: str
    durations: DurationDistribution = field(default_factory=DurationDistribution)


@dataclass(slots=True)
class StatementStats:
    """How often a statement waited, or made others wait, and for how long in all."""

    fingerprint: Fingerprint
    times: int = 0
    total_ms: float = 0.0


@dataclass(slots=True)
class LockDigest:
    targets: dict[tuple, TargetStats] = field(default_factory=dict)
    waiting: dict[str, StatementStats] = field(default_factory=dict)
    blocking: dict[str, StatementStats] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * HIST_SLOTS)
    deadlocks: list[Deadlock] = field(default_factory=list)
    waits: int = 0

    def add(self, wait: LockWait) -> None:
        """A completed wait (granted, deadlock or gone)."""
        wait_ms = wait.wait_ms or 0.0
        self.waits += 1
        key = (wait.target.group_key, wait.mode)
        stats = self.targets.get(key)
        if stats is None:
            stats = self.targets[key] = TargetStats(wait.target_name, wait.target.locktype, wait.mode)
        stats.durations.add(wait_ms)
        self.histogram[log2_slot(wait_ms * 1000)] += 1
        _count(self.waiting, wait.statement, wait_ms)
        for blocker in {b.statement.fingerprint.id: b for b in wait.blockers if b.statement}.values():
            _count(self.blocking, blocker.statement, wait_ms)

    def add_deadlock(self, deadlock: Deadlock) -> None:
        self.deadlocks.append(deadlock)

    def ranked_targets(self) -> list[TargetStats]:
        return sorted(self.targets.values(),
                      key=lambda t: (-t.durations.total_ms, t.target_name, t.mode))

    @staticmethod
    def ranked(statements: dict[str, StatementStats]) -> list[StatementStats]:
        return sorted(statements.values(), key=lambda s: (-s.total_ms, s.fingerprint.id))


def _count(table: dict[str, StatementStats], statement: Statement | None, wait_ms: float) -> None:
    if statement is None:
        return
    stats = table.get(statement.fingerprint.id)
    if stats is None:
        stats = table[statement.fingerprint.id] = StatementStats(statement.fingerprint)
    stats.times += 1
    stats.total_ms += wait_ms


@dataclass(frozen=True, slots=True)
class LWLockStats:
    """LWLock waits of one tranche in one mode, the tranche named."""

    tranche: str
    mode: int
    waits: int
    total_ns: int
    max_ns: int
