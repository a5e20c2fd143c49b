"""The records the BPF programs send, mirrored once from ``probes/dbprobe.h``.

Decoding turns a ring-buffer record into a plain frozen record; nothing here knows what a
query means, only how its bytes are laid out.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

TEXT_MAX = 2048  # DBP_TEXT_MAX
HIST_SLOTS = 64  # DBP_HIST_SLOTS
LOCK_HOLDERS = 8  # DBP_LOCK_HOLDERS
TXN_STATEMENTS = 3  # DBP_TXN_STATEMENTS
TXN_TEXT_MAX = 256  # DBP_TXN_TEXT_MAX
WAIT_EVENTS = 8  # DBP_WAIT_EVENTS
WAIT_EVENT_MORE = 0xFFFFFFFF  # DBP_WAIT_EVENT_MORE: the entry that gathers the events left over
OFF_CPU_CLASSES = ("io", "lock", "lwlock", "client", "runq", "other")  # enum dbp_off_class

EV_QUERY = 1
EV_LOCK_WAIT_START = 2
EV_LOCK_WAIT_DONE = 3
EV_DEADLOCK = 4
EV_TXN = 5
EV_CLASS = 6  # DBP_EV_CLASS (probes/classes.h): a statement class's first text

LOCK_WAIT_FAILED = 1  # flags of a wait's end: it ended in an error (a deadlock)
PG_LOCK_WAIT_ERROR = 2  # PostgreSQL: an error ended the wait; its SQLSTATE is in fields[0]

TXN_OUTCOMES = ("commit", "abort")  # indexed by enum dbp_txn_outcome

PROTOCOLS = ("simple", "extended", "prepared")  # indexed by enum dbp_protocol

QF_TRUNCATED = 1
QF_ERROR = 2
QF_NO_TEXT = 4
QF_BREAKDOWN = 8


class Header(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("hook", ctypes.c_uint16),
        ("reserved", ctypes.c_uint16),
    ]


class WaitCount(ctypes.Structure):
    """struct dbp_wait_count."""

    _fields_ = [
        ("event", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("ns", ctypes.c_uint64),
    ]


class BreakdownStruct(ctypes.Structure):
    """struct dbp_breakdown."""

    _fields_ = [
        ("cpu_ns", ctypes.c_uint64),
        ("off_ns", ctypes.c_uint64 * len(OFF_CPU_CLASSES)),
        ("read_ns", ctypes.c_uint64),
        ("write_ns", ctypes.c_uint64),
        ("read_bytes", ctypes.c_uint64),
        ("write_bytes", ctypes.c_uint64),
        ("reads", ctypes.c_uint32),
        ("writes", ctypes.c_uint32),
        ("events", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("wait", WaitCount * WAIT_EVENTS),
        ("workers", ctypes.c_uint64),
        ("workers_cpu_ns", ctypes.c_uint64),
        ("workers_io_ns", ctypes.c_uint64),
        ("workers_read_bytes", ctypes.c_uint64),
    ]


class QueryEventHead(ctypes.Structure):
    """struct dbp_query_event without its text, which follows for text_len bytes."""

    _fields_ = [
        ("hdr", Header),
        ("start_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("protocol", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("text_len", ctypes.c_uint16),
        ("database", ctypes.c_uint32),
        ("breakdown", BreakdownStruct),
    ]


class Totals(ctypes.Structure):
    """struct dbp_totals, one per CPU."""

    _fields_ = [
        ("queries", ctypes.c_uint64),
        ("query_ns", ctypes.c_uint64),
        ("emitted", ctypes.c_uint64),
        ("lost", ctypes.c_uint64),
        ("slow", ctypes.c_uint64),
    ]


class ClassSampleHead(ctypes.Structure):
    """struct dbp_class_sample (probes/classes.h) without its text, which follows for
    text_len bytes."""

    _fields_ = [
        ("hdr", Header),
        ("hash", ctypes.c_uint64),
        ("server", ctypes.c_uint32),
        ("database", ctypes.c_uint32),
        ("protocol", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("text_len", ctypes.c_uint16),
        ("reserved", ctypes.c_uint32),
    ]


class ClassKey(ctypes.Structure):
    """struct dbp_class_key."""

    _fields_ = [
        ("hash", ctypes.c_uint64),
        ("server", ctypes.c_uint32),
        ("database", ctypes.c_uint32),
    ]


class ClassStats(ctypes.Structure):
    """struct dbp_class_stats."""

    _fields_ = [
        ("calls", ctypes.c_uint64),
        ("total_ns", ctypes.c_uint64),
        ("max_ns", ctypes.c_uint64),
        ("errors", ctypes.c_uint64),
        ("slow", ctypes.c_uint64),
        ("sampled", ctypes.c_uint64),
        ("hist", ctypes.c_uint64 * HIST_SLOTS),
    ]


class LockHolder(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("modes", ctypes.c_uint16),
        ("session", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8),
    ]


class LockEventHead(ctypes.Structure):
    """struct dbp_lock_event without its text, which follows for text_len bytes."""

    _fields_ = [
        ("hdr", Header),
        ("ts_ns", ctypes.c_uint64),
        ("field1", ctypes.c_uint32),
        ("field2", ctypes.c_uint32),
        ("field3", ctypes.c_uint32),
        ("field4", ctypes.c_uint16),
        ("locktype", ctypes.c_uint8),
        ("mode", ctypes.c_uint8),
        ("holders", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("text_len", ctypes.c_uint16),
        ("reserved", ctypes.c_uint32),
        ("holder", LockHolder * LOCK_HOLDERS),
    ]


class TxnEvent(ctypes.Structure):
    """struct dbp_txn_event."""

    _fields_ = [
        ("hdr", Header),
        ("start_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("idle_ns", ctypes.c_uint64),
        ("backend_id", ctypes.c_uint32),
        ("lxid", ctypes.c_uint32),
        ("statements", ctypes.c_uint16),
        ("outcome", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("text_len", ctypes.c_uint16 * TXN_STATEMENTS),
        ("reserved", ctypes.c_uint16),
        ("text", (ctypes.c_char * TXN_TEXT_MAX) * TXN_STATEMENTS),
    ]


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Where a statement's time went, as the kernel counted it (probes/waits.h)."""

    cpu_ns: int
    off_ns: dict[str, int]  # by OFF_CPU_CLASSES
    reads: int = 0
    read_bytes: int = 0
    read_ns: int = 0
    writes: int = 0
    write_bytes: int = 0
    write_ns: int = 0
    waits: tuple[tuple[int, int, int], ...] = ()  # (wait_event_info, count, ns)
    # PostgreSQL's parallel workers for the statement: beside its own time, not in it.
    workers: int = 0
    workers_cpu_ns: int = 0
    workers_io_ns: int = 0
    workers_read_bytes: int = 0

    @property
    def total_ns(self) -> int:
        return self.cpu_ns + sum(self.off_ns.values())

    def __add__(self, other: "Breakdown") -> "Breakdown":
        """Two breakdowns summed (a class's statements), wait event by wait event."""
        return self._combined(other, 1)

    def __sub__(self, earlier: "Breakdown") -> "Breakdown":
        return self._combined(earlier, -1)

    def _combined(self, other: "Breakdown", sign: int) -> "Breakdown":
        off = {name: self.off_ns.get(name, 0) + sign * other.off_ns.get(name, 0)
               for name in OFF_CPU_CLASSES}
        numbers = {name: getattr(self, name) + sign * getattr(other, name) for name in _SUMMED}
        waits = {event: [count, ns] for event, count, ns in self.waits}
        for event, count, ns in other.waits:
            summed = waits.setdefault(event, [0, 0])
            summed[0] += sign * count
            summed[1] += sign * ns
        kept = tuple((event, count, ns) for event, (count, ns) in waits.items() if count or ns)
        return Breakdown(off_ns=off, waits=kept, **numbers)


