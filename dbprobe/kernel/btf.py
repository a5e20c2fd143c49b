"""Offsets of kernel struct fields, from the running kernel's BTF (/sys/kernel/btf/vmlinux).

The kernel headers BCC compiles against need not be the running kernel's (a distribution's
headers package lags a custom kernel), so a struct layout is taken from the kernel itself.
Only what the BTF format needs to walk its types is read: each type's kind and length,
and a struct's members.
"""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
_MAGIC = 0xEB9F
_STRUCT = 4
# Bytes that follow a type's 12-byte head, by kind: fixed, and per entry of its vlen.
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}  # INT, ARRAY, VAR, DECL_TAG
_PER_ENTRY = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64


def member_offset(struct_name: str, member: str, path: Path = VMLINUX_BTF) -> int | None:
    """The byte offset of `member` in the kernel's `struct_name`; None when unknown."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return _member_offset(data, struct_name, member)


def _member_offset(data: bytes, struct_name: str, member: str) -> int | None:
    if len(data) < 24:
        return None
    magic, _version, _flags, header_len = struct.unpack_from("<HBBI", data)
    if magic != _MAGIC:
        return None
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
    types = header_len + type_off
    strings = header_len + str_off

    def name(offset: int) -> bytes:
        start = strings + offset
        return data[start:data.index(b"\0", start)]

    position, end = types, types + type_len
    while position + 12 <= end:
        name_off, info, _size = struct.unpack_from("<III", data, position)
        kind, vlen, bitfield = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        body = position + 12
        if kind == _STRUCT and name(name_off) == struct_name.encode():
            for index in range(vlen):
                member_name, _type, offset = struct.unpack_from("<III", data, body + 12 * index)
                if name(member_name) == member.encode():
                    bits = offset & 0xFFFFFF if bitfield else offset
                    return bits // 8 if bits % 8 == 0 else None
        position = body + _FIXED.get(kind, 0) + _PER_ENTRY.get(kind, 0) * vlen
    return None
