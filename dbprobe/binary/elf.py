"""ELF inspection: USDT probe notes, symbols, file offsets and version strings.

pyelftools reads the ELF and section headers; the notes and symbol tables are
decoded here with ``struct``, which is many times faster than iterating
pyelftools' symbol objects over the tens of thousands of symbols of a
database server.

An ElfBinary holds no open file: each query opens the file, reads the bytes it
needs and closes it, and what it decoded is cached on the object.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile

from dbprobe.binary.arch import Architecture, architecture_for
from dbprobe.binary.argspec import ArgSpec, ArgSpecError, parse_argspecs
from dbprobe.errors import DbprobeError

_MACHINES = {
    "EM_X86_64": "x86_64",
    "EM_386": "i386",
    "EM_AARCH64": "aarch64",
    "EM_ARM": "arm",
    "EM_PPC64": "ppc64",
    "EM_S390": "s390",
    "EM_RISCV": "riscv",
}

STAPSDT_SECTION = ".note.stapsdt"  # the section of USDT notes
_STAPSDT_BASE_SECTION = ".stapsdt.base"
_STAPSDT_OWNER = b"stapsdt"
_NT_STAPSDT = 3
_GNU_OWNER = b"GNU"
_NT_GNU_BUILD_ID = 3

_STT_OBJECT = 1
_STT_FUNC = 2
_STB_LOCAL = 0
_SHN_UNDEF = 0
_SYMBOL_KINDS = {_STT_FUNC: "func", _STT_OBJECT: "object"}
_DEBUG_FILE_SOURCE = "debug file"
_SYMBOL_SOURCES = (".symtab", ".dynsym", _DEBUG_FILE_SOURCE)

_DEBUG_DIRECTORY = "usr/lib/debug"
_DWARF_SECTIONS = (".debug_info", ".zdebug_info")
_VERSION_SECTIONS = (".rodata", ".data")


class ElfError(DbprobeError):
    """A binary that cannot be inspected: missing, unreadable, not ELF, corrupt."""


@dataclass(frozen=True, slots=True)
class UsdtProbe:
    """One site of a USDT probe, from one note of ``.note.stapsdt``.

    Addresses are virtual addresses of the binary (relative to its load address
    when it is position-independent); offsets are file offsets, which the
    kernel's uprobe API takes for the probe site and for the semaphore (its
    ``ref_ctr_offset``). A semaphore placed in .bss past the file-backed pages
    of its segment gets an offset computed the same way, but the kernel cannot
    find such a semaphore in the file mapping and refuses the probe.
    """

    provider: str
    name: str
    address: int
    file_offset: int
    semaphore: int  # 0 if none
    semaphore_offset: int  # 0 if none
    args: tuple[ArgSpec, ...]
    arg_text: str
    # Why args is empty although arg_text is not: the probe can still be
    # attached to, but its arguments cannot be read.
    arg_error: str | None = None

    @property
    def has_semaphore(self) -> bool:
        return self.semaphore != 0


@dataclass(frozen=True, slots=True)
class Symbol:
    """A function or data object of the binary, for uprobes and global reads."""

    name: str
    address: int
    size: int
    kind: str  # "func" | "object"
    file_offset: int  # where a uprobe on a function goes
    source: str  # ".symtab" | ".dynsym" | "debug file"


@dataclass(frozen=True, slots=True)
class _Section:
    name: str
    type: str
    address: int
    offset: int
    size: int
    link: int
    alignment: int

    @property
    def has_file_data(self) -> bool:
        return self.type != "SHT_NOBITS"


@dataclass(frozen=True, slots=True)
class _LoadSegment:
    address: int
    memory_size: int
    offset: int

    def contains(self, address: int) -> bool:
        return self.address <= address < self.address + self.memory_size


@dataclass(frozen=True, slots=True)
class _Layout:
    """What the headers say, plus the identity of the file (build-id, debuglink)."""

    machine: str
    address_size: int
    byteorder: str  # struct prefix, "<" or ">"
    is_position_independent: bool
    sections: tuple[_Section, ...]
    segments: tuple[_LoadSegment, ...]
    build_id: str | None
    debuglink: str | None
    debuglink_crc: int | None

    def section(self, name: str) -> _Section | None:
        return next((section for section in self.sections if section.name == name), None)

    def segment_for(self, address: int) -> _LoadSegment | None:
        return next((segment for segment in self.segments if segment.contains(address)), None)


@dataclass(frozen=True, slots=True)
class _ProbeNote:
    pc: int
    base: int
    semaphore: int
    provider: str
    name: str
    arg_text: str


class ElfBinary:
    """An ELF file on disk, inspected lazily.

    ``root`` is the filesystem root the binary belongs to, "/" or for a server in
    a container ``/proc/PID/root``: separate debug files are looked up inside it.
    """

    def __init__(self, path: str | os.PathLike[str], root: str = "/") -> None:
        self.path = os.fspath(path)
        self.root = root
        with _open_binary(self.path) as file:
            self._layout = _read_layout(file, self.path)
        self._probes: list[UsdtProbe] | None = None
        self._symbol_tables: dict[str, dict[str, _SymbolEntry]] = {}

    def __repr__(self) -> str:
        return f"ElfBinary({self.path!r}, root={self.root!r})"

    def __enter__(self) -> ElfBinary:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the cached tables; the binary holds no open file."""
        self._probes = None
        self._symbol_tables.clear()

    @property
    def machine(self) -> str:
        return self._layout.machine

    @property
    def architecture(self) -> Architecture | None:
        """Its CPU architecture's registers and note syntax; None when dbprobe has none for it."""
        return architecture_for(self.machine)

    @property
    def is_pie(self) -> bool:
        """True when addresses are relative to the load address (PIE or shared library)."""
        return self._layout.is_position_independent

    @property
    def build_id(self) -> str | None:
        return self._layout.build_id

    @property
    def debuglink(self) -> str | None:
        return self._layout.debuglink

    # --- addresses ----------------------------------------------------------

    def vaddr_to_offset(self, vaddr: int) -> int:
        """The file offset of a virtual address, through the PT_LOAD segment holding it."""
        segment = self._layout.segment_for(vaddr)
        if segment is None:
            raise ElfError(f"{self.path}: address {vaddr:#x} is in no loadable segment")
        return vaddr - segment.address + segment.offset

    # --- USDT probes --------------------------------------------------------

    def usdt_probes(self) -> list[UsdtProbe]:
        """Every probe site of the binary, in note order; one entry per site."""
        if self._probes is None:
            self._probes = [self._probe_from_note(note) for note in self._read_probe_notes()]
        return list(self._probes)

    def usdt_probe_sites(self, provider: str, name: str) -> list[UsdtProbe]:
        """The sites of one probe, e.g. ("postgresql", "query__start")."""
        return [
            probe
            for probe in self.usdt_probes()
            if probe.provider == provider and probe.name == name
        ]

    def _read_probe_notes(self) -> list[_ProbeNote]:
        layout = self._layout
        notes = []
        for section in layout.sections:
            if section.name != STAPSDT_SECTION or section.type != "SHT_NOTE":
                continue
            data = _read_section_bytes(self.path, section)
            for owner, note_type, desc in _iter_notes(data, section, layout.byteorder, self.path):
                if owner == _STAPSDT_OWNER and note_type == _NT_STAPSDT:
                    notes.append(
                        _decode_probe_note(desc, layout.address_size, layout.byteorder, self.path)
                    )
        return notes

    def _probe_from_note(self, note: _ProbeNote) -> UsdtProbe:
        # prelink moves the binary and updates .stapsdt.base but not the notes:
        # the recorded base tells how far everything moved.
        base_section = self._layout.section(_STAPSDT_BASE_SECTION)
        shift = base_section.address - note.base if base_section is not None and note.base else 0
        address = note.pc + shift
        semaphore = note.semaphore + shift if note.semaphore else 0
        args, arg_error = self._decode_args(note.arg_text)
        return UsdtProbe(
            provider=note.provider,
            name=note.name,
            address=address,
            file_offset=self.vaddr_to_offset(address),
            semaphore=semaphore,
            semaphore_offset=self.vaddr_to_offset(semaphore) if semaphore else 0,
            args=args,
            arg_text=note.arg_text,
            arg_error=arg_error,
        )

    def _decode_args(self, arg_text: str) -> tuple[tuple[ArgSpec, ...], str | None]:
        arch = self.architecture
        if arch is None:
            if not arg_text.strip():
                return (), None
            return (), f"arguments of {self.machine} probes cannot be decoded"
        try:
            return parse_argspecs(arg_text, arch), None
        except ArgSpecError as error:
            return (), str(error)

    # --- symbols ------------------------------------------------------------

    def symbol(self, name: str) -> Symbol | None:
        """A function or object by exact name: .symtab, then .dynsym, then a debug file."""
        for source in _SYMBOL_SOURCES:
            entry = self._symbol_table(source).get(name)
            if entry is not None:
                return _symbol(name, entry, source)
        return None

    def symbols_matching(self, pattern: str, kind: str | None = None) -> list[Symbol]:
        """Symbols whose name matches a regular expression (``re.search``), sorted by name.

        A plain name matches as a substring, so "dispatch_command" finds the
        mangled C++ ``_Z16dispatch_command...``; anchor with "^" for a prefix.
        ``kind`` ("func" or "object") narrows the result.
        """
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise ElfError(f"invalid symbol pattern {pattern!r}: {error}") from None
        found: dict[str, Symbol] = {}
        for source in _SYMBOL_SOURCES:
            for name, entry in self._symbol_table(source).items():
                if name not in found and kind in (None, entry.kind) and regex.search(name):
                    found[name] = _symbol(name, entry, source)
        return [found[name] for name in sorted(found)]

    def _symbol_table(self, source: str) -> dict[str, _SymbolEntry]:
        table = self._symbol_tables.get(source)
        if table is None:
            table = self._load_symbol_table(source)
            self._symbol_tables[source] = table
        return table

    def _load_symbol_table(self, source: str) -> dict[str, _SymbolEntry]:
        if source != _DEBUG_FILE_SOURCE:
            return _read_symbol_table(self.path, self._layout, source, self._layout)
        if self._layout.section(".symtab") is not None:
            return {}  # a full .symtab already holds what a debug file would add
        debug_file = self._find_debug_file((".symtab",))
        if debug_file is None:
            return {}
        path, layout = debug_file
        # The debug file's sections are empty shells: offsets come from this binary's segments.
        return _read_symbol_table(path, layout, ".symtab", self._layout)

    # --- separate debug files -----------------------------------------------

    def debug_info_path(self) -> str | None:
        """The file holding this binary's DWARF debug information: the binary itself, or a
        separate debug file of this very build (by build-id or .gnu_debuglink); None if
        neither is installed."""
        if any(_has_file_data(self._layout, name) for name in _DWARF_SECTIONS):
            return self.path
        debug_file = self._find_debug_file(_DWARF_SECTIONS)
        return debug_file[0] if debug_file is not None else None

    def _find_debug_file(self, sections: tuple[str, ...]) -> tuple[str, _Layout] | None:
        """The first debug file of this build that has one of ``sections``, and its layout."""
        for candidate in self._debug_file_candidates():
            layout = self._matching_debug_layout(candidate)
            if layout is not None and any(_has_file_data(layout, name) for name in sections):
                return candidate, layout
        return None

    def _debug_file_candidates(self) -> Iterator[str]:
        build_id = self._layout.build_id
        if build_id and len(build_id) > 2:
            yield os.path.join(
                self.root, _DEBUG_DIRECTORY, ".build-id", build_id[:2], build_id[2:] + ".debug"
            )
        link = self._layout.debuglink
        if link:
            binary_directory = os.path.dirname(os.path.abspath(self.path))
            yield os.path.join(binary_directory, link)
            yield os.path.join(binary_directory, ".debug", link)
            directory_in_root = os.path.dirname(_path_in_root(self.path, self.root))
            yield os.path.join(self.root, _DEBUG_DIRECTORY, directory_in_root.lstrip("/"), link)

    def _matching_debug_layout(self, candidate: str) -> _Layout | None:
        """The candidate's layout if it is a debug file of this very build."""
        try:
            if not os.path.isfile(candidate) or os.path.samefile(candidate, self.path):
                return None
            with _open_binary(candidate) as file:
                layout = _read_layout(file, candidate)
            if self._layout.build_id and layout.build_id:
                return layout if layout.build_id == self._layout.build_id else None
            if self._layout.debuglink_crc is not None:
                return layout if _file_crc32(candidate) == self._layout.debuglink_crc else None
        except (ElfError, OSError):
            pass  # unreadable or not ELF: not our debug file
        return None

    # --- version strings ----------------------------------------------------

    def find_version_string(self, regex: bytes) -> str | None:
        """The first match of ``regex`` in .rodata (then .data), e.g. rb"PostgreSQL (\\d+\\.\\d+)".

        Returns the first group that matched when the pattern has groups, else the whole match.
        """
        compiled = re.compile(regex)
        for name in _VERSION_SECTIONS:
            section = self._layout.section(name)
            if section is None or not section.has_file_data:
                continue
            match = compiled.search(_read_section_bytes(self.path, section))
            if match:
                found = next(
                    (group for group in match.groups() if group is not None), match.group(0)
                )
                return found.decode("utf-8", errors="replace")
        return None


