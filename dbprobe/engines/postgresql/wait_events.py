"""PostgreSQL's wait events: the 32-bit ``wait_event_info`` word a backend sets while it waits.

The top byte is the class (``PG_WAIT_*`` in utils/wait_event.h), the low 16 bits the event:
an enum of each class for most, the lock tag type for Lock, the tranche id for LWLock. The
names are what ``pg_stat_activity.wait_event`` shows on the server's major version, 12 to 18
(their lists are in wait_event_names); an older or newer version, and an event past the end
of its version's list, is decoded by class with the event's number (``IO:17``).
"""

from __future__ import annotations

from functools import cache

from packaging.version import InvalidVersion, Version

from dbprobe.engines.postgresql import locks, wait_event_names

CLASS_MASK = 0xFF000000
EVENT_MASK = 0x0000FFFF

LWLOCK = 0x01
LOCK = 0x03
BUFFER_PIN = 0x04
ACTIVITY = 0x05
CLIENT = 0x06
EXTENSION = 0x07
IPC = 0x08
TIMEOUT = 0x09
IO = 0x0A
INJECTION_POINT = 0x0B  # 17 and later

CLASS_NAMES = {
    LWLOCK: "LWLock", LOCK: "Lock", BUFFER_PIN: "BufferPin", ACTIVITY: "Activity",
    CLIENT: "Client", EXTENSION: "Extension", IPC: "IPC", TIMEOUT: "Timeout", IO: "IO",
    INJECTION_POINT: "InjectionPoint",
}

# Where dbprobe puts a class's off-CPU time in a statement's breakdown; the rest is "other".
BREAKDOWN_CLASS = {IO: "io", LOCK: "lock", LWLOCK: "lwlock", CLIENT: "client"}


def _tables(version: str | None) -> dict[int, tuple[str, ...]] | None:
    """The names of each named class on a server of `version`; None without a list for it."""
    try:
        parsed = Version(version) if version else None
    except InvalidVersion:
        return None
    return tables_of_major(parsed.major) if parsed is not None else None


@cache
def tables_of_major(major: int) -> dict[int, tuple[str, ...]] | None:
    """Class number to names, indexed by event number, for a major version (12, 13...)."""
    names = wait_event_names.BY_MAJOR.get(major)
    if names is None:
        return None
    return {ACTIVITY: names.activity, CLIENT: names.client, IPC: names.ipc,
            TIMEOUT: names.timeout, IO: names.io, LWLOCK: names.lwlocks}


def class_of(info: int) -> int:
    return (info & CLASS_MASK) >> 24


def event_name(info: int, version: str | None) -> str:
    """``Class:Event`` as pg_stat_activity shows it, e.g. ``IO:DataFileRead``."""
    klass = class_of(info)
    event = info & EVENT_MASK
    class_name = CLASS_NAMES.get(klass, f"class {klass:#04x}")
    return f"{class_name}:{_event(klass, event, version)}"


def _event(klass: int, event: int, version: str | None) -> str:
    if klass == LOCK:
        types = locks.tag_types(version)
        return types[event] if event < len(types) else str(event)
    if klass == BUFFER_PIN:
        return "BufferPin"
    if klass == EXTENSION:
        return "Extension"
    tables = _tables(version)
    names = tables.get(klass) if tables else None
    if klass == LWLOCK and names and event >= len(names):
        return "extension"
    if names and event < len(names):
        return names[event]
    return str(event)


def breakdown_class(info: int) -> str:
    """io, lock, lwlock, client or other: where a wait's time goes in a statement's breakdown."""
    return BREAKDOWN_CLASS.get(class_of(info), "other")
