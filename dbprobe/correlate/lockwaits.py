"""Lock waits from their start and end records: who waits, on what, behind whom.

The kernel sends each wait's start (with the waiter's statement and the backends it saw
take that lock in their open transactions) and its end. This module pairs them per thread
(the correlation engine's SpanPairer), decodes the lock, keeps the holders whose modes
conflict with the request, names each blocker's current or last statement, and recognises
deadlocks: the victim's wait closes with the cycle of waits it was part of. What a record
means (the lock, the mode, the holders in conflict, how a wait ended) is its server's
engine's to say: MySQL and MariaDB report only the kind of lock a thread waits for, with no
object and no holders.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Iterable, Mapping, Protocol

from dbprobe.discover.backends import BackendDirectory
from dbprobe.correlate.statements import Clock, Open, SpanPairer
from dbprobe.engines.base import Engine
from dbprobe.engines.registry import engine_for
from dbprobe.kernel.maps import LastStatement
from dbprobe.kernel.records import EV_DEADLOCK, EV_LOCK_WAIT_DONE, EV_LOCK_WAIT_START, RawLockEvent
from dbprobe.model import Blocker, Deadlock, LockWait, Source, Statement
from dbprobe.discover.memory import read_c_string

# A wait that ends with an error status (uprobe recipe) right before the deadlock report.
DEADLOCK_REPORT_GRACE_S = 1.0


class Catalog(Protocol):
    """Names for OIDs and the server's own view of blockers (``--dsn``); all best effort."""

    def relation_name(self, database_oid: int | None, relation_oid: int) -> str | None: ...
    def database_name(self, database_oid: int) -> str | None: ...
    def blocking_pids(self, pid: int) -> list[int]: ...

    @property
    def blockers_source(self) -> str: ...  # how a Blocker from blocking_pids() says it was found