# --- reading files ----------------------------------------------------------


def _open_binary(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as error:
        raise ElfError(f"cannot read {path}: {error.strerror}") from None


def _read_section_bytes(path: str, section: _Section) -> bytes:
    if not section.has_file_data or section.size == 0:
        return b""
    with _open_binary(path) as file:
        file.seek(section.offset)
        data = file.read(section.size)
    if len(data) != section.size:
        raise ElfError(f"{path}: section {section.name} runs past the end of the file")
    return data


def _read_layout(file: BinaryIO, path: str) -> _Layout:
    if file.read(4) != b"\x7fELF":
        raise ElfError(f"{path} is not an ELF file")
    file.seek(0)
    try:
        elf = ELFFile(file)
        sections = tuple(_section_from_header(elf, index) for index in range(elf.num_sections()))
        segments = tuple(
            _LoadSegment(
                address=segment["p_vaddr"],
                memory_size=segment["p_memsz"],
                offset=segment["p_offset"],
            )
            for segment in elf.iter_segments()
            if segment["p_type"] == "PT_LOAD" and segment["p_memsz"] > 0
        )
        byteorder = "<" if elf.little_endian else ">"
        build_id = _read_build_id(file, sections, byteorder, path)
        debuglink, debuglink_crc = _read_debuglink(file, sections, byteorder)
    except (ELFError, ConstructError, OSError, struct.error) as error:
        raise ElfError(f"{path}: corrupt ELF file ({error})") from None
    machine = elf.header["e_machine"]
    return _Layout(
        machine=_MACHINES.get(machine, str(machine).removeprefix("EM_").lower()),
        address_size=elf.elfclass // 8,
        byteorder=byteorder,
        is_position_independent=elf.header["e_type"] == "ET_DYN",
        sections=sections,
        segments=segments,
        build_id=build_id,
        debuglink=debuglink,
        debuglink_crc=debuglink_crc,
    )


def _section_from_header(elf: ELFFile, index: int) -> _Section:
    section = elf.get_section(index)
    return _Section(
        name=section.name,
        type=section["sh_type"],
        address=section["sh_addr"],
        offset=section["sh_offset"],
        size=section["sh_size"],
        link=section["sh_link"],
        alignment=section["sh_addralign"],
    )


def _read_from(file: BinaryIO, section: _Section) -> bytes:
    file.seek(section.offset)
    return file.read(section.size)


def _read_build_id(
    file: BinaryIO, sections: tuple[_Section, ...], byteorder: str, path: str
) -> str | None:
    for section in sections:
        if section.type != "SHT_NOTE":
            continue
        for owner, note_type, desc in _iter_notes(
            _read_from(file, section), section, byteorder, path
        ):
            if owner == _GNU_OWNER and note_type == _NT_GNU_BUILD_ID:
                return desc.hex()
    return None


def _read_debuglink(
    file: BinaryIO, sections: tuple[_Section, ...], byteorder: str
) -> tuple[str | None, int | None]:
    """The .gnu_debuglink file name and CRC32: a NUL-terminated name, padding to 4, the CRC."""
    section = next((s for s in sections if s.name == ".gnu_debuglink" and s.has_file_data), None)
    if section is None:
        return None, None
    data = _read_from(file, section)
    end = data.find(b"\0")
    if end <= 0:
        return None, None
    crc_offset = _align(end + 1, 4)
    crc = (
        struct.unpack_from(byteorder + "I", data, crc_offset)[0]
        if crc_offset + 4 <= len(data)
        else None
    )
    return os.fsdecode(data[:end]), crc


def _has_file_data(layout: _Layout, name: str) -> bool:
    section = layout.section(name)
    return section is not None and section.has_file_data and section.size > 0


def _file_crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _path_in_root(path: str, root: str) -> str:
    """The binary's path as its own root sees it ("/usr/sbin/x" for /proc/PID/root/usr/sbin/x)."""
    absolute = os.path.abspath(path)
    root_path = os.path.abspath(root)
    if root_path != "/" and absolute.startswith(root_path + os.sep):
        return "/" + os.path.relpath(absolute, root_path)
    return absolute


# --- notes ------------------------------------------------------------------


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) & -alignment


