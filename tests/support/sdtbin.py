"""Build small programs with USDT probes, and read them back with binutils.

The builders compile C sources with gcc and <sys/sdt.h> (Debian's
systemtap-sdt-dev). The readers run ``readelf`` and ``nm``, independent of
dbprobe's own ELF code, so tests can use them as the oracle.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SDT_PROBES_SOURCES = (FIXTURES / "sdt_probes.c", FIXTURES / "sdt_guarded.c")
SDT_PROBES_32_SOURCE = FIXTURES / "sdt_probes_32.c"

_SETUP_HINT = "install the toolchain: apt-get install gcc systemtap-sdt-dev binutils"


@dataclass(frozen=True, slots=True)
class ReadelfProbe:
    """One stapsdt note as ``readelf -n`` prints it (addresses as recorded)."""

    provider: str
    name: str
    location: int
    base: int
    semaphore: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ReadelfSegment:
    """A PT_LOAD program header as ``readelf -l`` prints it."""

    offset: int
    address: int
    file_size: int
    memory_size: int

    def file_offset(self, address: int) -> int | None:
        if self.address <= address < self.address + self.memory_size:
            return address - self.address + self.offset
        return None


@dataclass(frozen=True, slots=True)
class NmSymbol:
    name: str
    address: int
    size: int
    type: str  # nm's letter: T/t for text, D/d/B/b for data...


# --- building -----------------------------------------------------------------


def compile_c(
    sources: Iterable[Path | str],
    output: Path,
    *,
    pie: bool = True,
    flags: Sequence[str] = ("-O2",),
) -> Path:
    """Compile and link C sources into ``output``; fail the test with gcc's message on error."""
    gcc = _require_tool("gcc")
    command = [gcc, *flags, "-fPIE" if pie else "-fno-pie", "-pie" if pie else "-no-pie"]
    command += ["-o", str(output), *map(str, sources)]
    _run(command, hint=_SETUP_HINT)
    return output


def build_sdt_probes(
    directory: Path, *, pie: bool = True, name: str | None = None, flags: Sequence[str] = ("-O2",)
) -> Path:
    """The fixture program with probes of every kind (see tests/fixtures/sdt_probes.c)."""
    output = directory / (name or ("sdt_probes_pie" if pie else "sdt_probes_nopie"))
    return compile_c(SDT_PROBES_SOURCES, output, pie=pie, flags=flags)


def build_sdt_probes_32bit(directory: Path) -> Path:
    """A freestanding i386 program with one probe, for the 32-bit note layout.

    gcc -m32 can compile and link it without the 32-bit C library; <sys/sdt.h>
    lives in the 64-bit multiarch include directory, so that directory is
    searched last.
    """
    flags = (
        "-m32",
        "-O2",
        "-ffreestanding",
        "-nostdlib",
        "-static",
        "-idirafter",
        str(sdt_include_directory()),
    )
    gcc = _require_tool("gcc")
    output = directory / "sdt_probes_32"
    _run([gcc, *flags, "-o", str(output), str(SDT_PROBES_32_SOURCE)], hint=_SETUP_HINT)
    return output


def sdt_include_directory() -> Path:
    """The include directory holding sys/sdt.h, as gcc finds it."""
    gcc = _require_tool("gcc")
    result = subprocess.run(
        [gcc, "-M", "-x", "c", "-"], input="#include <sys/sdt.h>\n", capture_output=True, text=True
    )
    match = re.search(r"(\S+)/sys/sdt\.h", result.stdout)
    if result.returncode != 0 or match is None:
        pytest.fail(
            f"<sys/sdt.h> not found ({result.stderr.strip()}); {_SETUP_HINT}", pytrace=False
        )
    return Path(match.group(1))


def strip_binary(binary: Path, output: Path, *flags: str) -> Path:
    """A copy of ``binary`` passed through ``strip`` (default: --strip-all)."""
    _run([_require_tool("strip"), *(flags or ("--strip-all",)), "-o", str(output), str(binary)])
    return output


def objcopy(*arguments: str | Path) -> None:
    _run([_require_tool("objcopy"), *map(str, arguments)])


# --- reading (the oracle) -------------------------------------------------------


def readelf_probes(binary: Path) -> list[ReadelfProbe]:
    """The stapsdt notes of ``binary``, in file order, from ``readelf -n``."""
    text = _run([_require_tool("readelf"), "-n", "-W", str(binary)])
    pattern = re.compile(
        r"Provider: (?P<provider>\S+)\n\s+Name: (?P<name>\S+)\n"
        r"\s+Location: (?P<location>0x[0-9a-f]+), Base: (?P<base>0x[0-9a-f]+), "
        r"Semaphore: (?P<semaphore>0x[0-9a-f]+)\n\s+Arguments:(?P<arguments>[^\n]*)"
    )
    return [
        ReadelfProbe(
            provider=match["provider"],
            name=match["name"],
            location=int(match["location"], 16),
            base=int(match["base"], 16),
            semaphore=int(match["semaphore"], 16),
            arguments=match["arguments"].strip(),
        )
        for match in pattern.finditer(text)
    ]


def readelf_build_id(binary: Path) -> str | None:
    """The GNU build-id of ``binary`` in hex, from ``readelf -n``."""
    match = re.search(r"Build ID: ([0-9a-f]+)", _run([_require_tool("readelf"), "-n", str(binary)]))
    return match.group(1) if match else None


def readelf_load_segments(binary: Path) -> list[ReadelfSegment]:
    """The PT_LOAD program headers of ``binary``, from ``readelf -l``."""
    text = _run([_require_tool("readelf"), "-l", "-W", str(binary)])
    pattern = re.compile(
        r"^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)",
        re.MULTILINE,
    )
    return [
        ReadelfSegment(*(int(field, 16) for field in match.groups()))
        for match in pattern.finditer(text)
    ]


def readelf_file_offset(binary: Path, address: int) -> int:
    """The file offset of a virtual address, by the program headers readelf prints."""
    for segment in readelf_load_segments(binary):
        offset = segment.file_offset(address)
        if offset is not None:
            return offset
    raise AssertionError(f"readelf shows no PT_LOAD segment holding {address:#x} in {binary}")


def readelf_section_range(binary: Path, name: str) -> range:
    """The virtual address range of a section, from ``readelf -S``."""
    text = _run([_require_tool("readelf"), "-S", "-W", str(binary)])
    match = re.search(
        rf"\]\s+{re.escape(name)}\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", text
    )
    if match is None:
        raise AssertionError(f"readelf shows no section {name} in {binary}")
    start, size = int(match.group(1), 16), int(match.group(2), 16)
    return range(start, start + size)


def nm_symbols(binary: Path, *flags: str) -> dict[str, NmSymbol]:
    """Defined symbols with sizes, from ``nm`` (``-D`` among ``flags`` for .dynsym)."""
    text = _run([_require_tool("nm"), "--defined-only", "-S", *flags, str(binary)])
    symbols = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 4:
            address, size, letter, name = fields
            symbols.setdefault(name, NmSymbol(name, int(address, 16), int(size, 16), letter))
    return symbols


def read_bytes(path: Path, offset: int, count: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(count)


# --- running tools ----------------------------------------------------------------


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; {_SETUP_HINT}", pytrace=False)
    return path


def _run(command: Sequence[str], hint: str = "") -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        message = f"{' '.join(command)} failed:\n{result.stderr.strip()}"
        pytest.fail(f"{message}\n{hint}" if hint else message, pytrace=False)
    return result.stdout
