"""Struct layouts from DWARF, and the recipes' hand-written offsets checked against them.

The oracle for the reader is the compiler itself: tests/fixtures/dwarf_layouts.c prints
offsetof() and sizeof() of the members it defines. The recipes are checked against the
MySQL stand-in's debug information (built with -g), against glibc's separate debug file
where the C library's structs stand in for installed debug packages, and against every
installed database server whose debug information is installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dbprobe.binary.dwarf import DebugInfo, DwarfError, Member
from dbprobe.binary.elf import ElfBinary
from dbprobe.recipes.load import available_databases
from tests.support.mariadb import SBIN_DIRS
from tests.support.recipe_fields import (
    MYSQL_COM_DATA,
    RECIPE_FIELDS,
    check_offsets,
    offset_reads,
)
from tests.support.sdtbin import objcopy, readelf_build_id, strip_binary
from tests.support.standin import StandinFlavour, build_standin

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LAYOUTS_SOURCE = FIXTURES / "dwarf_layouts.c"
_SETUP_HINT = "install the toolchain: apt-get install gcc g++"


def compile_layouts(output: Path, compiler: str, dwarf_version: int) -> Path:
    tool = shutil.which(compiler)
    if tool is None:
        pytest.fail(f"{compiler} is not installed; {_SETUP_HINT}", pytrace=False)
    language = ["-x", "c++"] if compiler == "g++" else []
    command = [tool, "-O0", f"-gdwarf-{dwarf_version}", *language, "-o", str(output),
               str(LAYOUTS_SOURCE)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stderr}", pytrace=False)
    return output


def compiler_layouts(program: Path) -> tuple[dict[str, Member], dict[str, int]]:
    """What the compiled program says of its own types: members and sizes."""
    members: dict[str, Member] = {}
    sizes: dict[str, int] = {}
    output = subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        first, second, *third = line.split()
        if first == "sizeof":
            sizes[second] = int(third[0])
        else:
            members[first] = Member(path=first, offset=int(second), size=int(third[0]))
    return members, sizes


# --- the reader against the compiler ----------------------------------------------------


@pytest.mark.parametrize("dwarf_version", [2, 4, 5])
@pytest.mark.parametrize("compiler", ["gcc", "g++"])
def test_members_and_sizes_are_where_the_compiler_put_them(
    tmp_path: Path, compiler: str, dwarf_version: int
) -> None:
    program = compile_layouts(tmp_path / "layouts", compiler, dwarf_version)
    members, sizes = compiler_layouts(program)
    assert len(members) >= 16 and len(sizes) >= 3
    if compiler == "g++":
        assert "outer::inner::Scoped.value" in members  # namespaces only in C++
    debug = DebugInfo(str(program))
    assert {path: debug.member(path) for path in members} == members
    assert {name: debug.type_size(name) for name in sizes} == sizes


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> DebugInfo:
    return DebugInfo(str(compile_layouts(tmp_path_factory.mktemp("dwarf") / "layouts", "gcc", 5)))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("NoSuchType.x", "no type NoSuchType in the debug information"),
        ("LocalLock.no_such_member", "LocalLock has no member no_such_member"),
        ("LocalLock.tag.nope", "LocalLock.tag has no member nope"),
        ("LocalLock.hits.deeper", "LocalLock.hits is no struct or union"),
        ("Flags.high", "member high is a bit field"),
        ("LocalLock", "names no member"),
    ],
)
def test_what_is_not_there_is_a_one_line_error(layouts: DebugInfo, path: str, message: str) -> None:
    with pytest.raises(DwarfError) as raised:
        layouts.member(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_without_dwarf_has_no_debug_info(tmp_path: Path, layouts: DebugInfo) -> None:
    stripped = strip_binary(Path(layouts.path), tmp_path / "stripped", "--strip-debug")
    assert DebugInfo.of(ElfBinary(stripped)) is None
    with pytest.raises(DwarfError, match="has no DWARF debug information"):
        DebugInfo(str(stripped))
    with pytest.raises(DwarfError, match="cannot read"):
        DebugInfo(str(tmp_path / "missing"))


# --- the mysql recipe against the stand-in's COM_DATA -----------------------------------


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("standin-dwarf")
    return {
        "8.0": build_standin(directory, StandinFlavour(version="8.0.36")),
        "5.6": build_standin(directory, StandinFlavour(version="5.6.51", packet_signature=True)),
    }


def test_the_mysql_recipe_reads_com_data_where_the_stand_in_has_it(
    standins: dict[str, Path]
) -> None:
    binary = ElfBinary(standins["8.0"])
    debug = DebugInfo.of(binary)
    assert debug is not None and debug.path == str(standins["8.0"])
    result = check_offsets("mysql", binary, debug)
    assert result.mismatches == ()
    assert sorted(result.checked) == sorted([
        f"{MYSQL_COM_DATA} 8@0(arg2) = COM_DATA.com_query.query",
        f"{MYSQL_COM_DATA} 8@0(arg2) = COM_DATA.com_stmt_prepare.query",
        f"{MYSQL_COM_DATA} 4@8(arg2) = COM_DATA.com_query.length",
        f"{MYSQL_COM_DATA} 4@8(arg2) = COM_DATA.com_stmt_prepare.length",
        f"{MYSQL_COM_DATA} 4@0(arg2) = COM_DATA.com_stmt_execute.stmt_id",
        f"{MYSQL_COM_DATA} 4@0(arg2) = COM_DATA.com_stmt_close.stmt_id",
        "_ZN8MDL_wait10timed_waitEP17MDL_context_ownerP8timespecbPK17PSI_stage_info_v1"
        " 8@8(arg5) = PSI_stage_info_v1.m_name",
    ])


def test_the_packet_layout_has_no_struct_but_the_stage(standins: dict[str, Path]) -> None:
    binary = ElfBinary(standins["5.6"])
    result = check_offsets("mysql", binary, DebugInfo.of(binary))
    assert result.mismatches == ()
    assert [entry.split(" = ")[1] for entry in result.checked] == ["PSI_stage_info_v1.m_name"]


def test_a_wrong_offset_is_reported(standins: dict[str, Path]) -> None:
    binary = ElfBinary(standins["8.0"])
    wrong = {**RECIPE_FIELDS, ("mysql", MYSQL_COM_DATA, "4@8(arg2)"): ("COM_DATA.com_query.parameters",)}
    result = check_offsets("mysql", binary, DebugInfo.of(binary), wrong)
    assert result.mismatches == (
        f"{MYSQL_COM_DATA} 4@8(arg2) = COM_DATA.com_query.parameters: the recipe reads offset 8,"
        " the member is at 16",)


def test_the_stand_in_s_debug_file_by_debuglink_serves_the_same_check(
    standins: dict[str, Path], tmp_path: Path
) -> None:
    debug_file = tmp_path / ".debug" / "mysqld.debug"
    debug_file.parent.mkdir()
    objcopy("--only-keep-debug", standins["8.0"], debug_file)
    stripped = strip_binary(standins["8.0"], tmp_path / "mysqld", "--strip-debug")
    objcopy(f"--add-gnu-debuglink={debug_file}", stripped)
    binary = ElfBinary(stripped)
    debug = DebugInfo.of(binary)
    assert debug is not None and debug.path == str(debug_file)
    result = check_offsets("mysql", binary, debug)
    assert len(result.checked) == 7 and result.mismatches == ()


@pytest.mark.parametrize("database", available_databases())
def test_every_offset_of_the_recipes_says_what_it_reads(database: str) -> None:
    reads = {read.key for read in offset_reads(database)}
    assert reads, f"{database} reads nothing at an offset"
    described = {key for key in RECIPE_FIELDS if key[0] == database}
    assert reads - described == set(), "add what they read to tests/support/recipe_fields.py"
    assert described - reads == set(), "stale entries in tests/support/recipe_fields.py"


# --- installed debug information -------------------------------------------------------

LIBC_MEMBERS = ("timespec.tv_nsec", "stat.st_size", "stat.st_mtim", "tm.tm_zone",
                "sockaddr_in.sin_port", "dirent.d_name")
LIBC_ORACLE = """
#include <dirent.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#define MEMBER(type, member, path) \\
    printf("%s %zu %zu\\n", path, offsetof(type, member), sizeof(((type *)0)->member))