_SUMMED = ("cpu_ns", "reads", "read_bytes", "read_ns", "writes", "write_bytes", "write_ns", "workers",
           "workers_cpu_ns", "workers_io_ns", "workers_read_bytes")


@dataclass(frozen=True, slots=True)
class RawQuery:
    """A completed statement as the kernel saw it: monotonic times, raw text bytes."""

    pid: int
    tid: int
    hook: int
    start_ns: int
    end_ns: int
    protocol: str
    flags: int
    text: bytes
    database_oid: int = 0  # PostgreSQL: the backend's database; 0 when unknown
    breakdown: Breakdown | None = None  # when the trace counts it

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class RawLockEvent:
    """A lock wait's start or end, or a deadlock, as the kernel saw it."""

    kind: int  # EV_LOCK_WAIT_START | EV_LOCK_WAIT_DONE | EV_DEADLOCK
    pid: int
    tid: int
    hook: int
    ts_ns: int
    fields: tuple[int, int, int, int]  # LOCKTAG field1..field4
    locktype: int
    mode: int
    flags: int
    holders: tuple[tuple[int, int, bool], ...]  # (pid, mode bits, session lock)
    text: bytes  # the waiter's statement (wait start only)


@dataclass(frozen=True, slots=True)
class RawTxn:
    """A finished transaction as the kernel saw it."""

    pid: int
    tid: int
    hook: int
    start_ns: int
    end_ns: int
    idle_ns: int
    backend_id: int
    lxid: int  # 0 when the recipe cannot see it
    statements: int
    outcome: str
    texts: tuple[bytes, ...]  # the first statements, each cut to TXN_TEXT_MAX

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class RawClassSample:
    """The first text the kernel saw of a statement class (server, database, hash)."""

    pid: int  # the process that ran it
    hook: int
    hash: int
    server: int  # PostgreSQL: the postmaster's pid; MySQL: the server's
    database_oid: int  # PostgreSQL: the database; 0 when unknown
    protocol: str
    flags: int  # QF_TRUNCATED, QF_NO_TEXT
    text: bytes


