"""MySQL's and MariaDB's lock waits: decoding what mysql_locks.bpf.c sends, tracking, rendering.

Times are shown in local time: the tests run in UTC so that the text is the same everywhere.
"""

from __future__ import annotations

import ctypes
import json
import os
import re

import pytest

from dbprobe.render import locks as lockreport
from dbprobe.engines.mysql import locks as mylocks
from dbprobe.discover.backends import BackendDirectory
from dbprobe.correlate.statements import Clock
from dbprobe.kernel.records import EV_LOCK_WAIT_DONE, EV_LOCK_WAIT_START, LOCK_WAIT_FAILED, RawLockEvent
from dbprobe.correlate.lockwaits import LockWaitTracker
from dbprobe.model import Source
from dbprobe.discover.memory import read_c_string
from dbprobe.recipes.load import probes_dir

WALL_AT_ZERO = 1_700_000_000.0  # the wall clock when the monotonic clock read 0: 22:13:20 UTC
HOOK = 7
MARIADB = Source("mariadb", "/usr/sbin/mariadbd", "uprobe")


pytestmark = pytest.mark.usefixtures("utc")


def lock_record(kind: int, ts_ns: int, wait_type: int, *, stage_address: int = 0, flags: int = 0,
                text: bytes = b"", pid: int = 4242) -> RawLockEvent:
    return RawLockEvent(kind=kind, pid=pid, tid=4250, hook=HOOK, ts_ns=ts_ns,
                        fields=(stage_address & 0xFFFFFFFF, stage_address >> 32, 0, 0),
                        locktype=wait_type, mode=0, flags=flags, holders=(), text=text)


def tracker() -> LockWaitTracker:
    return LockWaitTracker({HOOK: MARIADB}, {HOOK: "10.11.19"}, BackendDirectory(),
                           last_statement=lambda pid: None,
                           clock=Clock(wall=lambda: WALL_AT_ZERO, monotonic=lambda: 0.0))


@pytest.mark.parametrize(("wait_type", "locktype", "label"), [
    (3, "row lock", "an InnoDB row lock"),
    (4, "global lock", "the global read lock"),
    (5, "metadata lock", "a metadata lock"),
    (6, "table lock", "a table lock"),
    (7, "user lock", "a user-lock wait (innodb_thread_concurrency queue)"),
    (42, "wait type 42", "a wait of type 42"),
])
def test_wait_types_name_the_kind_of_lock(wait_type, locktype, label):
    target = mylocks.wait_target(wait_type)
    assert (target.locktype, target.describe()) == (locktype, label)
    assert (target.database, target.relation, target.transaction) == (None, None, None)


@pytest.mark.parametrize(("stage", "locktype", "label"), [
    ("Waiting for table metadata lock", "metadata lock", "a table metadata lock"),
    ("Waiting for schema metadata lock", "metadata lock", "a schema metadata lock"),
    ("Waiting for acl cache lock", "metadata lock", "an acl cache lock"),
    ("Waiting for table flush", "metadata lock", "a table flush"),
    ("User lock", "user lock", "a user lock (GET_LOCK)"),  # MariaDB's GET_LOCK
    ("Waiting for user level lock", "user lock", "a user lock (GET_LOCK)"),  # MySQL's
    ("Waiting for backup lock", "global lock", "the backup lock"),
    ("Waiting for global read lock", "global lock", "the global read lock"),
    ("Waiting for commit lock", "global lock", "the commit lock"),
])
def test_metadata_lock_waits_are_named_by_their_stage(stage, locktype, label):
    target = mylocks.wait_target(mylocks.META_DATA_LOCK, stage)
    assert (target.locktype, target.describe()) == (locktype, label)


def test_the_stage_name_is_read_from_the_servers_memory():
    # This process stands for the server: the name lives at an address of its own memory.
    name = ctypes.create_string_buffer(b"Waiting for table metadata lock")
    address = ctypes.addressof(name)
    record = lock_record(EV_LOCK_WAIT_START, 0, mylocks.META_DATA_LOCK, stage_address=address,
                         pid=os.getpid())

    assert mylocks.decode_wait(record, read_c_string) == mylocks.wait_target(5, "Waiting for table metadata lock")
    # Without an address (thd_wait_begin alone), or where nothing can be read, the kind stays generic.
    without = lock_record(EV_LOCK_WAIT_START, 0, mylocks.META_DATA_LOCK, pid=os.getpid())
    assert mylocks.decode_wait(without, read_c_string).describe() == "a metadata lock"
    unreadable = lock_record(EV_LOCK_WAIT_START, 0, mylocks.META_DATA_LOCK, stage_address=8, pid=os.getpid())
    assert mylocks.decode_wait(unreadable, read_c_string).describe() == "a metadata lock"


@pytest.mark.parametrize(("flags", "outcome"), [
    (0, "granted"),
    (LOCK_WAIT_FAILED, "deadlock"),
    (mylocks.WAIT_TIMEOUT, "timeout"),
    (mylocks.WAIT_KILLED, "killed"),
    (mylocks.WAIT_OUTCOME_UNKNOWN, "ended"),
])
def test_outcomes(flags, outcome):
    assert mylocks.outcome(flags) == outcome