def _iter_notes(
    data: bytes, section: _Section, byteorder: str, path: str
) -> Iterator[tuple[bytes, int, bytes]]:
    """(owner, type, descriptor) of each note of a section.

    A note is 3 words (name size, descriptor size, type), then the name and the
    descriptor, each followed by padding to a multiple of 4 bytes from the
    section start, or of 8 in a section aligned to 8 (.note.gnu.property).
    """
    padding = 8 if section.alignment == 8 else 4
    position = 0
    while position + 12 <= len(data):
        name_size, desc_size, note_type = struct.unpack_from(byteorder + "III", data, position)
        position += 12
        owner = data[position : position + name_size].rstrip(b"\0")
        position = _align(position + name_size, padding)
        desc = data[position : position + desc_size]
        position = _align(position + desc_size, padding)
        if len(desc) != desc_size:
            raise ElfError(f"{path}: truncated ELF note")
        yield owner, note_type, desc


def _decode_probe_note(desc: bytes, address_size: int, byteorder: str, path: str) -> _ProbeNote:
    """Decode a stapsdt descriptor.

    pc, base and semaphore as address-size words, then the provider, name and
    argument strings, each NUL-terminated.
    """
    words_size = 3 * address_size
    strings = desc[words_size:].split(b"\0")
    if len(desc) < words_size or len(strings) < 3:
        raise ElfError(f"{path}: malformed SystemTap probe note")
    word = "Q" if address_size == 8 else "I"
    pc, base, semaphore = struct.unpack_from(byteorder + word * 3, desc)
    provider, name, arg_text = (text.decode("utf-8", errors="replace") for text in strings[:3])
    return _ProbeNote(
        pc=pc, base=base, semaphore=semaphore, provider=provider, name=name, arg_text=arg_text
    )


