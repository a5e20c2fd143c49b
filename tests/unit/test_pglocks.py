"""PostgreSQL lock waits from kernel records: how a wait ended, and its blockers' states."""

from __future__ import annotations

import pytest

from dbprobe.correlate.lockwaits import LockWaitTracker
from dbprobe.kernel.maps import LastStatement
from dbprobe.correlate.statements import Clock
from dbprobe.discover.backends import BackendDirectory
from dbprobe.engines.postgresql.locks import sqlstate, wait_outcome
from dbprobe.kernel.records import (EV_LOCK_WAIT_DONE, EV_LOCK_WAIT_START, LOCK_WAIT_FAILED,
                                    PG_LOCK_WAIT_ERROR, RawLockEvent)
from dbprobe.model import Source

HOOK = 0
POSTGRES = Source("postgresql", "/usr/lib/postgresql/15/bin/postgres", "uprobe")
WAITER, HOLDER = 4242, 4343
TUPLE = 4  # LockTagType of PostgreSQL 15
SHARE_LOCK, EXCLUSIVE_LOCK = 5, 7


def packed(code: str) -> int:
    """A SQLSTATE as errcode() takes it: MAKE_SQLSTATE, six bits a character, lowest first."""
    return sum(((ord(char) - ord("0")) & 0x3F) << (6 * index) for index, char in enumerate(code))


def record(kind: int, ts_ns: int, *, flags: int = 0, fields=(0, 0, 0, 0),
           holders=()) -> RawLockEvent:
    return RawLockEvent(kind=kind, pid=WAITER, tid=WAITER, hook=HOOK, ts_ns=ts_ns,
                        fields=fields, locktype=TUPLE, mode=SHARE_LOCK if kind == EV_LOCK_WAIT_START else 0,
                        flags=flags, holders=holders, text=b"update t set v = 1 where id = 1")


def tracker(last: dict[int, LastStatement] | None = None) -> LockWaitTracker:
    return LockWaitTracker({HOOK: POSTGRES}, {HOOK: "15.4"}, BackendDirectory(),
                           last_statement=(last or {}).get,
                           clock=Clock(wall=lambda: 1_700_000_000.0, monotonic=lambda: 0.0))


@pytest.mark.parametrize(("code", "value"), [("57014", 67371461), ("00000", 0)])
def test_sqlstates_unpack_as_errcode_packs_them(code: str, value: int) -> None:
    assert packed(code) == value
    assert sqlstate(value) == code


@pytest.mark.parametrize(("code", "outcome"), [
    ("55P03", "lock timeout"), ("57014", "cancelled"), ("57P01", "terminated"),
    ("40P01", "deadlock"), ("XX000", "error XX000"),
])
def test_the_error_that_ended_a_wait_is_its_outcome(code: str, outcome: str) -> None:
    assert wait_outcome(packed(code)) == outcome


def test_a_wait_ended_by_an_error_ends_then_with_its_outcome() -> None:
    waits = tracker()
    waits.record(record(EV_LOCK_WAIT_START, 1_000_000_000))
    ended = waits.record(record(EV_LOCK_WAIT_DONE, 1_150_000_000, flags=PG_LOCK_WAIT_ERROR,
                                fields=(packed("55P03"), 0, 0, 0)))
    assert ended.outcome == "lock timeout"
    assert round(ended.wait_ms) == 150
    assert waits.waiting() == []


def test_a_granted_wait_and_a_deadlock_victim_keep_their_outcomes() -> None:
    waits = tracker()
    waits.record(record(EV_LOCK_WAIT_START, 1_000))
    assert waits.record(record(EV_LOCK_WAIT_DONE, 2_000)).outcome == "granted"
    waits.record(record(EV_LOCK_WAIT_START, 3_000))
    assert waits.record(record(EV_LOCK_WAIT_DONE, 4_000, flags=LOCK_WAIT_FAILED)) is None  # held
    assert waits.waiting() == []


@pytest.mark.parametrize(("idle_state", "state"), [
    (1, "idle"), (3, "idle in transaction"), (5, "idle in transaction (aborted)"),
    (0, "idle in transaction"),  # not known: a transaction lock's holder is in one
])
def test_a_blockers_state_is_the_one_it_went_idle_in(idle_state: int, state: str) -> None:
    last = {HOLDER: LastStatement("update t set v = 2 where id = 1", 10, 20, idle_state)}
    waits = tracker(last)
    wait = waits.record(record(EV_LOCK_WAIT_START, 1_000, holders=((HOLDER, 1 << EXCLUSIVE_LOCK, False),)))
    (blocker,) = wait.blockers
    assert (blocker.pid, blocker.state, blocker.modes) == (HOLDER, state, ("ExclusiveLock",))
