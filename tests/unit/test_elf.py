"""ELF inspection on binaries compiled here with <sys/sdt.h>, and on the real PostgreSQL server.

``readelf`` and ``nm`` are the independent oracle for addresses, offsets and symbols.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from dbprobe.binary.argspec import parse_argspecs
from dbprobe.binary.elf import ElfBinary, ElfError, UsdtProbe
from dbprobe.errors import DbprobeError
from tests.support.sdtbin import (
    build_sdt_probes,
    build_sdt_probes_32bit,
    compile_c,
    nm_symbols,
    objcopy,
    read_bytes,
    readelf_build_id,
    readelf_file_offset,
    readelf_probes,
    readelf_section_range,
    strip_binary,
)

NOP = b"\x90"
GUARDED_IN_PROBES_SECTION = ("guarded", "guarded_pair")


def as_readelf_rows(probes: list[UsdtProbe]) -> list[tuple[str, str, int, int, str]]:
    return [(p.provider, p.name, p.address, p.semaphore, p.arg_text) for p in probes]


def readelf_arguments(binary: Path, name: str) -> str:
    (arguments,) = [p.arguments for p in readelf_probes(binary) if p.name == name]
    return arguments


def oracle_rows(binary: Path) -> list[tuple[str, str, int, int, str]]:
    return [
        (p.provider, p.name, p.location, p.semaphore, p.arguments) for p in readelf_probes(binary)
    ]


@pytest.fixture(scope="module", params=[True, False], ids=["pie", "no-pie"])
def sdt_binary(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sdt_probes(tmp_path_factory.mktemp("sdt"), pie=request.param)


def probe(binary: ElfBinary, name: str) -> UsdtProbe:
    (site,) = binary.usdt_probe_sites("demo", name)
    return site


# --- the compiled test program ------------------------------------------------


def test_probes_match_readelf_in_file_order(sdt_binary: Path) -> None:
    probes = ElfBinary(sdt_binary).usdt_probes()
    assert len(probes) == 11
    assert as_readelf_rows(probes) == oracle_rows(sdt_binary)


def test_every_site_offset_is_the_nop_readelf_locates(sdt_binary: Path) -> None:
    for site in ElfBinary(sdt_binary).usdt_probes():
        assert site.file_offset == readelf_file_offset(sdt_binary, site.address), site.name
        assert read_bytes(sdt_binary, site.file_offset, 1) == NOP, site.name


def test_pie_and_non_pie_addresses(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    expect_pie = sdt_binary.name == "sdt_probes_pie"
    assert binary.is_pie is expect_pie
    assert binary.machine == "x86_64"
    lowest = min(site.address for site in binary.usdt_probes())
    # a PIE links at 0, a non-PIE x86-64 executable at 0x400000
    assert (lowest < 0x400000) is expect_pie


def test_semaphores_in_the_probes_section(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    probes_section = readelf_section_range(sdt_binary, ".probes")
    for name in GUARDED_IN_PROBES_SECTION:
        site = probe(binary, name)
        assert site.has_semaphore
        assert site.semaphore in probes_section
        assert site.semaphore_offset == readelf_file_offset(sdt_binary, site.semaphore)
        assert read_bytes(sdt_binary, site.semaphore_offset, 2) == b"\0\0"
    assert probe(binary, "guarded").semaphore != probe(binary, "guarded_pair").semaphore


def test_semaphore_in_bss_gets_an_offset_from_its_segment(sdt_binary: Path) -> None:
    site = probe(ElfBinary(sdt_binary), "in_bss")
    assert site.semaphore in readelf_section_range(sdt_binary, ".bss")
    assert site.semaphore_offset == readelf_file_offset(sdt_binary, site.semaphore)


def test_probes_without_semaphore(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    unguarded = [
        site
        for site in binary.usdt_probes()
        if site.name not in (*GUARDED_IN_PROBES_SECTION, "in_bss")
    ]
    assert len(unguarded) == 8
    for site in unguarded:
        assert (site.semaphore, site.semaphore_offset, site.has_semaphore) == (
            0,
            0,
            False,
        ), site.name


def test_one_probe_at_two_sites(sdt_binary: Path) -> None:
    sites = ElfBinary(sdt_binary).usdt_probe_sites("demo", "twice")
    assert len(sites) == 2
    assert sites[0].address != sites[1].address
    assert [read_bytes(sdt_binary, site.file_offset, 1) for site in sites] == [NOP, NOP]


def test_arguments_decode_as_their_note_says(sdt_binary: Path) -> None:
    for site in ElfBinary(sdt_binary).usdt_probes():
        if site.name == "floating":
            continue
        assert site.arg_error is None, site.arg_error
        assert site.args == parse_argspecs(site.arg_text)
        assert len(site.args) == len(site.arg_text.split())


def test_undecodable_argument_keeps_the_probe_and_says_why(sdt_binary: Path) -> None:
    site = probe(ElfBinary(sdt_binary), "floating")
    assert site.arg_text == readelf_arguments(sdt_binary, "floating")
    assert site.args == ()
    assert site.arg_error is not None and "floating-point" in site.arg_error
    assert read_bytes(sdt_binary, site.file_offset, 1) == NOP


def test_constant_arguments(sdt_binary: Path) -> None:
    args = probe(ElfBinary(sdt_binary), "constants").args
    assert [(arg.kind, arg.value, arg.signed, arg.size) for arg in args] == [
        ("const", 42, True, 4),
        ("const", -7, True, 4),
    ]


def test_struct_fields_are_memory_arguments_with_their_signedness(sdt_binary: Path) -> None:
    args = probe(ElfBinary(sdt_binary), "fields").args
    # struct request { long id; unsigned int size; short flags; char kind; } behind the 1st argument
    assert [(arg.kind, arg.reg, arg.offset) for arg in args] == [
        ("mem", "di", 0),
        ("mem", "di", 8),
        ("mem", "di", 12),
        ("mem", "di", 14),
    ]
    assert [(arg.size, arg.signed) for arg in args] == [(8, True), (4, False), (2, True), (1, True)]


def test_globals_are_rip_relative_symbol_arguments(sdt_binary: Path) -> None:
    args = probe(ElfBinary(sdt_binary), "global").args
    # request_count, then statistics.finished at offset 8 of struct statistics
    assert [(arg.kind, arg.symbol, arg.offset, arg.reg) for arg in args] == [
        ("symbol", "request_count", 0, "ip"),
        ("symbol", "statistics", 8, "ip"),
    ]


def test_register_argument_and_no_arguments(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    (value,) = probe(binary, "in_register").args
    assert (value.kind, value.reg, value.size, value.signed) == ("reg", "di", 8, True)
    assert (probe(binary, "no_arguments").args, probe(binary, "no_arguments").arg_text) == ((), "")


def test_sites_of_an_unknown_probe_are_empty(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    assert binary.usdt_probe_sites("demo", "missing") == []
    assert binary.usdt_probe_sites("other", "twice") == []


def test_build_id_matches_readelf(sdt_binary: Path) -> None:
    build_id = ElfBinary(sdt_binary).build_id
    assert build_id is not None and build_id == readelf_build_id(sdt_binary)


def test_symbols_from_symtab_match_nm(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    oracle = nm_symbols(sdt_binary)
    for name, kind in [
        ("fire_register", "func"),
        ("main", "func"),
        ("statistics", "object"),
        ("request_count", "object"),
    ]:
        found = binary.symbol(name)
        assert found is not None, name
        assert (found.name, found.kind, found.source) == (name, kind, ".symtab")
        assert (found.address, found.size) == (oracle[name].address, oracle[name].size)
        assert found.file_offset == readelf_file_offset(sdt_binary, found.address)
    assert binary.symbol("no_such_symbol") is None


def test_function_offset_is_where_its_code_is(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    function = binary.symbol("fire_no_arguments")
    site = probe(binary, "no_arguments")
    assert function is not None
    assert function.file_offset <= site.file_offset < function.file_offset + function.size


def test_symbols_matching_a_pattern(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    expected = sorted(name for name in nm_symbols(sdt_binary) if name.startswith("fire_"))
    assert len(expected) == 7
    assert [symbol.name for symbol in binary.symbols_matching("^fire_")] == expected
    assert [symbol.name for symbol in binary.symbols_matching("e_reg")] == ["fire_register"]
    assert binary.symbols_matching("fire_", kind="object") == []
    assert [symbol.name for symbol in binary.symbols_matching("^statistics$", kind="object")] == [
        "statistics"
    ]


def test_invalid_symbol_pattern_is_an_elf_error(sdt_binary: Path) -> None:
    with pytest.raises(ElfError, match="invalid symbol pattern"):
        ElfBinary(sdt_binary).symbols_matching("fire_(")


def test_version_string_in_rodata(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    assert binary.find_version_string(rb"demo-server (\d+\.\d+\.\d+)") == "1.2.3"
    assert binary.find_version_string(rb"demo-server \d+\.\d+\.\d+") == "demo-server 1.2.3"
    assert binary.find_version_string(rb"other-server (\d+)") is None


def test_vaddr_to_offset_outside_every_segment(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    with pytest.raises(ElfError, match="no loadable segment"):
        binary.vaddr_to_offset(0x7FFF_0000_0000)


def open_descriptors_of(path: Path) -> list[str]:
    descriptors = Path("/proc/self/fd")
    return [fd.name for fd in descriptors.iterdir() if _resolves_to(fd, path)]


def _resolves_to(link: Path, path: Path) -> bool:
    try:
        return Path(os.readlink(link)) == path.resolve()
    except OSError:
        return False


def test_holds_no_open_file(sdt_binary: Path) -> None:
    binary = ElfBinary(sdt_binary)
    binary.usdt_probes()
    binary.symbol("main")
    binary.find_version_string(rb"demo-server")
    assert open_descriptors_of(sdt_binary) == []


def test_results_are_cached_and_close_drops_them(sdt_binary: Path) -> None:
    with ElfBinary(sdt_binary) as binary:
        first = binary.usdt_probes()
        assert binary.usdt_probes() == first
        binary.close()
        assert binary.usdt_probes() == first


# --- 32-bit layout and prelink ----------------------------------------------------


@pytest.fixture(scope="module")
def sdt_binary_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sdt_probes_32bit(tmp_path_factory.mktemp("sdt32"))


def test_32bit_notes(sdt_binary_32: Path) -> None:
    binary = ElfBinary(sdt_binary_32)
    assert (binary.machine, binary.is_pie) == ("i386", False)
    probes = binary.usdt_probes()
    assert as_readelf_rows(probes) == oracle_rows(sdt_binary_32)
    (site,) = probes
    assert (site.provider, site.name, len(site.args), site.arg_error) == ("tiny", "ping", 2, None)
    assert read_bytes(sdt_binary_32, site.file_offset, 1) == NOP
    assert site.semaphore in readelf_section_range(sdt_binary_32, ".probes")
    assert site.semaphore_offset == readelf_file_offset(sdt_binary_32, site.semaphore)
    assert read_bytes(sdt_binary_32, site.semaphore_offset, 2) == b"\0\0"


def shift_recorded_addresses(binary: Path, shift: int) -> None:
    """Rewrite the notes as prelink leaves them: recorded before the binary moved by ``shift``.

    pyelftools locates the notes, independently of dbprobe's note decoder.
    """
    with open(binary, "rb") as file:
        elf = ELFFile(file)
        word = "<Q" if elf.elfclass == 64 else "<I"
        size = struct.calcsize(word)
        descriptors = [
            note["n_offset"] + 12 + (note["n_namesz"] + 3) // 4 * 4
            for note in elf.get_section_by_name(".note.stapsdt").iter_notes()
        ]
    with open(binary, "r+b") as file:
        for descriptor in descriptors:
            file.seek(descriptor)
            pc, base, semaphore = (struct.unpack(word, file.read(size))[0] for _ in range(3))
            file.seek(descriptor)
            for value in (pc - shift, base - shift, semaphore - shift if semaphore else 0):
                file.write(struct.pack(word, value))


def test_prelinked_notes_are_adjusted_by_the_stapsdt_base(sdt_binary: Path, tmp_path: Path) -> None:
    shift = -0x100000  # recorded above where the binary now is, which keeps PIE addresses positive
    moved = tmp_path / "prelinked"
    shutil.copy(sdt_binary, moved)
    shift_recorded_addresses(moved, shift)
    recorded = readelf_probes(moved)
    assert [p.location + shift for p in recorded] == [
        p.location for p in readelf_probes(sdt_binary)
    ]

    original = ElfBinary(sdt_binary).usdt_probes()
    adjusted = ElfBinary(moved).usdt_probes()
    assert as_readelf_rows(adjusted) == as_readelf_rows(original)
    assert [site.file_offset for site in adjusted] == [site.file_offset for site in original]
    assert all(read_bytes(moved, site.file_offset, 1) == NOP for site in adjusted)


# --- separate debug files ----------------------------------------------------------


@pytest.fixture(scope="module")
def debug_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A program built with -g, its debug file, and a stale debug file of another build."""
    directory = tmp_path_factory.mktemp("debug")
    full = build_sdt_probes(directory, name="full", flags=("-O2", "-g"))
    other = build_sdt_probes(directory, name="other", flags=("-O0", "-g"))
    objcopy("--only-keep-debug", full, directory / "full.debug")
    objcopy("--only-keep-debug", other, directory / "other.debug")
    return {"full": full, "debug": directory / "full.debug", "stale": directory / "other.debug"}