# --- symbol tables ----------------------------------------------------------


class _SymbolEntry(NamedTuple):
    """A table entry before it becomes a Symbol: a server binary has tens of
    thousands of them and only a few are ever asked for."""

    address: int
    size: int
    kind: str
    file_offset: int


def _read_symbol_table(
    path: str, layout: _Layout, table_name: str, load_layout: _Layout
) -> dict[str, _SymbolEntry]:
    """Functions and objects of one symbol table, by name; globals win over same-named locals.

    ``layout`` describes the file holding the table, ``load_layout`` the binary
    whose segments give file offsets (they differ for a separate debug file).
    """
    table = layout.section(table_name)
    if table is None or not table.has_file_data or not 0 < table.link < len(layout.sections):
        return {}
    data = _read_section_bytes(path, table)
    strings = _read_section_bytes(path, layout.sections[table.link])
    entry_format, fields = _SYMBOL_LAYOUTS[layout.address_size]
    entry = struct.Struct(layout.byteorder + entry_format)
    usable = len(data) - len(data) % entry.size
    segments = [
        (seg.address, seg.address + seg.memory_size, seg.offset - seg.address)
        for seg in load_layout.segments
    ]
    symbols: dict[str, _SymbolEntry] = {}
    locals_seen: set[str] = set()
    for raw in entry.iter_unpack(data[:usable]):
        name_offset, value, size, info, section_index = fields(raw)
        kind = _SYMBOL_KINDS.get(info & 0xF)
        if kind is None or section_index == _SHN_UNDEF or name_offset == 0:
            continue
        file_offset = next(
            (value + shift for start, end, shift in segments if start <= value < end), None
        )
        if file_offset is None:
            continue
        name = _string_at(strings, name_offset)
        is_local = info >> 4 == _STB_LOCAL
        if name in symbols:
            if is_local or name not in locals_seen:
                continue
            locals_seen.discard(name)  # a global replaces the local seen first
        elif is_local:
            locals_seen.add(name)
        symbols[name] = _SymbolEntry(value, size, kind, file_offset)
    return symbols


def _string_at(strings: bytes, offset: int) -> str:
    end = strings.find(b"\0", offset)
    return strings[offset : end if end >= 0 else len(strings)].decode("utf-8", errors="replace")


def _symbol(name: str, entry: _SymbolEntry, source: str) -> Symbol:
    return Symbol(
        name=name,
        address=entry.address,
        size=entry.size,
        kind=entry.kind,
        file_offset=entry.file_offset,
        source=source,
    )


# Elf32_Sym and Elf64_Sym order their fields differently; each gives
# (st_name, st_value, st_size, st_info, st_shndx).
_SYMBOL_LAYOUTS = {
    4: ("IIIBBH", lambda raw: (raw[0], raw[1], raw[2], raw[3], raw[5])),
    8: ("IBBHQQ", lambda raw: (raw[0], raw[4], raw[5], raw[1], raw[3])),
}
