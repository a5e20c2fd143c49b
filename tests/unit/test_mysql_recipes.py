"""The MySQL and MariaDB recipes bound to binaries: which variant each server build gets.

The binaries are real: MySQL stand-ins compiled here with g++ (the dispatch_command
signatures of MySQL 5.7/8.0 and of 5.6, optionally MySQL 5.x's DTrace probes), the
installed mariadbd, and a program that is no database server at all. MySQL 5.7 and 8.0
share one layout of the arguments read; 5.6 has the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dbprobe.discover import targets
from dbprobe.binary.elf import ElfBinary
from dbprobe.errors import DbprobeError
from dbprobe.recipes.bind import FamilyPlan, plan_family, require_plan
from dbprobe.recipes.load import load_recipe
from dbprobe.demo.server import find_program
from tests.support.mariadb import SBIN_DIRS
from tests.support.sdtbin import build_sdt_probes
from tests.support.standin import StandinFlavour, build_standin

COM_DATA_SYMBOL = "_Z16dispatch_commandP3THDPK8COM_DATA19enum_server_command"
PACKET_SYMBOL = "_Z16dispatch_command19enum_server_commandP3THDPcj"
# Where each layout's arguments are: command, thd, text, text length, statement id.
COM_DATA_ARGS = ("4@arg3", "8@arg1", "8@0(arg2)", "4@8(arg2)", "4@0(arg2)")
PACKET_ARGS = ("4@arg1", "8@arg2", "8@arg3", "4@arg4", "4@0(arg3)")
# The same on x86-64: (kind, pt_regs field, offset) of each, as the System V ABI places them.
X86_64_READS = {
    COM_DATA_ARGS: [("reg", "dx", 0), ("reg", "di", 0), ("mem", "si", 0), ("mem", "si", 8),
                    ("mem", "si", 0)],
    PACKET_ARGS: [("reg", "di", 0), ("reg", "si", 0), ("reg", "dx", 0), ("reg", "cx", 0),
                  ("mem", "dx", 0)],
}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mysql-recipes")


@pytest.fixture(scope="module")
def mysql8(build_dir) -> ElfBinary:
    return ElfBinary(str(build_standin(build_dir, StandinFlavour(version="8.0.36"))))


@pytest.fixture(scope="module")
def mysql56(build_dir) -> ElfBinary:
    flavour = StandinFlavour(version="5.6.51", packet_signature=True)
    return ElfBinary(str(build_standin(build_dir, flavour)))


@pytest.fixture(scope="module")
def mysql57_usdt(build_dir) -> ElfBinary:
    return ElfBinary(str(build_standin(build_dir, StandinFlavour(version="5.7.44", usdt=True))))


def query_plan(database: str, binary: ElfBinary, version: str | None) -> FamilyPlan:
    return plan_family(load_recipe(database), "query", binary, version)


def entry_and_return(plan: FamilyPlan) -> tuple[tuple[str, ...], bool]:
    """The entry site's argument specs; and whether the other site is its function's return."""
    entry, done = plan.sites
    assert (entry.handler, done.handler) == ("my_dispatch", "my_dispatch_done")
    assert entry.file_offset == done.file_offset and not entry.on_return
    texts = tuple(spec.text for spec in entry.args)
    assert [(spec.kind, spec.reg, spec.offset) for spec in entry.args] == X86_64_READS[texts]
    return texts, done.on_return


@pytest.mark.parametrize("version", ["8.0.36", "5.7.44", None])
def test_mysql_57_and_later_read_com_data(mysql8, version):
    plan = query_plan("mysql", mysql8, version)

    assert plan.mechanism == "uprobe"
    assert entry_and_return(plan) == (COM_DATA_ARGS, True)
    assert mysql8.symbol(COM_DATA_SYMBOL).file_offset == plan.sites[0].file_offset
    assert [site.label for site in plan.sites] == ["dispatch_command", "dispatch_command (return)"]
    # Why it has none, in MySQL's terms (PostgreSQL's configure flag means nothing here).
    assert plan.rejected[0] == ("usdt: the binary has no USDT probes (MySQL 8.0 and later have "
                                "none; 5.x builds have them with -DENABLE_DTRACE=ON)")


@pytest.mark.parametrize("version", ["5.6.51", None])
def test_mysql_56_reads_the_raw_packet(mysql56, version):
    plan = query_plan("mysql", mysql56, version)

    assert plan.mechanism == "uprobe"
    assert entry_and_return(plan) == (PACKET_ARGS, True)
    assert mysql56.symbol(PACKET_SYMBOL).file_offset == plan.sites[0].file_offset


def test_the_signature_decides_over_the_version_string(mysql8, mysql56):
    # The mangled name spells out the parameters: it is the layout, whatever the version says.
    assert entry_and_return(query_plan("mysql", mysql8, "5.6.51")) == (COM_DATA_ARGS, True)
    assert entry_and_return(query_plan("mysql", mysql56, "8.0.36")) == (PACKET_ARGS, True)


def test_a_dispatch_command_of_neither_signature_is_not_traced():
    # MariaDB's has a fifth parameter: not MySQL 5.6's signature, nor 5.7's.
    mariadbd = ElfBinary(str(find_program("mariadbd", search=SBIN_DIRS)))
    plan = query_plan("mysql", mariadbd, None)

    assert not plan.available
    assert any(COM_DATA_SYMBOL in reason and "not found" in reason for reason in plan.rejected)
    assert any(PACKET_SYMBOL in reason and "not found" in reason for reason in plan.rejected)
    with pytest.raises(DbprobeError, match="cannot trace query"):
        require_plan(plan, "mysql")


@pytest.mark.parametrize("database", ["mysql", "mariadb"])
def test_usdt_is_preferred_when_the_build_has_query_probes(mysql57_usdt, database):
    plan = query_plan(database, mysql57_usdt, "5.7.44")

    assert plan.mechanism == "usdt" and plan.rejected == ()
    start, done = plan.sites
    assert (start.label, done.label) == ("mysql:query__start", "mysql:query__done")
    assert (start.handler, done.handler) == ("my_query_start", "my_query_done")
    (note_start,) = mysql57_usdt.usdt_probe_sites("mysql", "query__start")
    assert start.file_offset == note_start.file_offset
    assert start.args == note_start.args[:1]  # the query text


def test_mariadb_reads_the_raw_packet_of_its_exported_dispatch_command():
    mariadbd = ElfBinary(str(find_program("mariadbd", search=SBIN_DIRS)))
    (exported,) = [symbol for symbol in mariadbd.symbols_matching(r"^_Z16dispatch_command")
                   if "." not in symbol.name]
    # Every MariaDB release starts with (command, THD *, char *packet, uint length).
    assert exported.name.startswith(PACKET_SYMBOL)

    plan = query_plan("mariadb", mariadbd, "10.11.19")

    assert plan.mechanism == "uprobe"
    assert plan.rejected == ("usdt: the binary has no USDT probes (built without -DENABLE_DTRACE=ON)",)
    assert entry_and_return(plan) == (PACKET_ARGS, True)
    assert plan.sites[0].file_offset == exported.file_offset


def test_a_binary_that_is_no_database_server(tmp_path):
    program = build_sdt_probes(tmp_path)

    for database in ("mysql", "mariadb"):
        plan = query_plan(database, ElfBinary(str(program)), None)
        assert not plan.available
        assert any("no USDT probe mysql:query__start" in reason for reason in plan.rejected)
        assert any("dispatch_command" in reason and "not found" in reason
                   for reason in plan.rejected)
    with pytest.raises(DbprobeError, match="not a PostgreSQL, MariaDB or MySQL server binary"):
        targets.choose_targets(pid=None, binary=str(program), databases=("mysql", "mariadb"))