def stripped_with_debuglink(debug_build: dict[str, Path], binary: Path, debug_file: Path) -> Path:
    """A stripped copy at ``binary`` whose .gnu_debuglink names ``debug_file`` (CRC included)."""
    binary.parent.mkdir(parents=True, exist_ok=True)
    debug_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(debug_build["debug"], debug_file)
    strip_binary(debug_build["full"], binary)
    objcopy(f"--add-gnu-debuglink={debug_file}", binary)
    return binary


def assert_found_in_debug_file(binary: ElfBinary, debug_build: dict[str, Path]) -> None:
    oracle = nm_symbols(debug_build["full"])["fire_register"]
    found = binary.symbol("fire_register")
    assert found is not None
    assert (found.source, found.kind, found.address, found.size) == (
        "debug file",
        "func",
        oracle.address,
        oracle.size,
    )
    assert found.file_offset == readelf_file_offset(Path(binary.path), oracle.address)


def test_stripped_binary_has_no_local_symbols(debug_build: dict[str, Path], tmp_path: Path) -> None:
    stripped = strip_binary(debug_build["full"], tmp_path / "stripped")
    binary = ElfBinary(stripped)
    assert binary.symbol("fire_register") is None
    assert binary.symbols_matching("^fire_") == []
    assert binary.debuglink is None