Record = RawQuery | RawLockEvent | RawTxn | RawClassSample

_QUERY_HEAD_SIZE = ctypes.sizeof(QueryEventHead)
_LOCK_HEAD_SIZE = ctypes.sizeof(LockEventHead)
_LOCK_SHORT_SIZE = LockEventHead.holder.offset  # wait done and deadlock records stop here
_TXN_SIZE = ctypes.sizeof(TxnEvent)
_CLASS_HEAD_SIZE = ctypes.sizeof(ClassSampleHead)


def decode(data: int, size: int) -> Record | None:
    """The record at address `data` (from the ring buffer callback), None for unknown kinds."""
    kind = Header.from_address(data).kind
    if kind == EV_QUERY and size >= _QUERY_HEAD_SIZE:
        return decode_query(ctypes.string_at(data, size))
    if kind in (EV_LOCK_WAIT_START, EV_LOCK_WAIT_DONE, EV_DEADLOCK) and size >= _LOCK_SHORT_SIZE:
        return decode_lock(ctypes.string_at(data, size))
    if kind == EV_TXN and size >= _TXN_SIZE:
        return decode_txn(ctypes.string_at(data, size))
    if kind == EV_CLASS and size >= _CLASS_HEAD_SIZE:
        return decode_class_sample(ctypes.string_at(data, size))
    return None


def decode_class_sample(record: bytes) -> RawClassSample:
    head = ClassSampleHead.from_buffer_copy(record[:_CLASS_HEAD_SIZE])
    return RawClassSample(
        pid=head.hdr.pid, hook=head.hdr.hook, hash=head.hash, server=head.server,
        database_oid=head.database,
        protocol=PROTOCOLS[head.protocol] if head.protocol < len(PROTOCOLS) else "unknown",
        flags=head.flags, text=record[_CLASS_HEAD_SIZE:_CLASS_HEAD_SIZE + head.text_len],
    )


def encode_class_sample(raw: RawClassSample) -> bytes:
    """The inverse of decode_class_sample, for recorded streams in tests."""
    head = ClassSampleHead(Header(EV_CLASS, raw.pid, raw.pid, raw.hook, 0), raw.hash, raw.server,
                           raw.database_oid, PROTOCOLS.index(raw.protocol), raw.flags,
                           len(raw.text), 0)
    return bytes(head) + raw.text


def decode_lock(record: bytes) -> RawLockEvent:
    head = LockEventHead.from_buffer_copy(record.ljust(_LOCK_HEAD_SIZE, b"\0"))
    holders = tuple((h.pid, h.modes, bool(h.session))
                    for h in head.holder[: min(head.holders, LOCK_HOLDERS)] if h.pid)
    text = record[_LOCK_HEAD_SIZE:_LOCK_HEAD_SIZE + head.text_len]
    return RawLockEvent(
        kind=head.hdr.kind, pid=head.hdr.pid, tid=head.hdr.tid, hook=head.hdr.hook,
        ts_ns=head.ts_ns, fields=(head.field1, head.field2, head.field3, head.field4),
        locktype=head.locktype, mode=head.mode, flags=head.flags, holders=holders, text=text,
    )


def decode_txn(record: bytes) -> RawTxn:
    event = TxnEvent.from_buffer_copy(record)
    kept = min(event.statements, TXN_STATEMENTS)
    texts = tuple(bytes(event.text[index])[: event.text_len[index]] for index in range(kept))
    outcome = TXN_OUTCOMES[event.outcome] if event.outcome < len(TXN_OUTCOMES) else "unknown"
    return RawTxn(
        pid=event.hdr.pid, tid=event.hdr.tid, hook=event.hdr.hook, start_ns=event.start_ns,
        end_ns=event.end_ns, idle_ns=event.idle_ns, backend_id=event.backend_id, lxid=event.lxid,
        statements=event.statements, outcome=outcome, texts=texts,
    )