def test_flags_mirror_the_kernel_program():
    source = (probes_dir() / "mysql_locks.bpf.c").read_text()
    defined = {name: int(value) for name, value in
               re.findall(r"^#define (MY_LOCK_WAIT_\w+) (\d+)", source, re.MULTILINE)}
    assert defined == {"MY_LOCK_WAIT_TIMEOUT": mylocks.WAIT_TIMEOUT,
                       "MY_LOCK_WAIT_KILLED": mylocks.WAIT_KILLED,
                       "MY_LOCK_WAIT_OUTCOME_UNKNOWN": mylocks.WAIT_OUTCOME_UNKNOWN}
    assert f"#define MY_WAIT_META_DATA_LOCK {mylocks.META_DATA_LOCK}\n" in source


def test_a_row_lock_wait_from_start_to_end():
    waits = tracker()
    started = waits.record(lock_record(EV_LOCK_WAIT_START, 1_000_000_000, 3,
                                       text=b"UPDATE accounts SET v = 2 WHERE id = 1"))
    assert started.outcome == "waiting" and waits.waiting() == [started]

    ended = waits.record(lock_record(EV_LOCK_WAIT_DONE, 2_250_000_000, 3,
                                     flags=mylocks.WAIT_OUTCOME_UNKNOWN))

    assert waits.waiting() == []
    assert (ended.db, ended.target_name, ended.mode, ended.blockers) == ("mariadb", "an InnoDB row lock", "-", ())
    assert (ended.outcome, ended.wait_ms) == ("ended", pytest.approx(1250.0))
    assert ended.statement.fingerprint.text == "UPDATE accounts SET v = ? WHERE id = ?"
    assert ended.mechanism == "uprobe"


def test_a_metadata_lock_wait_that_timed_out():
    waits = tracker()
    waits.record(lock_record(EV_LOCK_WAIT_START, 0, 5, text=b"ALTER TABLE t ADD COLUMN w INT"))
    ended = waits.record(lock_record(EV_LOCK_WAIT_DONE, 50_000_000_000, 5, flags=mylocks.WAIT_TIMEOUT))
    assert (ended.outcome, ended.wait_ms) == ("timeout", pytest.approx(50_000.0))


def ended_row_lock_wait(flags: int = mylocks.WAIT_OUTCOME_UNKNOWN):
    waits = tracker()
    waits.record(lock_record(EV_LOCK_WAIT_START, 250_000_000, 3,
                             text=b"UPDATE accounts SET v = 2 WHERE id = 1"))
    return waits.record(lock_record(EV_LOCK_WAIT_DONE, 1_500_000_000, 3, flags=flags))


def test_text_lines_say_where_to_ask_for_the_blocker():
    lines = lockreport.wait_lines(ended_row_lock_wait(), show_literals=False, width=None)
    assert lines == [
        "22:13:21.500 pid 4242 -: waited 1250.0 ms for an InnoDB row lock",
        "    waiter:  UPDATE accounts SET v = ? WHERE id = ?",
        "    blocker: unknown (the server does not tell which session holds the lock; ask it: "
        "information_schema.innodb_lock_waits, or SHOW ENGINE INNODB STATUS)",
    ]


def test_an_outcome_other_than_an_ordinary_end_is_shown():
    (head, *_) = lockreport.wait_lines(ended_row_lock_wait(mylocks.WAIT_KILLED), show_literals=False,
                                       width=None)
    assert head == "22:13:21.500 pid 4242 -: waited 1250.0 ms (killed) for an InnoDB row lock"


def test_json_record():
    record = json.loads(lockreport.wait_json(ended_row_lock_wait(), show_literals=False))
    assert {key: record[key] for key in ("event", "db", "locktype", "mode", "target", "outcome",
                                         "relation", "database_oid", "transaction", "blockers")} == {
        "event": "lock_wait", "db": "mariadb", "locktype": "row lock", "mode": "-",
        "target": "an InnoDB row lock", "outcome": "ended", "relation": None,
        "database_oid": None, "transaction": None, "blockers": [],
    }
    assert record["wait_ms"] == 1250.0
    assert record["query"] == "UPDATE accounts SET v = ? WHERE id = ?"


@pytest.mark.parametrize(("db", "target", "where"), [
    ("mysql", mylocks.wait_target(3),
     "performance_schema.data_lock_waits (sys.innodb_lock_waits), or SHOW ENGINE INNODB STATUS"),
    ("mariadb", mylocks.wait_target(5, "Waiting for table metadata lock"),
     "performance_schema.metadata_locks, or information_schema.metadata_lock_info (plugin)"),
    ("mysql", mylocks.wait_target(5, "Waiting for global read lock"), "performance_schema.metadata_locks"),
    ("mariadb", mylocks.GET_LOCK, "SELECT IS_USED_LOCK('name') gives the holder's connection id"),
    ("mariadb", mylocks.wait_target(6),
     "SHOW ENGINE INNODB STATUS, or performance_schema.metadata_locks for the sessions using the table"),
])
def test_blocker_hints(db, target, where):
    assert mylocks.blocker_hint(db, target) == (
        f"the server does not tell which session holds the lock; ask it: {where}")