class LockWaitTracker:
    def __init__(self, sources: Mapping[int, Source], versions: Mapping[int, str | None],
                 backends: BackendDirectory, last_statement: Callable[[int], LastStatement | None],
                 catalog: Catalog | None = None, clock: Clock | None = None,
                 read_string: Callable[[int, int], str | None] = read_c_string):
        self._sources = sources
        self._versions = versions
        self._backends = backends
        self._last_statement = last_statement
        self._catalog = catalog
        self._clock = clock or Clock()
        self._read_string = read_string  # (pid, address): names MySQL's waits point to
        self.pairer: SpanPairer[LockWait] = SpanPairer()
        self._recent_failures: dict[int, tuple[int, LockWait]] = {}  # tid -> (end ns, wait)

    def record(self, raw: RawLockEvent) -> LockWait | Deadlock | None:
        """Take one kernel record; what it completes or starts, for the report."""
        if raw.kind == EV_LOCK_WAIT_START:
            return self.started(raw)
        if raw.kind == EV_LOCK_WAIT_DONE:
            return self.finished(raw)
        if raw.kind == EV_DEADLOCK:
            return self.deadlock(raw)
        return None

    def started(self, raw: RawLockEvent) -> LockWait:
        wait = self._wait_from(raw)
        self.pairer.start(raw.tid, raw.pid, raw.ts_ns, wait)
        return wait

    def finished(self, raw: RawLockEvent) -> LockWait | None:
        span = self.pairer.done(raw.tid, raw.pid, raw.ts_ns, None)
        if span is None:
            return None
        engine = self._engine(raw)
        # An end record may carry the error that ended the wait (lock_timeout, a cancel).
        outcome = engine.wait_outcome(raw.flags, raw.fields[0])
        wait = replace(span.start, end=self._clock.wall(raw.ts_ns), outcome=outcome)
        if wait.outcome == "deadlock" and engine.reports_deadlocks:
            # Uprobe recipe: ProcSleep failed, the deadlock report follows at once and will
            # carry this wait; held until then (or given up by sweep()).
            self._recent_failures[raw.tid] = (raw.ts_ns, wait)
            return None
        return wait

    def deadlock(self, raw: RawLockEvent) -> Deadlock | None:
        """The victim's wait ends here (USDT), or ended just before with an error (uprobe)."""
        opened = next((o for o in self.pairer.open_spans() if o.tid == raw.tid), None)
        if opened is not None:
            victim_wait = self.finished_as(opened, raw.ts_ns, "deadlock")
        else:
            recent = self._recent_failures.pop(raw.tid, None)
            if recent is None or raw.ts_ns - recent[0] > DEADLOCK_REPORT_GRACE_S * 1e9:
                return None
            victim_wait = recent[1]
        return Deadlock(ts=self._clock.wall(raw.ts_ns), victim=raw.pid,
                        waits=(victim_wait, *self._cycle_from(victim_wait)))

    def finished_as(self, opened: Open[LockWait], ts_ns: int, outcome: str) -> LockWait:
        self.pairer.done(opened.tid, opened.pid, ts_ns, None)
        return replace(opened.start, end=self._clock.wall(ts_ns), outcome=outcome)

    def waiting(self) -> list[LockWait]:
        return [opened.start for opened in self.pairer.open_spans()]

    def sweep(self, alive: Callable[[int], bool]) -> list[LockWait]:
        """Close the waits of backends that exited while waiting, and release failed waits
        whose deadlock report never came."""
        now = time.time()
        gone = [replace(opened.start, end=now, outcome="gone") for opened in self.pairer.sweep(alive)]
        return gone + self._expired_failures(time.monotonic_ns())

    def _expired_failures(self, now_ns: int) -> list[LockWait]:
        expired = [tid for tid, (end_ns, _) in self._recent_failures.items()
                   if now_ns - end_ns > DEADLOCK_REPORT_GRACE_S * 1e9]
        return [replace(self._recent_failures.pop(tid)[1], outcome="error") for tid in expired]

    def _cycle_from(self, victim: LockWait) -> list[LockWait]:
        """The other waits of the deadlock: blockers of the victim that were waiting too."""
        waiting = {wait.pid: wait for wait in self.waiting()}
        cycle, frontier, seen = [], [b.pid for b in victim.blockers], {victim.pid}
        while frontier:
            pid = frontier.pop(0)
            if pid in seen or pid not in waiting:
                continue
            seen.add(pid)
            cycle.append(waiting[pid])
            frontier.extend(b.pid for b in waiting[pid].blockers)
        return cycle

    def _engine(self, raw: RawLockEvent) -> Engine:
        return engine_for(self._sources[raw.hook].db)

    def _wait_from(self, raw: RawLockEvent) -> LockWait:
        source = self._sources[raw.hook]
        engine = engine_for(source.db)
        target = engine.lock_target(raw, self._versions.get(raw.hook), self._read_string)
        target_name, mode = self._target_name(target), engine.lock_mode(raw)
        blockers = tuple(self._blockers(raw, engine))
        backend = self._backends.lookup(raw.pid)
        text = raw.text.decode("utf-8", errors="replace")
        return LockWait(
            pid=raw.pid, tid=raw.tid, db=source.db,
            database=backend.info.database if backend.info else None,
            target=target, target_name=target_name, mode=mode,
            start=self._clock.wall(raw.ts_ns), end=None, outcome="waiting",
            statement=_statement(text, engine), blockers=blockers,
            mechanism=source.mechanism,
        )

    def _target_name(self, target) -> str:
        if self._catalog is None:
            return target.describe()
        relation = (self._catalog.relation_name(target.database, target.relation)
                    if target.relation is not None else None)
        database = self._catalog.database_name(target.database) if target.database else None
        return target.describe(relation_name=relation, database_name=database)

    def _blockers(self, raw: RawLockEvent, engine: Engine) -> Iterable[Blocker]:
        named = set()
        # The server names its processes by the pids of its own pid namespace (a container's).
        for holder in engine.conflicting_holders(raw):
            pid = self._backends.host_pid(holder.pid, raw.pid)
            named.add(pid)
            yield self._blocker(pid, holder.modes, holder.session, "dbprobe", engine)
        if self._catalog is not None:
            for server_pid in self._catalog.blocking_pids(raw.pid):
                pid = self._backends.host_pid(server_pid, raw.pid)
                if pid not in named:
                    yield self._blocker(pid, (), False, self._catalog.blockers_source, engine)

    def _blocker(self, pid: int, modes: tuple[str, ...], session: bool, source: str,
                 engine: Engine) -> Blocker:
        last = self._last_statement(pid)
        waiting = any(opened.pid == pid for opened in self.pairer.open_spans())
        if last is None:
            state, since_ns = ("waiting" if waiting else "unknown"), None
        elif waiting:
            state, since_ns = "waiting", last.start_ns
        elif last.end_ns:
            state = (engine.idle_state_name(last.idle_state)
                     or ("idle" if session else "idle in transaction"))
            since_ns = last.end_ns
        else:
            state, since_ns = "running", last.start_ns
        return Blocker(pid=pid, modes=modes, session=session,
                       statement=_statement(last.text, engine) if last else None, state=state,
                       state_since=self._clock.wall(since_ns) if since_ns else None, source=source)


def _statement(text: str, engine: Engine) -> Statement | None:
    return Statement(text, engine.fingerprint(text)) if text else None