# QueryEventHead's layout as struct formats: the per-event decoder, faster than ctypes.
_QUERY_FIXED = struct.Struct("<IIIHHQQBBHI")
_BREAKDOWN = struct.Struct(f"<Q{len(OFF_CPU_CLASSES)}QQQQQIIII" + "IIQ" * WAIT_EVENTS + "QQQQ")
_QUERY_HEAD = struct.Struct(_QUERY_FIXED.format + _BREAKDOWN.format[1:])
assert _QUERY_HEAD.size == ctypes.sizeof(QueryEventHead)
assert _BREAKDOWN.size == ctypes.sizeof(BreakdownStruct)


def decode_query(record: bytes) -> RawQuery:
    (_kind, pid, tid, hook, _reserved, start_ns, end_ns, protocol, flags, text_len,
     database) = _QUERY_FIXED.unpack_from(record)
    breakdown = None
    if flags & QF_BREAKDOWN:
        breakdown = decode_breakdown(_BREAKDOWN.unpack_from(record, _QUERY_FIXED.size))
    return RawQuery(
        pid=pid, tid=tid, hook=hook, start_ns=start_ns, end_ns=end_ns,
        protocol=PROTOCOLS[protocol] if protocol < len(PROTOCOLS) else "unknown",
        flags=flags, text=record[_QUERY_HEAD.size:_QUERY_HEAD.size + text_len],
        database_oid=database, breakdown=breakdown,
    )


def decode_breakdown(values: tuple[int, ...]) -> Breakdown:
    classes = len(OFF_CPU_CLASSES)
    cpu_ns, off = values[0], values[1:1 + classes]
    (read_ns, write_ns, read_bytes, write_bytes, reads, writes, events,
     _reserved) = values[1 + classes:9 + classes]
    entries = values[9 + classes:9 + classes + 3 * WAIT_EVENTS]
    waits = tuple((entries[3 * i], entries[3 * i + 1], entries[3 * i + 2])
                  for i in range(min(events, WAIT_EVENTS)))
    workers, workers_cpu_ns, workers_io_ns, workers_read_bytes = values[9 + classes + 3 * WAIT_EVENTS:]
    return Breakdown(cpu_ns=cpu_ns, off_ns=dict(zip(OFF_CPU_CLASSES, off)), reads=reads,
                     read_bytes=read_bytes, read_ns=read_ns, writes=writes,
                     write_bytes=write_bytes, write_ns=write_ns, waits=waits, workers=workers,
                     workers_cpu_ns=workers_cpu_ns, workers_io_ns=workers_io_ns,
                     workers_read_bytes=workers_read_bytes)


def encode_query(raw: RawQuery) -> bytes:
    """The inverse of decode_query: for recorded event streams in tests and replays."""
    protocol = PROTOCOLS.index(raw.protocol)
    head = QueryEventHead(Header(EV_QUERY, raw.pid, raw.tid, raw.hook, 0), raw.start_ns,
                          raw.end_ns, protocol, raw.flags, len(raw.text), raw.database_oid)
    if raw.breakdown is not None:
        head.breakdown = _encode_breakdown(raw.breakdown)
    return bytes(head) + raw.text


def _encode_breakdown(breakdown: Breakdown) -> BreakdownStruct:
    encoded = BreakdownStruct(cpu_ns=breakdown.cpu_ns, read_ns=breakdown.read_ns,
                              write_ns=breakdown.write_ns, read_bytes=breakdown.read_bytes,
                              write_bytes=breakdown.write_bytes, reads=breakdown.reads,
                              writes=breakdown.writes, events=len(breakdown.waits),
                              workers=breakdown.workers, workers_cpu_ns=breakdown.workers_cpu_ns,
                              workers_io_ns=breakdown.workers_io_ns,
                              workers_read_bytes=breakdown.workers_read_bytes)
    for index, name in enumerate(OFF_CPU_CLASSES):
        encoded.off_ns[index] = breakdown.off_ns.get(name, 0)
    for index, (event, count, ns) in enumerate(breakdown.waits[:WAIT_EVENTS]):
        encoded.wait[index] = WaitCount(event, count, ns)
    return encoded
