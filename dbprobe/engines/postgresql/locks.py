"""PostgreSQL's heavyweight-lock vocabulary: tag types by server version, modes, conflicts.

A LOCKTAG is four id fields and a type; what the fields mean depends on the type, and the
numbering of the types shifts between server versions (types were inserted in the middle
of the enum). Everything here is data and pure functions over it.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

# pg_locks' names for lock types, in enum LockTagType order for each range of versions.
_TAG_TYPES_BEFORE_9_5 = ("relation", "extend", "page", "tuple", "transactionid", "virtualxid",
                         "object", "userlock", "advisory")
_TAG_TYPES_9_5 = ("relation", "extend", "page", "tuple", "transactionid", "virtualxid",
                  "spectoken", "object", "userlock", "advisory")
_TAG_TYPES_13 = ("relation", "extend", "frozenid", "page", "tuple", "transactionid",
                 "virtualxid", "spectoken", "object", "userlock", "advisory")
_TAG_TYPES_16 = _TAG_TYPES_13 + ("applytransaction",)

MODES = ("", "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
         "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")

# Which held modes each requested mode conflicts with (lock.c's LockConflicts), as mode numbers.
_CONFLICTS = {
    1: {8},
    2: {7, 8},
    3: {5, 6, 7, 8},
    4: {4, 5, 6, 7, 8},
    5: {3, 4, 6, 7, 8},
    6: {3, 4, 5, 6, 7, 8},
    7: {2, 3, 4, 5, 6, 7, 8},
    8: {1, 2, 3, 4, 5, 6, 7, 8},
}


def tag_types(version: str | None) -> tuple[str, ...]:
    """The lock type names of a server version; the newest layout when it is unknown."""
    try:
        parsed = Version(version) if version else None
    except InvalidVersion:
        parsed = None
    if parsed is None or parsed >= Version("16"):
        return _TAG_TYPES_16
    if parsed >= Version("13"):
        return _TAG_TYPES_13
    if parsed >= Version("9.5"):
        return _TAG_TYPES_9_5
    return _TAG_TYPES_BEFORE_9_5


def mode_name(mode: int) -> str:
    return MODES[mode] if 0 < mode < len(MODES) else f"mode {mode}"


def modes_in(bits: int) -> tuple[int, ...]:
    return tuple(mode for mode in range(1, len(MODES)) if bits >> mode & 1)


def conflicts(requested: int, held_bits: int) -> bool:
    """Whether holding the modes in held_bits blocks a request for `requested`."""
    return any(mode in _CONFLICTS.get(requested, ()) for mode in modes_in(held_bits))


@dataclass(frozen=True, slots=True)
class LockTarget:
    """What a lock is on, decoded from its tag."""

    locktype: str
    database: int | None = None  # OID
    relation: int | None = None  # OID
    page: int | None = None
    tuple: int | None = None
    transaction: int | None = None  # xid
    virtualxid: str | None = None  # "backend/local"
    classid: int | None = None
    objid: int | None = None
    objsubid: int | None = None
    key: str | None = None  # advisory and other raw keys

    def describe(self, relation_name: str | None = None, database_name: str | None = None) -> str:
        """A readable name, with catalog names where known."""
        relation = relation_name or (f"relation {self.relation}" if self.relation is not None else None)
        where = f" in database {database_name or self.database}" if self.database else ""
        if self.locktype == "relation":
            return f"{relation}{'' if relation_name else where}"
        if self.locktype == "extend":
            return f"extension of {relation}"
        if self.locktype == "page":
            return f"page {self.page} of {relation}"
        if self.locktype == "tuple":
            return f"row ({self.page},{self.tuple}) of {relation}"
        if self.locktype == "transactionid":
            return f"transaction {self.transaction}"
        if self.locktype == "virtualxid":
            return f"virtual transaction {self.virtualxid}"
        if self.locktype == "spectoken":
            return f"speculative insertion of transaction {self.transaction}"
        if self.locktype == "frozenid":
            return f"pg_database.datfrozenxid{where}"
        if self.locktype == "object":
            return f"object {self.objid} of class {self.classid}{where}"
        if self.locktype == "advisory":
            return f"advisory lock {self.key}{where}"
        return f"{self.locktype} {self.key}"

    @property
    def group_key(self) -> tuple:
        """Waits on the same object group together; rows and transactions group by relation."""
        if self.locktype in ("tuple", "page"):
            return ("row lock", self.database, self.relation)
        return (self.locktype, self.database, self.relation, self.transaction, self.virtualxid,
                self.classid, self.objid, self.key)


def decode_tag(fields: tuple[int, int, int, int], locktype: int, version: str | None) -> LockTarget:
    """The target of a LOCKTAG (field1..field4, type) on a server of `version`."""
    names = tag_types(version)
    name = names[locktype] if locktype < len(names) else f"locktype {locktype}"
    f1, f2, f3, f4 = fields
    if name in ("relation", "extend"):
        return LockTarget(name, database=f1, relation=f2)
    if name == "frozenid":
        return LockTarget(name, database=f1)
    if name == "page":
        return LockTarget(name, database=f1, relation=f2, page=f3)
    if name == "tuple":
        return LockTarget(name, database=f1, relation=f2, page=f3, tuple=f4)
    if name in ("transactionid", "spectoken"):
        return LockTarget(name, transaction=f1, key=str(f2) if name == "spectoken" else None)
    if name == "virtualxid":
        return LockTarget(name, virtualxid=f"{f1}/{f2}")
    if name == "object":
        return LockTarget(name, database=f1, classid=f2, objid=f3, objsubid=f4)
    if name == "advisory":
        return LockTarget(name, database=f1, key=_advisory_key(f2, f3, f4))
    return LockTarget(name, key=f"{f1}/{f2}/{f3}/{f4}")


def _advisory_key(f2: int, f3: int, f4: int) -> str:
    """As the SQL functions take it: pg_advisory_lock(bigint) or pg_advisory_lock(int, int)."""
    if f4 == 1:  # bigint: the high half in field2, the low half in field3
        key = f2 << 32 | f3
        return str(key - (1 << 64) if key >= 1 << 63 else key)
    signed = [value - (1 << 32) if value >= 1 << 31 else value for value in (f2, f3)]
    return f"({signed[0]},{signed[1]})"


# The states a backend goes idle in (enum BackendState), as a blocker's state.
IDLE_STATES = {1: "idle", 3: "idle in transaction", 5: "idle in transaction (aborted)"}

# How an error raised during a lock wait ended it, by its SQLSTATE.
_WAIT_ERRORS = {"55P03": "lock timeout", "57014": "cancelled", "57P01": "terminated",
                "40P01": "deadlock"}


def sqlstate(packed: int) -> str:
    """The five characters of an error code as errcode() takes it (MAKE_SQLSTATE's packing:
    six bits a character, the first lowest)."""
    return "".join(chr(((packed >> (6 * index)) & 0x3F) + ord("0")) for index in range(5))


def wait_outcome(packed_sqlstate: int) -> str:
    """What ended a wait with an error: a lock or statement timeout, a cancel..."""
    code = sqlstate(packed_sqlstate)
    return _WAIT_ERRORS.get(code, f"error {code}")