int main(void) {
    MEMBER(struct timespec, tv_nsec, "timespec.tv_nsec");
    MEMBER(struct stat, st_size, "stat.st_size");
    MEMBER(struct stat, st_mtim, "stat.st_mtim");
    MEMBER(struct tm, tm_zone, "tm.tm_zone");
    MEMBER(struct sockaddr_in, sin_port, "sockaddr_in.sin_port");
    MEMBER(struct dirent, d_name, "dirent.d_name");
    return 0;
}
"""


def installed_libc() -> Path:
    found = subprocess.run(["gcc", "-print-file-name=libc.so.6"], capture_output=True,
                           text=True, check=True).stdout.strip()
    return Path(os.path.realpath(found))


def test_the_c_library_s_debug_file_is_found_by_build_id_and_read(tmp_path: Path) -> None:
    """Debian's libc6-dbg: a real separate, compressed debug file under /usr/lib/debug."""
    libc = installed_libc()
    build_id = readelf_build_id(libc)
    assert build_id is not None
    expected = Path("/usr/lib/debug/.build-id", build_id[:2], f"{build_id[2:]}.debug")
    assert expected.is_file(), f"no {expected}: apt-get install libc6-dbg (make setup)"
    debug = DebugInfo.of(ElfBinary(libc))
    assert debug is not None and debug.path == str(expected)
    source = tmp_path / "oracle.c"
    source.write_text(LIBC_ORACLE)
    subprocess.run(["gcc", "-o", str(tmp_path / "oracle"), str(source)], check=True)
    members, _ = compiler_layouts(tmp_path / "oracle")
    assert set(members) == set(LIBC_MEMBERS)
    assert {path: debug.member(path) for path in members} == members


def installed_servers() -> list[tuple[str, Path]]:
    found = [("postgresql", Path(path)) for path in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    mariadbd = next((Path(d, "mariadbd") for d in SBIN_DIRS if Path(d, "mariadbd").is_file()), None)
    if mariadbd is not None:
        found.append(("mariadb", mariadbd))
    return found


def has_debug_info_by_readelf(binary: Path) -> bool:
    """Whether readelf sees DWARF in the binary, or its build-id debug file is installed."""
    sections = subprocess.run(["readelf", "-S", "-W", str(binary)], capture_output=True,
                              text=True, check=True).stdout
    if ".debug_info" in sections:
        return True
    build_id = readelf_build_id(binary)
    return build_id is not None and Path(
        "/usr/lib/debug/.build-id", build_id[:2], f"{build_id[2:]}.debug").is_file()


def test_installed_servers_are_checked_where_their_debug_information_is_installed() -> None:
    """With a server's dbgsym package installed, its recipe's offsets are checked against
    it; without, that the debug information is absent is what readelf says too."""
    servers = installed_servers()
    assert {database for database, _ in servers} >= {"postgresql", "mariadb"}
    for database, path in servers:
        binary = ElfBinary(path)
        debug = DebugInfo.of(binary)
        assert (debug is not None) == has_debug_info_by_readelf(path), path
        if debug is not None:
            result = check_offsets(database, binary, debug)
            assert result.checked and result.mismatches == (), path
