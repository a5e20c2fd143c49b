"""What each hand-written offset of the packaged recipes stands for, and a check of those
offsets against a binary's debug information.

A recipe says ``4@8(arg2)``; the comment beside it says that is COM_DATA's
com_query.length. This table says the same in a form DWARF can check: for each recipe
argument read at an offset, the struct members (``TYPE.member.member``) it must line up
with, or none for memory that is no struct (a network packet's bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dbprobe.binary.dwarf import DebugInfo
from dbprobe.binary.elf import ElfBinary
from dbprobe.binary.recipe_args import RecipeArg
from dbprobe.recipes.bind import UnresolvedHook, find_function
from dbprobe.recipes.load import load_recipe

MYSQL_COM_DATA = "_Z16dispatch_commandP3THDPK8COM_DATA19enum_server_command"
MYSQL_PACKET = "_Z16dispatch_command19enum_server_commandP3THDPcj"
MDL_TIMED_WAIT = (
    "_ZN8MDL_wait10timed_waitEP17MDL_context_ownerP8timespecbPK17PSI_stage_info_v1")

_LOCKTAG_OF_LOCALLOCK = "LOCALLOCK.tag.lock"

# (database, function, recipe argument) -> the members it reads
RECIPE_FIELDS: dict[tuple[str, str, str], tuple[str, ...]] = {
    # ProcSleep(LOCALLOCK *): its LOCKTAG as two 8-byte words, its lock mode, its LOCK
    ("postgresql", "ProcSleep", "8@(arg1)"): (f"{_LOCKTAG_OF_LOCALLOCK}.locktag_field1",),
    ("postgresql", "ProcSleep", "8@8(arg1)"): (f"{_LOCKTAG_OF_LOCALLOCK}.locktag_field3",),
    ("postgresql", "ProcSleep", "4@16(arg1)"): ("LOCALLOCK.tag.mode",),
    ("postgresql", "ProcSleep", "8@24(arg1)"): ("LOCALLOCK.lock",),
    # MySQL 5.7 and later: dispatch_command(THD *, const COM_DATA *, ...)
    ("mysql", MYSQL_COM_DATA, "8@0(arg2)"): ("COM_DATA.com_query.query",
                                             "COM_DATA.com_stmt_prepare.query"),
    ("mysql", MYSQL_COM_DATA, "4@8(arg2)"): ("COM_DATA.com_query.length",
                                             "COM_DATA.com_stmt_prepare.length"),
    # the low half of com_stmt_execute's unsigned long, all of com_stmt_close's unsigned int
    ("mysql", MYSQL_COM_DATA, "4@0(arg2)"): ("COM_DATA.com_stmt_execute.stmt_id",
                                             "COM_DATA.com_stmt_close.stmt_id"),
    # MySQL 5.6 and MariaDB: the statement id is the first 4 bytes of the packet
    ("mysql", MYSQL_PACKET, "4@0(arg3)"): (),
    ("mariadb", "dispatch_command", "4@0(arg3)"): (),
    # MDL_wait::timed_wait(..., const PSI_stage_info *): the stage's name
    ("mysql", MDL_TIMED_WAIT, "8@8(arg5)"): ("PSI_stage_info_v1.m_name",),
    ("mariadb", MDL_TIMED_WAIT, "8@8(arg5)"): ("PSI_stage_info_v1.m_name",),
}


@dataclass(frozen=True, slots=True)
class OffsetRead:
    """One recipe argument read at a hand-written offset."""

    database: str
    function: str
    arg: RecipeArg

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.database, self.function, self.arg.text)


def offset_reads(database: str) -> list[OffsetRead]:
    """Every argument of a packaged recipe's uprobe hooks that is read at an offset, once."""
    found: dict[tuple[str, str, str], OffsetRead] = {}
    for family in load_recipe(database).families.values():
        for variant in family.variants:
            for hook in variant.hooks:
                for arg in hook.uprobe_args:
                    if hook.symbol is not None and _at_an_offset(arg):
                        read = OffsetRead(database, hook.symbol, arg)
                        found.setdefault(read.key, read)
    return list(found.values())


def _at_an_offset(arg: RecipeArg) -> bool:
    """Memory behind an argument or a return value; a global's inside, past its start."""
    return arg.in_memory and (arg.base != "global" or arg.offset != 0)


@dataclass(frozen=True, slots=True)
class OffsetCheck:
    checked: tuple[str, ...]  # "function 4@8(arg2) = COM_DATA.com_query.length"
    mismatches: tuple[str, ...]


def check_offsets(database: str, binary: ElfBinary, debug: DebugInfo,
                  fields: dict[tuple[str, str, str], tuple[str, ...]] = RECIPE_FIELDS
                  ) -> OffsetCheck:
    """The recipe's offsets for functions the binary has, against its debug information."""
    checked: list[str] = []
    mismatches: list[str] = []
    for read in offset_reads(database):
        if not _has_function(binary, read.function):
            continue
        for path in fields.get(read.key, ()):
            where = f"{read.function} {read.arg.text} = {path}"
            checked.append(where)
            mismatches.extend(_mismatch(where, read.arg, path, debug))
    return OffsetCheck(tuple(checked), tuple(mismatches))


def _mismatch(where: str, arg: RecipeArg, path: str, debug: DebugInfo) -> Iterator[str]:
    member = debug.member(path)
    if member.offset != arg.offset:
        yield f"{where}: the recipe reads offset {arg.offset}, the member is at {member.offset}"
    outer = debug.type_size(path.split(".", 1)[0])
    if arg.offset + arg.size > outer:
        yield f"{where}: reads {arg.size} bytes at {arg.offset}, past the end of its {outer}-byte type"


def _has_function(binary: ElfBinary, name: str) -> bool:
    try:
        find_function(binary, name)
    except UnresolvedHook:
        return False
    return True
