"""MySQL's and MariaDB's lock waits as their servers report them: wait types, metadata-lock
kinds, how waits ended, and where to ask for the blockers.

Neither server says, when a thread starts waiting, which object it waits for or who holds
it: InnoDB and the table-lock code only report the kind of wait (``thd_wait_begin``'s wait
type), and the metadata-lock code the processlist state it sets ("Waiting for table
metadata lock"). So a target here is a kind of lock, not an object; what
``probes/mysql_locks.bpf.c`` sends is decoded here, and nothing here knows of BPF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dbprobe.kernel.records import LOCK_WAIT_FAILED, RawLockEvent

# Flags of a wait's end record, beside LOCK_WAIT_FAILED (mysql_locks.bpf.c's MY_LOCK_WAIT_*).
WAIT_TIMEOUT = 2
WAIT_KILLED = 4
WAIT_OUTCOME_UNKNOWN = 8  # the server does not say whether the lock was granted

META_DATA_LOCK = 5  # THD_WAIT_META_DATA_LOCK

# enum thd_wait_type (include/mysql/service_thd_wait.h): the lock waits, with the server's
# name for each and what it is in practice. THD_WAIT_USER_LOCK is no longer GET_LOCK's (user
# locks became metadata locks in MySQL 5.7 and MariaDB 10.0); MySQL uses it for the queue
# of threads waiting to enter InnoDB when innodb_thread_concurrency is set.
_WAIT_TYPES = {
    3: ("row lock", "an InnoDB row lock"),
    4: ("global lock", "the global read lock"),
    META_DATA_LOCK: ("metadata lock", "a metadata lock"),
    6: ("table lock", "a table lock"),
    7: ("user lock", "a user-lock wait (innodb_thread_concurrency queue)"),
}

# Metadata-lock kinds that lock the whole server rather than one object.
_GLOBAL_LOCKS = ("backup lock", "global read lock", "commit lock")


@dataclass(frozen=True, slots=True)
class ServerLockTarget:
    """The kind of lock a MySQL or MariaDB thread waits for; the object is not known."""

    locktype: str  # "row lock", "table lock", "metadata lock", "user lock", "global lock"
    label: str  # "an InnoDB row lock", "a table metadata lock"

    # What a PostgreSQL LockTarget names, which these waits never know.
    @property
    def database(self) -> None:
        return None

    @property
    def relation(self) -> None:
        return None

    @property
    def transaction(self) -> None:
        return None

    def describe(self, relation_name: str | None = None, database_name: str | None = None) -> str:
        return self.label

    @property
    def group_key(self) -> tuple:
        return (self.locktype, self.label)


GET_LOCK = ServerLockTarget("user lock", "a user lock (GET_LOCK)")


def decode_wait(raw: RawLockEvent, read_string: Callable[[int, int], str | None]) -> ServerLockTarget:
    """The target of a wait's start record; `read_string(pid, address)` reads the server's memory.

    A metadata-lock wait seen in MDL_wait::timed_wait carries the address of its stage's
    name in field1 (low half) and field2 (high half).
    """
    stage_address = raw.fields[0] | raw.fields[1] << 32
    stage = read_string(raw.pid, stage_address) if stage_address else None
    return wait_target(raw.locktype, stage)


def wait_target(wait_type: int, stage: str | None = None) -> ServerLockTarget:
    """The target of a wait of `wait_type`; a metadata-lock wait is named by its stage."""
    if wait_type == META_DATA_LOCK and stage:
        return _metadata_lock(stage)
    locktype, label = _WAIT_TYPES.get(wait_type, (f"wait type {wait_type}", f"a wait of type {wait_type}"))
    return ServerLockTarget(locktype, label)


def _metadata_lock(stage: str) -> ServerLockTarget:
    """From a processlist state: "Waiting for table metadata lock", "User lock" (MariaDB's
    GET_LOCK), "Waiting for user level lock" (MySQL's), "Waiting for backup lock"..."""
    what = stage.removeprefix("Waiting for ").strip()
    if "user" in what.lower():
        return GET_LOCK
    if what in _GLOBAL_LOCKS:
        return ServerLockTarget("global lock", f"the {what}")
    return ServerLockTarget("metadata lock", f"{_article(what)} {what}")


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def outcome(flags: int) -> str:
    """How a wait ended, from its end record's flags."""
    if flags & LOCK_WAIT_FAILED:
        return "deadlock"
    if flags & WAIT_TIMEOUT:
        return "timeout"
    if flags & WAIT_KILLED:
        return "killed"
    if flags & WAIT_OUTCOME_UNKNOWN:
        return "ended"
    return "granted"


def blocker_hint(db: str, target: ServerLockTarget) -> str:
    """Why no blocker is named, and where the server itself shows it."""
    return f"the server does not tell which session holds the lock; ask it: {_where_to_ask(db, target)}"


def _where_to_ask(db: str, target: ServerLockTarget) -> str:
    if target == GET_LOCK:
        return "SELECT IS_USED_LOCK('name') gives the holder's connection id"
    if target.locktype in ("metadata lock", "global lock"):
        if db == "mariadb":
            return "performance_schema.metadata_locks, or information_schema.metadata_lock_info (plugin)"
        return "performance_schema.metadata_locks"
    if target.locktype == "table lock":  # InnoDB's, or a thr_lock (MyISAM, Aria)
        return "SHOW ENGINE INNODB STATUS, or performance_schema.metadata_locks for the sessions using the table"
    if db == "mariadb":
        return "information_schema.innodb_lock_waits, or SHOW ENGINE INNODB STATUS"
    return "performance_schema.data_lock_waits (sys.innodb_lock_waits), or SHOW ENGINE INNODB STATUS"
