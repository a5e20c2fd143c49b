"""What the reports are about: domain records that know nothing of BPF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dbprobe.correlate.fingerprint import Fingerprint


@dataclass(frozen=True, slots=True)
class Source:
    """Where a hook's events come from: which server binary, through which mechanism."""

    db: str  # "postgresql" | "mariadb" | "mysql"
    binary: str
    mechanism: str  # "usdt" | "uprobe"


class LockTarget(Protocol):
    """What a lock wait is for, as its engine decoded it (``dbprobe.engines.*.locks``)."""

    @property
    def locktype(self) -> str: ...  # "relation", "tuple", "row lock", "metadata lock"...

    # What a wait names where its server says so (PostgreSQL's lock tags); None otherwise.
    @property
    def database(self) -> int | None: ...  # OID

    @property
    def relation(self) -> int | None: ...  # OID

    @property
    def transaction(self) -> int | None: ...  # xid

    @property
    def group_key(self) -> tuple:
        """Waits with the same key are on the same object, for the digest."""

    def describe(self, relation_name: str | None = None, database_name: str | None = None) -> str:
        """A readable name, with catalog names where known."""


@dataclass(frozen=True, slots=True)
class WaitTime:
    """Time a statement spent off CPU in one wait event."""

    event: str  # as the server names it: "IO:DataFileRead"
    count: int  # times it went off CPU in it
    ms: float


@dataclass(frozen=True, slots=True)
class TimeBreakdown:
    """Where a statement's time went: on CPU, and off CPU by what it waited for."""

    cpu_ms: float
    io_ms: float
    lock_ms: float  # heavyweight locks
    lwlock_ms: float
    client_ms: float
    runq_ms: float  # runnable, waiting for a CPU
    other_ms: float
    reads: int = 0  # read system calls (files: the servers read sockets with recv)
    read_bytes: int = 0
    read_ms: float = 0.0
    writes: int = 0
    write_bytes: int = 0
    write_ms: float = 0.0
    waits: tuple[WaitTime, ...] = ()  # PostgreSQL: by wait event, longest first
    # PostgreSQL's parallel workers for the statement, beside its own time (not in total_ms)
    workers: int = 0
    workers_cpu_ms: float = 0.0
    workers_io_ms: float = 0.0
    workers_read_bytes: int = 0

    @property
    def total_ms(self) -> float:
        return (self.cpu_ms + self.io_ms + self.lock_ms + self.lwlock_ms + self.client_ms
                + self.runq_ms + self.other_ms)


@dataclass(frozen=True, slots=True)
class Query:
    """One statement that completed at or over the threshold."""

    end: float  # wall-clock time it finished, seconds since the epoch
    duration_ms: float
    pid: int  # host pid of the backend (PostgreSQL) or server (MySQL)
    tid: int
    ns_pid: int | None  # pid inside the server's container, when it differs
    db: str
    database: str | None
    text: str  # as the server saw it
    fingerprint: Fingerprint
    protocol: str  # "simple" | "extended" | "prepared"
    mechanism: str  # "usdt" | "uprobe"
    error: bool  # failed or cancelled
    truncated: bool  # the text was longer than the kernel captures
    breakdown: TimeBreakdown | None = None  # when the trace counted where its time went

    @property
    def start(self) -> float:
        return self.end - self.duration_ms / 1000.0


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement as a report shows it: its text and its fingerprint."""

    text: str
    fingerprint: Fingerprint


@dataclass(frozen=True, slots=True)
class Blocker:
    """A backend holding (or queued for) a lock that a waiter needs."""

    pid: int
    modes: tuple[str, ...]  # the lock modes it holds or asked for
    session: bool  # held across transactions (advisory locks)
    statement: Statement | None  # its current or last statement
    state: str  # "running", "idle in transaction", "waiting", "unknown"
    state_since: float | None  # wall clock: since when it has been so
    source: str  # "dbprobe" (its own tracking) or "pg_blocking_pids" (--dsn)


@dataclass(frozen=True, slots=True)
class LockWait:
    """A backend waiting for a heavyweight lock: still waiting, or done."""

    pid: int
    tid: int
    db: str
    database: str | None
    target: LockTarget  # PostgreSQL's decoded tag; MySQL's kind of lock
    target_name: str  # readable, with catalog names where known
    mode: str
    start: float  # wall clock
    end: float | None  # None while it waits
    outcome: str  # "waiting", "granted", "deadlock", "gone" (the backend exited)
    statement: Statement | None  # the waiter's statement
    blockers: tuple[Blocker, ...]
    mechanism: str

    @property
    def wait_ms(self) -> float | None:
        return None if self.end is None else (self.end - self.start) * 1000.0


@dataclass(frozen=True, slots=True)
class Deadlock:
    """A deadlock the server detected; the victim's wait and the waits it closed a cycle with."""

    ts: float
    victim: int
    waits: tuple[LockWait, ...]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A transaction that ended at or over the threshold."""

    pid: int
    tid: int
    db: str
    database: str | None
    vxid: str | None  # "backend/local" as pg_locks shows it; None where the recipe cannot see it
    start: float
    end: float
    outcome: str  # "commit" | "abort"
    statement_count: int
    statements: tuple[Statement, ...]  # the first few
    idle_ms: float  # idle in transaction, between its statements
    mechanism: str

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0