def test_debuglink_next_to_the_binary(debug_build: dict[str, Path], tmp_path: Path) -> None:
    binary = stripped_with_debuglink(debug_build, tmp_path / "prog", tmp_path / "prog.debug")
    inspected = ElfBinary(binary)
    assert inspected.debuglink == "prog.debug"
    assert_found_in_debug_file(inspected, debug_build)
    assert inspected.debug_info_path() == str(tmp_path / "prog.debug")
    assert [s.name for s in inspected.symbols_matching("^fire_")] == sorted(
        name for name in nm_symbols(debug_build["full"]) if name.startswith("fire_")
    )


def test_debuglink_in_dot_debug_directory(debug_build: dict[str, Path], tmp_path: Path) -> None:
    binary = stripped_with_debuglink(
        debug_build, tmp_path / "prog", tmp_path / ".debug" / "prog.debug"
    )
    assert_found_in_debug_file(ElfBinary(binary), debug_build)


def test_debuglink_under_usr_lib_debug_of_the_root(
    debug_build: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "container-root"
    binary = stripped_with_debuglink(
        debug_build, root / "opt/demo/bin/prog", root / "usr/lib/debug/opt/demo/bin/prog.debug"
    )
    assert_found_in_debug_file(ElfBinary(binary, root=str(root)), debug_build)
    assert (
        ElfBinary(binary).symbol("fire_register") is None
    ), "outside its root the debug file is not found"


def test_build_id_under_usr_lib_debug_of_the_root(
    debug_build: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "container-root"
    (root / "usr/sbin").mkdir(parents=True)
    binary = strip_binary(debug_build["full"], root / "usr/sbin/prog")
    build_id = readelf_build_id(binary)
    assert build_id is not None
    debug_file = root / "usr/lib/debug/.build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    debug_file.parent.mkdir(parents=True)
    shutil.copy(debug_build["debug"], debug_file)
    assert_found_in_debug_file(ElfBinary(binary, root=str(root)), debug_build)
    assert ElfBinary(binary, root=str(root)).debug_info_path() == str(debug_file)
    assert ElfBinary(binary).symbol("fire_register") is None
    assert ElfBinary(binary).debug_info_path() is None


def test_debug_file_of_another_build_is_ignored(
    debug_build: dict[str, Path], tmp_path: Path
) -> None:
    binary = stripped_with_debuglink(debug_build, tmp_path / "prog", tmp_path / "prog.debug")
    shutil.copy(debug_build["stale"], tmp_path / "prog.debug")
    assert ElfBinary(binary).symbol("fire_register") is None
    assert ElfBinary(binary).debug_info_path() is None


def test_debug_information_in_the_binary_itself(debug_build: dict[str, Path], tmp_path: Path) -> None:
    assert ElfBinary(debug_build["full"]).debug_info_path() == str(debug_build["full"])
    without_debug = strip_binary(debug_build["full"], tmp_path / "prog", "--strip-debug")
    inspected = ElfBinary(without_debug)
    assert inspected.symbol("fire_register") is not None  # .symtab stays
    assert inspected.debug_info_path() is None


@pytest.mark.parametrize("stale", [False, True], ids=["matching-crc", "stale-crc"])
def test_debuglink_crc_decides_without_build_ids(tmp_path: Path, stale: bool) -> None:
    no_build_id = ("-O2", "-g", "-Wl,--build-id=none")
    full = build_sdt_probes(tmp_path, name="full", flags=no_build_id)
    other = build_sdt_probes(tmp_path, name="other", flags=("-O0", *no_build_id[1:]))
    objcopy("--only-keep-debug", full, tmp_path / "prog.debug")
    binary = strip_binary(full, tmp_path / "prog")
    objcopy(
        f"--add-gnu-debuglink={tmp_path / 'prog.debug'}", binary
    )  # records the CRC of full's debug file
    if stale:
        objcopy("--only-keep-debug", other, tmp_path / "prog.debug")
    inspected = ElfBinary(binary)
    assert inspected.build_id is None
    found = inspected.symbol("fire_register")
    if stale:
        assert found is None
    else:
        assert found is not None and found.address == nm_symbols(full)["fire_register"].address


# --- binaries without probes, and files that are not ELF -------------------------------


def test_binary_with_notes_removed_has_no_probes(sdt_binary: Path, tmp_path: Path) -> None:
    without = tmp_path / "without-usdt"
    objcopy("--remove-section", ".note.stapsdt", sdt_binary, without)
    assert readelf_probes(without) == []
    binary = ElfBinary(without)
    assert binary.usdt_probes() == []
    assert binary.usdt_probe_sites("demo", "twice") == []
    assert binary.symbol("fire_register") is not None


def test_stripped_program_without_probes(tmp_path: Path) -> None:
    source = tmp_path / "plain.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = strip_binary(compile_c([source], tmp_path / "plain.full"), tmp_path / "plain")
    inspected = ElfBinary(binary)
    assert inspected.usdt_probes() == []
    assert inspected.symbol("main") is None
    assert inspected.find_version_string(rb"demo-server") is None


def test_strip_keeps_the_probe_notes(sdt_binary: Path, tmp_path: Path) -> None:
    stripped = strip_binary(sdt_binary, tmp_path / "stripped")
    assert as_readelf_rows(ElfBinary(stripped).usdt_probes()) == oracle_rows(sdt_binary)


def test_text_file_is_not_an_elf_file(tmp_path: Path) -> None:
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hello\n")
    with pytest.raises(ElfError, match=r"script\.sh is not an ELF file"):
        ElfBinary(text)


def test_truncated_elf_file(sdt_binary: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated"
    truncated.write_bytes(sdt_binary.read_bytes()[:40])
    with pytest.raises(ElfError, match="corrupt ELF file"):
        ElfBinary(truncated)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ElfError, match=r"cannot read .*missing: No such file"):
        ElfBinary(tmp_path / "missing")
    with pytest.raises(ElfError, match="cannot read"):
        ElfBinary(tmp_path)


def test_elf_error_reaches_the_user_as_a_dbprobe_error(tmp_path: Path) -> None:
    assert issubclass(ElfError, DbprobeError)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(DbprobeError):
        ElfBinary(empty)


# --- the real PostgreSQL server -------------------------------------------------------

# Probe signatures from PostgreSQL's src/backend/utils/probes.d.
POSTGRES_PROBE_ARITY = {
    "query__start": 1,
    "query__done": 1,
    "statement__status": 1,
    "transaction__start": 1,
    "lock__wait__start": 6,
}


@pytest.fixture(scope="module")
def postgres_binary() -> Path:
    if not sys.platform.startswith("linux"):
        pytest.skip("the PostgreSQL server binary is inspected on Linux only")
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not found:
        pytest.fail(
            "no PostgreSQL server found at /usr/lib/postgresql/*/bin/postgres; "
            "run the test setup first (apt-get install postgresql-15)",
            pytrace=False,
        )
    return Path(max(found, key=lambda path: [int(n) for n in re.findall(r"\d+", path)]))


def test_postgres_probes_match_readelf(postgres_binary: Path) -> None:
    probes = ElfBinary(postgres_binary).usdt_probes()
    assert len(probes) > 50
    assert as_readelf_rows(probes) == oracle_rows(postgres_binary)
    assert [
        site.arg_error for site in probes if site.arg_error
    ] == [], "every argument PostgreSQL uses decodes"


@pytest.mark.parametrize(("name", "arity"), POSTGRES_PROBE_ARITY.items())
def test_postgres_probes_for_the_reports(postgres_binary: Path, name: str, arity: int) -> None:
    sites = ElfBinary(postgres_binary).usdt_probe_sites("postgresql", name)
    assert sites, f"postgresql:{name} is missing"
    for site in sites:
        assert len(site.args) == arity
        assert read_bytes(postgres_binary, site.file_offset, 1) == NOP
        assert site.semaphore_offset != 0
        assert site.semaphore_offset == readelf_file_offset(postgres_binary, site.semaphore)
        assert site.semaphore in readelf_section_range(postgres_binary, ".probes")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("pgstat_report_activity", "func"), ("PortalRun", "func"), ("debug_query_string", "object")],
)
def test_postgres_symbols_in_dynsym(postgres_binary: Path, name: str, kind: str) -> None:
    found = ElfBinary(postgres_binary).symbol(name)
    oracle = nm_symbols(postgres_binary, "-D")[name]
    assert found is not None
    assert (found.kind, found.source, found.address, found.size) == (
        kind,
        ".dynsym",
        oracle.address,
        oracle.size,
    )
    assert found.file_offset == readelf_file_offset(postgres_binary, found.address)


def test_postgres_version_string(postgres_binary: Path) -> None:
    reported = subprocess.run(
        [str(postgres_binary), "--version"], capture_output=True, text=True, check=True
    ).stdout
    expected = re.search(r"\(PostgreSQL\) (\d+\.\d+)", reported)
    assert expected is not None, reported
    found = ElfBinary(postgres_binary).find_version_string(
        rb"PostgreSQL (\d+\.\d+)[^\0]* on [^\0]*, compiled by"
    )
    assert found == expected.group(1)


def test_postgres_inspection_is_fast(postgres_binary: Path) -> None:
    binary = ElfBinary(postgres_binary)
    started = time.perf_counter()
    binary.usdt_probes()
    assert time.perf_counter() - started < 1.0
    started = time.perf_counter()
    binary.symbol("PortalRun")
    assert time.perf_counter() - started < 1.0
    started = time.perf_counter()
    binary.symbol("pgstat_report_activity")
    assert time.perf_counter() - started < 0.01, "the symbol table is cached after the first lookup"
