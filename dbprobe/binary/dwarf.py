"""Struct layouts from DWARF debug information, where it is installed.

Recipes read struct members at hand-written offsets (``4@8(arg2)``: 4 bytes at 8 past the
second argument). Where a binary's debug information is at hand, in the binary itself or
in a separate debug file of the same build (ElfBinary.debug_info_path), the members those
offsets stand for can be looked up here, in the manner of pgtracer, and the offsets
checked against them.

A server's DWARF runs to tens of megabytes, and pyelftools parses a few hundred thousand
entries a second, so a type is looked for only in the units whose bytes mention its name:
inline, or as an offset into .debug_str. Debug files compressed by dwz
(.gnu_debugaltlink) keep their types in another file, which is not read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.compileunit import CompileUnit
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.elf.elffile import ELFFile

from dbprobe.binary.elf import ElfBinary
from dbprobe.errors import DbprobeError

_TYPE_TAGS = frozenset({"DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type",
                        "DW_TAG_typedef"})
_AGGREGATE_TAGS = frozenset({"DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type"})
_SCOPE_TAGS = frozenset({"DW_TAG_namespace", *_AGGREGATE_TAGS})
# What lies between a member and the type it has: typedef LOCKTAG, const char *...
_QUALIFIER_TAGS = frozenset({"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                             "DW_TAG_restrict_type", "DW_TAG_atomic_type"})
_POINTER_TAGS = frozenset({"DW_TAG_pointer_type", "DW_TAG_reference_type",
                           "DW_TAG_rvalue_reference_type", "DW_TAG_ptr_to_member_type"})


class DwarfError(DbprobeError):
    """Debug information that cannot be read, or that lacks the type or member asked for."""


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a struct or union, reached through a path of members."""

    path: str  # "LOCALLOCK.tag.mode"
    offset: int  # from the start of the outermost type
    size: int | None  # in bytes; None when DWARF does not say (an array of unknown length)


class DebugInfo:
    """The DWARF of one file, loaded once; types are looked up by name as they are asked for."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as file:
                elf = ELFFile(file)
                if elf.get_section_by_name(".gnu_debugaltlink") is not None:
                    raise DwarfError(f"{path}: debug information compressed by dwz is not read")
                if not elf.has_dwarf_info(strict=True):  # .eh_frame alone is not DWARF
                    raise DwarfError(f"{path} has no DWARF debug information")
                # pyelftools copies each section into memory: the file can be closed.
                self._dwarf = elf.get_dwarf_info(follow_links=False)
        except OSError as error:
            raise DwarfError(f"cannot read {path}: {error.strerror}") from None
        except (ELFError, DWARFError) as error:
            raise DwarfError(f"{path}: corrupt debug information ({error})") from None
        self._types: dict[str, DIE | None] = {}

    @classmethod
    def of(cls, binary: ElfBinary) -> DebugInfo | None:
        """The debug information of a binary, or None when none is installed."""
        path = binary.debug_info_path()
        return cls(path) if path is not None else None

    def type_size(self, name: str) -> int:
        """sizeof(name), for a struct, union, class or typedef name ("ns::Name" in C++)."""
        size = _byte_size(self._type(name))
        if size is None:
            raise DwarfError(f"{self.path}: the size of {name} is not recorded")
        return size

    def member(self, path: str) -> Member:
        """The member ``TYPE.member.member...``, e.g. "COM_DATA.com_query.length"."""
        type_name, *members = path.split(".")
        if not members:
            raise DwarfError(f"{path!r} names no member: TYPE.member")
        container = _strip_qualifiers(self._type(type_name))
        offset = 0
        for depth, name in enumerate(members):
            where = ".".join([type_name, *members[:depth]])
            if container.tag not in _AGGREGATE_TAGS:
                raise DwarfError(f"{self.path}: {where} is no struct or union")
            found = _find_member(container, name)
            if found is None:
                raise DwarfError(f"{self.path}: {where} has no member {name}")
            member_die, member_offset = found
            offset += member_offset
            container = _strip_qualifiers(member_die.get_DIE_from_attribute("DW_AT_type"))
        return Member(path=path, offset=offset, size=_byte_size(container))

    # --- finding a type by name ---------------------------------------------------

    def _type(self, name: str) -> DIE:
        if name not in self._types:
            self._types[name] = self._search(name)
        found = self._types[name]
        if found is None:
            raise DwarfError(f"{self.path}: no type {name} in the debug information")
        return found

    def _search(self, name: str) -> DIE | None:
        scopes = name.split("::")
        for unit in self._units_mentioning(scopes[-1]):
            found = _definition_in(unit.get_top_DIE(), scopes)
            if found is not None:
                return found
        return None

    def _units_mentioning(self, name: str) -> Iterator[CompileUnit]:
        """The units whose bytes hold ``name`` inline or one of its .debug_str offsets."""
        dwarf = self._dwarf
        text = name.encode() + b"\0"
        units = dwarf.iter_CUs()
        if dwarf.debug_str_offsets_sec is not None:  # names by index: no bytes to look for
            yield from units
            return
        strings = dwarf.debug_str_sec.stream.getvalue() if dwarf.debug_str_sec else b""
        string_offsets = list(_occurrences(strings, text))
        info = dwarf.debug_info_sec.stream.getvalue()
        order = "<" if dwarf.config.little_endian else ">"
        for unit in units:
            body = info[unit.cu_offset : unit.cu_offset + unit.size]
            word = order + ("Q" if unit.structs.dwarf_format == 64 else "I")
            if text in body or any(struct.pack(word, at) in body for at in string_offsets):
                yield unit


def _occurrences(data: bytes, text: bytes) -> Iterator[int]:
    """Every offset where ``text`` starts: a string's tail may be shared by a longer one."""
    position = data.find(text)
    while position >= 0:
        yield position
        position = data.find(text, position + 1)


