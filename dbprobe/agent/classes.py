"""Where per-class statement counts come from: the seam for the kernel's statement classes.

A ``ClassSource`` hands out, at each drain, what it counted per (server, class) since the
previous drain: calls, total time, errors and a histogram in the kernel's log2 slots. The
agent adds those up per server, keeping the top classes by total time (``ranking``).

Today the only source is ``SlowStatementClasses``: the statements the kernel sends to user
space (those at or over the query threshold), counted by fingerprint as they arrive. When
the kernel counts every statement by class (a map keyed by server, database and class,
with the class's first text sent once as its sample), a source that reads that map and
rotates it takes its place where ``dbprobe.agent.traced.TracedBinary`` makes its
``_class_source``: its ``drain`` hands out the counts that grew since the last drain (the
class hash named by the fingerprint of its sample, the kernel's server key named by the
agent's ``ServerDirectory``), and its ``statement`` does nothing. The per-class metrics
then cover every statement, at no per-statement cost in user space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dbprobe.digest.distribution import log2_slot
from dbprobe.kernel.records import HIST_SLOTS
from dbprobe.model import Query

OTHER = "other"  # the fingerprint of everything folded together
OTHER_TEXT = "(statements of every other class)"
# Classes one drain interval may hold per source; past it, statements count in `other`,
# and as untracked, as the kernel's class map counts its overflow.
MAX_PENDING_CLASSES = 4096


@dataclass(frozen=True, slots=True)
class ClassCounts:
    """What one class of one server counted between two drains."""

    server: str  # the agent's server id
    fingerprint: str  # the class id, as --json names it; OTHER for an overflow
    text: str  # the normalised statement, never with literals
    calls: int
    total_ns: int
    errors: int
    slots: tuple[int, ...]  # calls per log2 slot of microseconds, HIST_SLOTS of them


class ClassSource(Protocol):
    def statement(self, server: str, query: Query) -> None:
        """A statement that reached user space (one at or over the threshold). A source fed
        by the kernel's class map has counted it already, and ignores it."""

    def drain(self) -> list[ClassCounts]:
        """Counts since the previous drain; the source forgets them."""

    @property
    def untracked(self) -> int:
        """Statements counted in no class of their own because the table was full, since start."""


class _Pending:
    __slots__ = ("text", "calls", "total_ns", "errors", "slots")

    def __init__(self, text: str):
        self.text = text
        self.calls = 0
        self.total_ns = 0
        self.errors = 0
        self.slots = [0] * HIST_SLOTS

    def add(self, duration_ns: int, error: bool) -> None:
        self.calls += 1
        self.total_ns += duration_ns
        self.errors += error
        self.slots[log2_slot(duration_ns / 1000)] += 1


class SlowStatementClasses:
    """Counts by fingerprint of the statements the kernel sent (at or over the threshold)."""

    def __init__(self, max_pending: int = MAX_PENDING_CLASSES):
        self._max_pending = max_pending
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._untracked = 0

    def statement(self, server: str, query: Query) -> None:
        key = (server, query.fingerprint.id)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._max_pending:
                self._untracked += 1
                key = (server, OTHER)
                pending = self._pending.get(key)
            if pending is None:
                text = OTHER_TEXT if key[1] == OTHER else query.fingerprint.text
                pending = self._pending[key] = _Pending(text)
        pending.add(round(query.duration_ms * 1e6), query.error)

    def drain(self) -> list[ClassCounts]:
        pending, self._pending = self._pending, {}
        return [ClassCounts(server, fingerprint, p.text, p.calls, p.total_ns, p.errors, tuple(p.slots))
                for (server, fingerprint), p in pending.items()]

    @property
    def untracked(self) -> int:
        return self._untracked
