"""What the agent has counted, as plain numbers the metrics are rendered from.

Per server (records are attributed to their server by pid): statement classes, lock waits
by lock kind and mode, deadlocks, idle time in transactions. Per binary (what one attached
program counts in the kernel, for every server of that binary): statements by protocol
and their latency histogram, transactions, events sent and lost. A binary's counters go on
growing across re-attaches (a reload, an upgrade to a new file at the same path): what a
program counted when it was detached is kept and added to its successor's.

The main loop changes these while holding ``lock``; the HTTP thread reads them holding it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, fields

from dbprobe.agent.ranking import ClassTable
from dbprobe.digest.distribution import log2_slot
from dbprobe.kernel.records import HIST_SLOTS, PROTOCOLS


def _zero_slots() -> list[int]:
    return [0] * HIST_SLOTS


@dataclass(slots=True)
class Distribution:
    """Durations counted in the kernel's log2 slots of microseconds, with their sum."""

    count: int = 0
    total_ns: int = 0
    slots: list[int] = field(default_factory=_zero_slots)

    def add(self, duration_ns: int) -> None:
        self.count += 1
        self.total_ns += duration_ns
        self.slots[log2_slot(duration_ns / 1000)] += 1


@dataclass(slots=True)
class ServerStats:
    classes: ClassTable
    lock_waits: dict[tuple[str, str], Distribution] = field(default_factory=dict)  # (kind, mode)
    deadlocks: int = 0
    waiting: int = 0  # lock waits in progress, as of the last tick
    idle_in_txn_ns: int = 0  # in transactions at or over the txn threshold


@dataclass(frozen=True, slots=True)
class BinaryLabel:
    """A binary as users name it: its path as its servers see it, and their container."""

    db: str
    path: str
    container: str  # "" on the host


@dataclass(slots=True)
class KernelCounts:
    """The counters of one program, read from its maps (cumulative since it was loaded)."""

    statements: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROTOCOLS, 0))
    statement_ns: int = 0
    statement_slots: list[int] = field(default_factory=_zero_slots)
    emitted: int = 0
    lost: int = 0
    commits: int = 0
    aborts: int = 0
    txn_ns: int = 0
    txn_slots: list[int] = field(default_factory=_zero_slots)

    def plus(self, other: "KernelCounts") -> "KernelCounts":
        summed = KernelCounts()
        for item in fields(KernelCounts):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, dict):
                value = {key: mine.get(key, 0) + theirs.get(key, 0) for key in mine.keys() | theirs.keys()}
            elif isinstance(mine, list):
                value = [a + b for a, b in zip(mine, theirs)]
            else:
                value = mine + theirs
            setattr(summed, item.name, value)
        return summed


@dataclass(slots=True)
class BinaryStats:
    retired: KernelCounts = field(default_factory=KernelCounts)  # of programs detached
    live: dict[int, KernelCounts] = field(default_factory=dict)  # by TracedBinary.id
    attaches: int = 0
    attach_errors: int = 0
    attach_seconds: float | None = None  # the last successful attach
    first_attach_seconds: float | None = None  # the attach that began tracing it
    spare_attaches: int = 0  # attaches of a program compiled ahead for its build
    probes: int = 0
    unattributed: int = 0  # records whose server could not be told
    families: tuple[str, ...] = ()  # of its last program
    idle_since: float | None = None  # no program attached since then

    def total(self) -> KernelCounts:
        total = self.retired
        for counts in self.live.values():
            total = total.plus(counts)
        return total

    def retire(self, traced_id: int) -> None:
        counts = self.live.pop(traced_id, None)
        if counts is not None:
            self.retired = self.retired.plus(counts)


@dataclass
class AgentStats:
    top_k: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    servers: dict[str, ServerStats] = field(default_factory=dict)
    binaries: dict[BinaryLabel, BinaryStats] = field(default_factory=dict)
    events: Counter = field(default_factory=Counter)  # written, by kind
    events_failed: int = 0
    untracked_statements: int = 0  # counted in `other` because a class table was full
    untracked_waits: int = 0  # a class's wait events the kernel's full class_waits did not keep
    reloads: Counter = field(default_factory=Counter)  # "success", "failure"
    last_reload_ok: bool = True
    scans: int = 0

    def server(self, sid: str) -> ServerStats:
        stats = self.servers.get(sid)
        if stats is None:
            stats = self.servers[sid] = ServerStats(ClassTable(self.top_k))
        return stats

    def binary(self, label: BinaryLabel) -> BinaryStats:
        stats = self.binaries.get(label)
        if stats is None:
            stats = self.binaries[label] = BinaryStats()
        return stats

    def set_top_k(self, top_k: int) -> None:
        self.top_k = top_k
        for stats in self.servers.values():
            stats.classes.set_top_k(top_k)

    def forget_servers(self, keep: set[str]) -> None:
        for sid in [sid for sid in self.servers if sid not in keep]:
            del self.servers[sid]
