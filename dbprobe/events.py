"""The records the BPF programs send, mirrored once from ``probes/dbprobe.h``.

Decoding turns a ring-buffer record into a plain frozen record; nothing here knows what a
query means, only how its bytes are laid out.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

TEXT_MAX = 2048  # DBP_TEXT_MAX
HIST_SLOTS = 64  # DBP_HIST_SLOTS

EV_QUERY = 1

PROTOCOLS = ("simple", "extended", "prepared")  # indexed by enum dbp_protocol

QF_TRUNCATED = 1
QF_ERROR = 2
QF_NO_TEXT = 4


class Header(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("hook", ctypes.c_uint16),
        ("reserved", ctypes.c_uint16),
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
        ("reserved", ctypes.c_uint32),
    ]


class Totals(ctypes.Structure):
    """struct dbp_totals, one per CPU."""

    _fields_ = [
        ("queries", ctypes.c_uint64),
        ("query_ns", ctypes.c_uint64),
        ("emitted", ctypes.c_uint64),
        ("lost", ctypes.c_uint64),
    ]


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

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


_QUERY_HEAD_SIZE = ctypes.sizeof(QueryEventHead)


def decode(data: int, size: int) -> RawQuery | None:
    """The record at address `data` (from the ring buffer callback), None for unknown kinds."""
    header = Header.from_address(data)
    if header.kind == EV_QUERY and size >= _QUERY_HEAD_SIZE:
        return decode_query(ctypes.string_at(data, size))
    return None


def decode_query(record: bytes) -> RawQuery:
    head = QueryEventHead.from_buffer_copy(record)
    text = record[_QUERY_HEAD_SIZE:_QUERY_HEAD_SIZE + head.text_len]
    protocol = PROTOCOLS[head.protocol] if head.protocol < len(PROTOCOLS) else "unknown"
    return RawQuery(
        pid=head.hdr.pid, tid=head.hdr.tid, hook=head.hdr.hook,
        start_ns=head.start_ns, end_ns=head.end_ns, protocol=protocol,
        flags=head.flags, text=text,
    )


def encode_query(raw: RawQuery) -> bytes:
    """The inverse of decode_query: for recorded event streams in tests and replays."""
    protocol = PROTOCOLS.index(raw.protocol)
    head = QueryEventHead(Header(EV_QUERY, raw.pid, raw.tid, raw.hook, 0), raw.start_ns,
                          raw.end_ns, protocol, raw.flags, len(raw.text), 0)
    return bytes(head) + raw.text