def _definition_in(scope: DIE, names: list[str]) -> DIE | None:
    """The definition of the type ``names`` (scopes, then the type) among ``scope``'s children."""
    first, rest = names[0], names[1:]
    for child in scope.iter_children():
        if _name(child) != first or _is_declaration(child):
            continue
        if not rest and child.tag in _TYPE_TAGS:
            if child.tag == "DW_TAG_typedef" and _is_declaration(_strip_qualifiers(child)):
                continue  # typedef struct X X; before, or without, X's definition
            return child
        if rest and child.tag in _SCOPE_TAGS:
            found = _definition_in(child, rest)
            if found is not None:
                return found
    return None


def _is_declaration(die: DIE) -> bool:
    return "DW_AT_declaration" in die.attributes


def _name(die: DIE) -> str | None:
    attribute = die.attributes.get("DW_AT_name")
    if attribute is None:
        return None
    value = attribute.value
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


# --- members --------------------------------------------------------------------------


def _find_member(container: DIE, name: str) -> tuple[DIE, int] | None:
    """The member ``name`` and its offset, looking into anonymous structs and unions too."""
    for child in container.iter_children():
        if child.tag != "DW_TAG_member":
            continue
        if _name(child) == name:
            return child, _member_offset(child)
        if _name(child) is None and "DW_AT_type" in child.attributes:
            inner = _strip_qualifiers(child.get_DIE_from_attribute("DW_AT_type"))
            if inner.tag in _AGGREGATE_TAGS and (found := _find_member(inner, name)) is not None:
                return found[0], _member_offset(child) + found[1]
    return None


def _member_offset(member: DIE) -> int:
    if "DW_AT_bit_size" in member.attributes or "DW_AT_data_bit_offset" in member.attributes:
        raise DwarfError(f"member {_name(member)} is a bit field: no byte offset to check")
    location = member.attributes.get("DW_AT_data_member_location")
    if location is None:
        return 0  # a union's members, and the first member in some producers' output
    if isinstance(location.value, int):
        return location.value
    # DWARF 2 spells a constant offset as an expression: DW_OP_plus_uconst N.
    operations = DWARFExprParser(member.cu.structs).parse_expr(location.value)
    if len(operations) == 1 and operations[0].op_name == "DW_OP_plus_uconst":
        return operations[0].args[0]
    raise DwarfError(f"member {_name(member)} has a computed location (virtual base?)")


def _strip_qualifiers(die: DIE) -> DIE:
    while die.tag in _QUALIFIER_TAGS and "DW_AT_type" in die.attributes:
        die = die.get_DIE_from_attribute("DW_AT_type")
    return die


def _byte_size(die: DIE) -> int | None:
    die = _strip_qualifiers(die)
    size = die.attributes.get("DW_AT_byte_size")
    if size is not None and isinstance(size.value, int):
        return size.value
    if die.tag in _POINTER_TAGS:
        return die.cu.header.address_size
    if die.tag == "DW_TAG_array_type" and "DW_AT_type" in die.attributes:
        return _array_size(die)
    return None


def _array_size(array: DIE) -> int | None:
    element = _byte_size(array.get_DIE_from_attribute("DW_AT_type"))
    if element is None:
        return None
    total = element
    for dimension in array.iter_children():
        if dimension.tag != "DW_TAG_subrange_type":
            continue
        count = dimension.attributes.get("DW_AT_count")
        upper = dimension.attributes.get("DW_AT_upper_bound")
        if count is not None and isinstance(count.value, int):
            total *= count.value
        elif upper is not None and isinstance(upper.value, int):
            total *= upper.value + 1
        else:
            return None
    return total
