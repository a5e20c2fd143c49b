"""Binding recipes to binaries: the real PostgreSQL server, copies of it without probes or
symbols, and small programs compiled here. ``readelf`` and ``nm`` are the oracle."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from dbprobe.discover.processes import identify_binary
from dbprobe.binary.elf import ElfBinary
from dbprobe.errors import DbprobeError
from dbprobe.recipes.bind import (
    FamilyPlan,
    ProbeSite,
    UnresolvedHook,
    find_function,
    plan_family,
    require_plan,
)
from dbprobe.recipes.load import Recipe, _recipe_from, load_recipe
from tests.support.sdtbin import (
    build_sdt_probes,
    compile_c,
    nm_symbols,
    objcopy,
    readelf_file_offset,
    readelf_probes,
)

NO_USDT_REASON = "the binary has no USDT probes"
LOCKS_USDT_PROBES = ("deadlock__found", "lwlock__wait__start", "lwlock__wait__done")
SETUP_HINT = "apt-get install postgresql-15 (the tests read its server binary)"


def sites_by_label(plan: FamilyPlan) -> dict[str, list[ProbeSite]]:
    found: dict[str, list[ProbeSite]] = {}
    for site in plan.sites:
        found.setdefault(site.label, []).append(site)
    return found


def arg_texts(site: ProbeSite) -> list[str]:
    return [spec.text for spec in site.args]


# --- the real PostgreSQL server -----------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_binary() -> Path:
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not found:
        pytest.fail(f"no /usr/lib/postgresql/*/bin/postgres: {SETUP_HINT}", pytrace=False)
    return Path(max(found, key=lambda path: [int(n) for n in re.findall(r"\d+", path)]))


@pytest.fixture(scope="module")
def postgres_version(postgres_binary: Path) -> str:
    db, version = identify_binary(str(postgres_binary))
    assert db == "postgresql" and version, f"{postgres_binary}: not identified ({db}, {version})"
    return version


@pytest.fixture(scope="module")
def usdt_less_postgres(postgres_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("pg-no-usdt") / "postgres"
    objcopy("--remove-section", ".note.stapsdt", postgres_binary, copy)
    return copy


@pytest.fixture(scope="module")
def stripped_postgres(postgres_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("pg-stripped") / "postgres"
    objcopy("--strip-all", "--remove-section", ".note.stapsdt", postgres_binary, copy)
    return copy


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe("postgresql")


def query_plan(recipe: Recipe, binary: Path, version: str | None) -> FamilyPlan:
    return plan_family(recipe, "query", ElfBinary(binary), version)


def test_query_family_plans_as_usdt(
    recipe: Recipe, postgres_binary: Path, postgres_version: str
) -> None:
    plan = query_plan(recipe, postgres_binary, postgres_version)
    assert (plan.available, plan.mechanism, plan.rejected, plan.why) == (True, "usdt", (), "usdt")
    assert plan.binary == str(postgres_binary)
    assert plan.family is recipe.family("query")
    # The activity is read at pgstat_report_activity's entry, where its state is an argument;
    # executions end at the USDT probe, at the end of PortalRun and of PortalRunMulti's queries.
    sites = sites_by_label(plan)
    # And a parallel worker learns its leader at pq_set_parallel_leader.
    assert set(sites) == {"pgstat_report_activity", "AbortCurrentTransaction",
                          "postgresql:query__execute__done", "pq_set_parallel_leader"}
    executed = sites["postgresql:query__execute__done"]
    assert len(executed) == 2
    assert {(site.handler, site.mechanism, site.on_return) for site in executed} == {
        ("pg_executed", "usdt", False)}


@pytest.mark.parametrize("probe_name", LOCKS_USDT_PROBES)
def test_usdt_sites_are_the_notes_of_the_binary(
    recipe: Recipe, postgres_binary: Path, postgres_version: str, probe_name: str
) -> None:
    plan = plan_family(recipe, "locks", ElfBinary(postgres_binary), postgres_version)
    (hook,) = [h for h in recipe.family("locks").variants[0].hooks if h.probe == probe_name]
    notes = [note for note in readelf_probes(postgres_binary)
             if (note.provider, note.name) == ("postgresql", probe_name)]
    sites = sites_by_label(plan)[f"postgresql:{probe_name}"]
    assert len(sites) == len(notes) >= 1
    in_order = zip(sorted(sites, key=lambda s: s.address), sorted(notes, key=lambda n: n.location))
    for site, note in in_order:
        assert site.handler == hook.handler
        assert (site.mechanism, site.on_return) == ("usdt", False)
        assert site.binary == str(postgres_binary)
        assert site.address == note.location
        assert site.file_offset == readelf_file_offset(postgres_binary, note.location)
        assert site.ref_ctr_offset != 0
        assert site.ref_ctr_offset == readelf_file_offset(postgres_binary, note.semaphore)
        note_args = note.arguments.split()
        assert arg_texts(site) == [note_args[arg - 1] if isinstance(arg, int) else arg.text
                                   for arg in hook.usdt_args]


def test_usdt_plan_reads_the_activity_arguments(
    recipe: Recipe, postgres_binary: Path, postgres_version: str
) -> None:
    site, storage = sites_by_label(query_plan(recipe, postgres_binary, postgres_version))[
        "pgstat_report_activity"]
    assert (site.handler, storage.handler) == ("pg_activity", "pg_wait_storage")
    (pointer,) = storage.args  # where the backend's wait_event_info is (probes/waits.h)
    assert (pointer.size, pointer.kind, pointer.symbol) == (8, "symbol", "my_wait_event_info")
    state, text, database = site.args
    assert (state.size, state.kind, text.size, text.kind) == (4, "reg", 8, "reg")
    assert (database.size, database.kind, database.symbol) == (4, "symbol", "MyDatabaseId")


def test_usdt_plan_catches_errors_with_a_uprobe(
    recipe: Recipe, postgres_binary: Path, postgres_version: str
) -> None:
    (site,) = sites_by_label(query_plan(recipe, postgres_binary, postgres_version))[
        "AbortCurrentTransaction"]
    symbol = nm_symbols(postgres_binary, "-D")["AbortCurrentTransaction"]
    assert (site.handler, site.mechanism, site.on_return, site.ref_ctr_offset, site.args) == (
        "pg_error", "uprobe", False, 0, ())
    assert site.address == symbol.address
    assert site.file_offset == readelf_file_offset(postgres_binary, symbol.address)


def test_without_usdt_notes_it_plans_uprobes(recipe: Recipe, usdt_less_postgres: Path,
                                             postgres_version: str) -> None:
    plan = query_plan(recipe, usdt_less_postgres, postgres_version)
    assert plan.mechanism == "uprobe"
    assert NO_USDT_REASON in plan.why
    assert plan.why.startswith("uprobe (usdt: ")
    (rejected,) = plan.rejected
    assert rejected.startswith("usdt: ") and NO_USDT_REASON in rejected
    symbols = nm_symbols(usdt_less_postgres, "-D")
    labels = Counter(site.label for site in plan.sites)
    # pgstat_report_activity: the activity, and where the wait event is (one place, one trap).
    assert labels == Counter({"pgstat_report_activity": 2, "AbortCurrentTransaction": 1,
                              "PortalRun (return)": 1, "pq_set_parallel_leader": 1})
    for site in plan.sites:
        function = symbols[site.label.removesuffix(" (return)")]
        assert (site.mechanism, site.ref_ctr_offset) == ("uprobe", 0)
        assert site.on_return == site.label.endswith("(return)")
        assert site.file_offset == readelf_file_offset(usdt_less_postgres, function.address)
    activity, _storage = sites_by_label(plan)["pgstat_report_activity"]
    assert (activity.handler, arg_texts(activity)) == (
        "pg_activity", ["4@arg1", "8@arg2", "4@MyDatabaseId"])
    # on x86-64 the arguments are in edi and rsi; the global is found relative to rip
    assert [(spec.kind, spec.reg) for spec in activity.args] == [
        ("reg", "di"), ("reg", "si"), ("symbol", "ip")]
    assert activity.globals == (("MyDatabaseId", symbols["MyDatabaseId"].address),)
    (executed,) = sites_by_label(plan)["PortalRun (return)"]
    assert (executed.handler, executed.args) == ("pg_executed", ())


@pytest.mark.parametrize(
    ("version", "backend_global"),
    [("15", "MyBackendId"), ("15.20", "MyBackendId"), ("16.9", "MyBackendId"),
     ("17.2", "MyProcNumber"), ("18.1", "MyProcNumber")],
)
def test_the_backend_id_global_depends_on_the_version(
    recipe: Recipe, usdt_less_postgres: Path, version: str, backend_global: str
) -> None:
    plan = plan_family(recipe, "txn", ElfBinary(usdt_less_postgres), version)
    if backend_global == "MyProcNumber":  # PostgreSQL 15 has no MyProcNumber: unresolved
        assert not plan.available and "MyProcNumber" in plan.why
        return
    (activity,) = sites_by_label(plan)["pgstat_report_activity"]
    assert arg_texts(activity)[-1] == f"4@{backend_global}"


@pytest.mark.parametrize("version", [None, "19devel"])
def test_an_unplaceable_version_never_plans_two_readings_of_one_function(
    recipe: Recipe, usdt_less_postgres: Path, version: str | None
) -> None:
    plan = plan_family(recipe, "locks", ElfBinary(usdt_less_postgres), version)
    entries = Counter((site.handler, site.file_offset, site.on_return) for site in plan.sites)
    assert [key for key, count in entries.items() if count > 1] == []


def test_strip_all_keeps_the_exported_functions(
    recipe: Recipe, stripped_postgres: Path, usdt_less_postgres: Path, postgres_version: str
) -> None:
    # PostgreSQL exports its functions for extensions: .dynsym survives --strip-all.
    stripped = query_plan(recipe, stripped_postgres, postgres_version)
    unstripped = query_plan(recipe, usdt_less_postgres, postgres_version)
    assert ElfBinary(stripped_postgres).symbol("pgstat_report_activity").source == ".dynsym"
    assert stripped.mechanism == "uprobe"
    assert [(s.label, s.file_offset, arg_texts(s)) for s in stripped.sites] == [
        (s.label, s.file_offset, arg_texts(s)) for s in unstripped.sites]


# --- binaries that cannot be traced --------------------------------------------------------


@pytest.fixture
def stripped_program(tmp_path: Path) -> Path:
    source = tmp_path / "tiny.c"
    source.write_text("int main(void) { return 0; }\n")
    built = compile_c([source], tmp_path / "tiny-unstripped")
    stripped = tmp_path / "tiny"
    objcopy("--strip-all", "--remove-section", ".note.stapsdt", built, stripped)
    return stripped


def test_stripped_program_has_no_plan(recipe: Recipe, stripped_program: Path) -> None:
    plan = query_plan(recipe, stripped_program, "15.4")
    assert (plan.available, plan.mechanism, plan.sites) == (False, None, ())
    usdt, uprobe = plan.rejected
    assert usdt.startswith("usdt: ") and NO_USDT_REASON in usdt
    assert uprobe.startswith("uprobe: function pgstat_report_activity not found")
    assert plan.why == f"{usdt}; {uprobe}"


def test_require_plan_names_the_binary_and_the_reasons(
    recipe: Recipe, stripped_program: Path
) -> None:
    plan = query_plan(recipe, stripped_program, "15.4")
    with pytest.raises(DbprobeError) as raised:
        require_plan(plan, "postgresql")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot trace query in {stripped_program} (postgresql): ")
    assert NO_USDT_REASON in message
    assert "function pgstat_report_activity not found" in message


def test_require_plan_passes_an_available_plan(recipe: Recipe, postgres_binary: Path,
                                               postgres_version: str) -> None:
    plan = query_plan(recipe, postgres_binary, postgres_version)
    assert require_plan(plan, "postgresql") is plan


# --- USDT resolution on a program compiled here --------------------------------------------


@pytest.fixture(scope="module")
def sdt_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sdt_probes(tmp_path_factory.mktemp("sdt"))


def demo_recipe(folder: Path, *variants: dict) -> Recipe:
    (folder / "demo.bpf.c").write_text("/* handlers */\n")
    return _recipe_from(
        {"database": "demo", "usdt_provider": "demo",
         "families": {"query": {"source": "demo.bpf.c", "variants": list(variants)}}},
        folder / "demo.toml",
    )


def usdt(*hooks: dict) -> dict:
    return {"mechanism": "usdt", "hooks": list(hooks)}


def uprobe(*hooks: dict) -> dict:
    return {"mechanism": "uprobe", "hooks": list(hooks)}


def demo_plan(
    tmp_path: Path, binary: Path, *variants: dict, version: str | None = None
) -> FamilyPlan:
    return plan_family(demo_recipe(tmp_path, *variants), "query", ElfBinary(binary), version)


def test_a_probe_with_two_sites_gives_two_sites(tmp_path: Path, sdt_program: Path) -> None:
    plan = demo_plan(tmp_path, sdt_program, usdt({"handler": "h", "probe": "twice", "args": [1]}))
    notes = [note for note in readelf_probes(sdt_program) if note.name == "twice"]
    assert [(s.address, arg_texts(s)) for s in plan.sites] == [
        (note.location, [note.arguments]) for note in notes]
    assert all(site.ref_ctr_offset == 0 for site in plan.sites)  # no semaphore


def test_semaphore_of_a_guarded_probe(tmp_path: Path, sdt_program: Path) -> None:
    plan = demo_plan(tmp_path, sdt_program, usdt({"handler": "h", "probe": "guarded"}))
    (note,) = [note for note in readelf_probes(sdt_program) if note.name == "guarded"]
    (site,) = plan.sites
    assert site.ref_ctr_offset == readelf_file_offset(sdt_program, note.semaphore) != 0


def test_globals_read_by_a_probe_are_located(tmp_path: Path, sdt_program: Path) -> None:
    hook = {"handler": "h", "probe": "global", "args": [1, 2]}
    plan = demo_plan(tmp_path, sdt_program, usdt(hook))
    (site,) = plan.sites
    symbols = nm_symbols(sdt_program)
    assert site.globals == (("request_count", symbols["request_count"].address),
                            ("statistics", symbols["statistics"].address))


def test_a_usdt_hook_reads_a_global_at_its_site(tmp_path: Path, sdt_program: Path) -> None:
    hook = {"handler": "h", "probe": "in_register", "args": [1, "-4@request_count"]}
    plan = demo_plan(tmp_path, sdt_program, usdt(hook))
    (site,) = plan.sites
    (note,) = [note for note in readelf_probes(sdt_program) if note.name == "in_register"]
    assert arg_texts(site) == [note.arguments, "-4@request_count"]
    assert site.globals == (("request_count", nm_symbols(sdt_program)["request_count"].address),)


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        ({"handler": "h", "probe": "nope"}, "usdt: no USDT probe demo:nope"),
        ({"handler": "h", "probe": "in_register", "args": [2]},
         "usdt: demo:in_register has 1 arguments, the recipe reads argument 2"),
        ({"handler": "h", "probe": "floating", "args": [1]},
         "usdt: demo:floating at 0x"),
        ({"handler": "h", "symbol": "no_such_function"},
         "usdt: function no_such_function not found in the symbol tables"),
        ({"handler": "h", "symbol": "request_count"}, "usdt: request_count is not a function"),
        ({"handler": "h", "symbol": "main", "args": ["8@not_exported"]},
         "usdt: main reads global not_exported, which the binary does not export"),
    ],
)
def test_unresolved_hooks_say_why(
    tmp_path: Path, sdt_program: Path, hook: dict, reason: str
) -> None:
    plan = demo_plan(tmp_path, sdt_program, usdt(hook))
    assert not plan.available
    (rejected,) = plan.rejected
    assert rejected.startswith(reason)


def test_uprobe_arguments_resolve_in_the_registers_of_x86_64(
    tmp_path: Path, sdt_program: Path
) -> None:
    args = ["8@arg1", "-4@arg6", "4@16(arg2)", "8@arg7", "-2@arg8", "4@statistics+8"]
    plan = demo_plan(tmp_path, sdt_program, uprobe({"handler": "h", "symbol": "main", "args": args}))
    (site,) = plan.sites
    assert arg_texts(site) == args
    assert [(spec.kind, spec.reg, spec.offset, spec.size, spec.signed) for spec in site.args] == [
        ("reg", "di", 0, 8, False),
        ("reg", "r9", 0, 4, True),
        ("mem", "si", 16, 4, False),
        ("mem", "sp", 8, 8, False),  # the seventh is on the stack, above the return address
        ("mem", "sp", 16, 2, True),
        ("symbol", "ip", 8, 4, False),
    ]


def test_a_field_of_a_stack_argument_is_not_resolved(tmp_path: Path, sdt_program: Path) -> None:
    hook = {"handler": "h", "symbol": "main", "args": ["8@8(arg7)"]}
    plan = demo_plan(tmp_path, sdt_program, uprobe(hook))
    assert not plan.available
    (rejected,) = plan.rejected
    assert rejected == ("uprobe: recipe argument '8@8(arg7)': argument 7 is on the stack on x86_64,"
                        " and memory it points to cannot be read")


def test_arguments_of_a_binary_of_another_architecture_are_not_resolved(
    tmp_path: Path, sdt_program: Path
) -> None:
    foreign = tmp_path / "aarch64-program"
    image = bytearray(sdt_program.read_bytes())
    image[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    foreign.write_bytes(bytes(image))
    assert ElfBinary(foreign).machine == "aarch64" and ElfBinary(foreign).architecture is None
    reads = uprobe({"handler": "h", "symbol": "main", "args": ["8@arg1"]})
    plain = uprobe({"handler": "h", "symbol": "main"})
    plan = demo_plan(tmp_path, foreign, reads, plain)
    assert plan.rejected == ("uprobe: recipes cannot read arguments of aarch64 binaries",)
    assert plan.available and plan.sites[0].args == ()


def test_floating_point_probe_can_be_attached_without_reading_it(
    tmp_path: Path, sdt_program: Path
) -> None:
    plan = demo_plan(tmp_path, sdt_program, usdt({"handler": "h", "probe": "floating"}))
    (site,) = plan.sites
    assert site.args == ()


def test_the_first_variant_that_resolves_wins(tmp_path: Path, sdt_program: Path) -> None:
    plan = demo_plan(tmp_path, sdt_program,
                     usdt({"handler": "h", "probe": "nope"}),
                     uprobe({"handler": "h", "symbol": "main"}),
                     usdt({"handler": "h", "probe": "in_register"}))
    assert plan.mechanism == "uprobe"
    assert plan.why == "uprobe (usdt: no USDT probe demo:nope)"


def test_a_variant_without_hooks_for_the_version_is_rejected(
    tmp_path: Path, sdt_program: Path
) -> None:
    plan = demo_plan(tmp_path, sdt_program,
                     usdt({"handler": "h", "probe": "in_register", "versions": ">=2"}),
                     version="1.0")
    assert plan.rejected == ("usdt: no hooks for version 1.0",)


# --- C++ functions -------------------------------------------------------------------------


def compile_cxx(source_text: str, output: Path) -> ElfBinary:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.fail("g++ is not installed: apt-get install g++", pytrace=False)
    source = output.with_suffix(".cc")
    source.write_text(source_text)
    result = subprocess.run([gxx, "-O0", "-o", str(output), str(source)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"g++ failed:\n{result.stderr}", pytrace=False)
    return ElfBinary(output)


CXX_SERVER = """
struct Session { void dispatch_command(); };
void Session::dispatch_command() {}
void dispatch_command(int, void*, char*, unsigned) {}
int request_count = 1;
int main() { Session().dispatch_command(); dispatch_command(0, 0, 0, 0); return request_count; }
"""

CXX_OVERLOADS = """
void dispatch_command(int) {}
void dispatch_command(double) {}
int main() { dispatch_command(1); dispatch_command(1.0); return 0; }
"""


def test_find_function_finds_a_mangled_free_function(tmp_path: Path) -> None:
    binary = compile_cxx(CXX_SERVER, tmp_path / "server")
    found = find_function(binary, "dispatch_command")
    oracle = nm_symbols(binary.path)
    assert found.name == "_Z16dispatch_commandiPvPcj"  # the free function, not Session's
    assert "_ZN7Session16dispatch_commandEv" in oracle
    assert (found.kind, found.address) == ("func", oracle[found.name].address)
    assert found.file_offset == readelf_file_offset(binary.path, found.address)


def test_find_function_by_exact_mangled_name(tmp_path: Path) -> None:
    binary = compile_cxx(CXX_SERVER, tmp_path / "server")
    assert find_function(binary, "_ZN7Session16dispatch_commandEv").name == (
        "_ZN7Session16dispatch_commandEv")


def test_find_function_reports_ambiguous_overloads(tmp_path: Path) -> None:
    binary = compile_cxx(CXX_OVERLOADS, tmp_path / "overloads")
    with pytest.raises(UnresolvedHook) as raised:
        find_function(binary, "dispatch_command")
    assert str(raised.value) == (
        "function dispatch_command is ambiguous (_Z16dispatch_commandd, _Z16dispatch_commandi):"
        " name one in the recipe")


def test_find_function_refuses_data_and_missing_names(tmp_path: Path) -> None:
    binary = compile_cxx(CXX_SERVER, tmp_path / "server")
    with pytest.raises(UnresolvedHook, match="^request_count is not a function$"):
        find_function(binary, "request_count")
    with pytest.raises(UnresolvedHook, match="^function dispatch not found"):
        find_function(binary, "dispatch")
