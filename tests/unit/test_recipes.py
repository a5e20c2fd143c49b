"""Probe recipes: the packaged ones load and match their BPF sources; broken ones say where."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from dbprobe.recipes import load as recipes
from dbprobe.kernel.program import expand_includes
from dbprobe.recipes.load import (
    Hook,
    Recipe,
    RecipeError,
    _recipe_from,
    available_databases,
    load_recipe,
    probes_dir,
)

HANDLER_SIGNATURE = (
    r"static\s+__always_inline\s+int\s+{name}\s*\(\s*struct\s+pt_regs\s*\*\s*ctx\s*,"
    r"\s*const\s+struct\s+dbp_args\s*\*\s*args\s*,\s*u16\s+hook\s*\)"
)
DBP_MAX_ARGS = re.compile(r"#define\s+DBP_MAX_ARGS\s+(\d+)")


def packaged_recipes() -> list[Recipe]:
    return [load_recipe(database) for database in available_databases()]


# --- the packaged recipes ----------------------------------------------------------------


def test_there_are_packaged_recipes() -> None:
    assert "postgresql" in available_databases()


@pytest.mark.parametrize("database", available_databases())
def test_every_packaged_recipe_loads(database: str) -> None:
    recipe = load_recipe(database)
    assert recipe.database == database
    assert recipe.families, f"{database}.toml has no families"
    for family in recipe.families.values():
        assert family.source.is_file()
        assert family.variants, f"{database}: family {family.name} has no variants"
        for variant in family.variants:
            assert variant.mechanism in ("usdt", "uprobe")
            assert variant.hooks


@pytest.mark.parametrize("database", available_databases())
def test_every_handler_exists_in_the_family_source(database: str) -> None:
    for family in load_recipe(database).families.values():
        source = expand_includes(family.source, set())
        handlers = {hook.handler for variant in family.variants for hook in variant.hooks}
        missing = [
            handler
            for handler in sorted(handlers)
            if not re.search(HANDLER_SIGNATURE.format(name=re.escape(handler)), source)
        ]
        assert missing == [], (
            f"{database}.toml family {family.name}: no "
            "'static __always_inline int <handler>(struct pt_regs *ctx, const struct dbp_args *args, "
            f"u16 hook)' in {family.source.name} for {missing}"
        )


def test_the_signature_check_rejects_a_near_miss() -> None:
    near_misses = [
        "static __always_inline int pg_activity(struct pt_regs *ctx, struct dbp_args *args, u16 hook)",
        "static __always_inline void pg_activity(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)",
        "static __always_inline int pg_activity_x(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)",
        "static __always_inline int pg_activity(struct pt_regs *ctx, const u64 *args, u16 hook)",
    ]
    pattern = HANDLER_SIGNATURE.format(name="pg_activity")
    assert re.search(pattern, "static __always_inline int pg_activity(struct pt_regs *ctx, "
                              "const struct dbp_args *args, u16 hook)")
    assert [text for text in near_misses if re.search(pattern, text)] == []


@pytest.mark.parametrize("database", available_databases())
def test_hooks_read_no_more_arguments_than_handlers_receive(database: str) -> None:
    header = (probes_dir() / "args.h").read_text()
    (max_args,) = DBP_MAX_ARGS.findall(header)
    for family in load_recipe(database).families.values():
        for variant in family.variants:
            for hook in variant.hooks:
                assert len(hook.usdt_args) + len(hook.uprobe_args) <= int(max_args), hook


def test_postgresql_recipe_shape() -> None:
    recipe = load_recipe("postgresql")
    assert recipe.usdt_provider == "postgresql"
    assert set(recipe.process_names) >= {"postgres"}
    query = recipe.family("query")
    assert query.source.name == "postgresql_query.bpf.c"
    assert [variant.mechanism for variant in query.variants] == ["usdt", "uprobe"]
    usdt, uprobe = query.variants
    # The activity is read at the function in both; executions end at the USDT probe, or
    # at PortalRun's return, which is where that probe is.
    assert [hook.handler for hook in usdt.hooks] == [hook.handler for hook in uprobe.hooks]
    usdt_executed, uprobe_executed = (
        next(hook for hook in variant.hooks if hook.handler == "pg_executed")
        for variant in (usdt, uprobe))
    assert [hook for hook in usdt.hooks if hook is not usdt_executed] == [
        hook for hook in uprobe.hooks if hook is not uprobe_executed]
    assert (usdt_executed.probe, usdt_executed.on_return) == ("query__execute__done", False)
    assert (uprobe_executed.symbol, uprobe_executed.on_return) == ("PortalRun", True)
    assert all(hook.probe is None and hook.symbol for hook in uprobe.hooks)
    assert {hook.symbol for hook in uprobe.hooks} == {
        "pgstat_report_activity", "PortalRun", "AbortCurrentTransaction", "pq_set_parallel_leader"}
    locks_uprobe = recipe.family("locks").variants[1]
    (returning,) = [hook for hook in locks_uprobe.hooks if hook.on_return]
    assert (returning.symbol, returning.target) == ("ProcSleep", "ProcSleep (return)")


@pytest.mark.parametrize("database", available_databases())
def test_packaged_recipes_name_arguments_not_registers(database: str) -> None:
    readings = [arg for family in load_recipe(database).families.values()
                for variant in family.variants for hook_read in variant.hooks
                for arg in (*hook_read.usdt_args, *hook_read.uprobe_args)
                if not isinstance(arg, int)]
    assert readings, f"{database}.toml reads no arguments"
    assert [arg.text for arg in readings if "%" in arg.text] == []
    text = (probes_dir() / f"{database}.toml").read_text()
    assert "%" not in text, f"{database}.toml names a register, in a comment at least"


def test_unknown_family_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="postgresql recipe has no 'bogus' probes"):
        load_recipe("postgresql").family("bogus")


# --- version selection -------------------------------------------------------------------


def hook(versions: str | list[str] | None) -> Hook:
    return recipes._hook_from(
        {"handler": "h", "symbol": "f", **({} if versions is None else {"versions": versions})},
        "uprobe",
        "test",
    )


@pytest.mark.parametrize(
    ("versions", "version", "applies"),
    [
        (">=10,<18", "15.4", True),
        (">=10,<18", "10", True),
        (">=10,<18", "17.99", True),
        (">=10,<18", "9.6", False),
        (">=10,<18", "18.0", False),
        (">=10,<18", "18.1", False),
        (["<10", ">=18"], "9.6", True),
        (["<10", ">=18"], "9.6.24", True),
        (["<10", ">=18"], "18.1", True),
        (["<10", ">=18"], "15.4", False),
        ("==10.11.*", "10.11.6", True),
        ("==10.11.*", "10.6.1", False),
        # A version that cannot be read is taken for a recent one: one alternative applies.
        (">=10,<18", None, False),
        (["<10", ">=18"], None, True),
        (">=10,<18", "not a version", False),
        (["<10", ">=18"], "not a version", True),
        # No versions at all: every version.
        (None, "15.4", True),
        (None, None, True),
    ],
)
def test_applies_to(versions: str | list[str] | None, version: str | None, applies: bool) -> None:
    assert hook(versions).applies_to(version) is applies


def test_versions_are_kept_as_specifier_sets() -> None:
    assert hook(["<10", ">=18"]).versions == (SpecifierSet("<10"), SpecifierSet(">=18"))
    assert hook(">=10,<18").versions == (SpecifierSet(">=10,<18"),)
    assert hook(None).versions == ()


def backend_id_global(version: str | None) -> list[str]:
    """The global the txn uprobe recipe reads the backend id from (the activity's last
    argument), for a server version."""
    uprobe = load_recipe("postgresql").family("txn").variants[1]
    return [
        selected.uprobe_args[-1].symbol
        for selected in uprobe.hooks_for(version)
        if selected.symbol == "pgstat_report_activity"
    ]


@pytest.mark.parametrize(
    ("version", "symbol"),
    [("15.4", "MyBackendId"), ("10.23", "MyBackendId"), ("9.6", "MyBackendId"),
     ("16.9", "MyBackendId"), ("17.0", "MyProcNumber"), ("18.1", "MyProcNumber")],
)
def test_hooks_for_picks_the_global_of_the_version(version: str, symbol: str) -> None:
    assert backend_id_global(version) == [symbol]


def test_hooks_for_keeps_hooks_without_versions() -> None:
    uprobe = load_recipe("postgresql").family("txn").variants[1]
    selected = uprobe.hooks_for("15.4")
    assert {h.handler for h in selected} == {"pg_activity", "pg_txn_abort"}
    assert len(selected) == len(uprobe.hooks) - 3  # one reading of the activity per version


@pytest.mark.parametrize("version", ["17beta1", "17rc1"])
def test_a_pre_release_uses_the_hooks_of_its_release(version: str) -> None:
    assert backend_id_global(version) == ["MyProcNumber"]


def test_a_development_version_uses_the_hooks_of_its_release() -> None:
    assert backend_id_global("19devel") == ["MyProcNumber"]


def test_an_unknown_version_is_taken_for_a_recent_one() -> None:
    assert backend_id_global(None) == ["MyProcNumber"]


# --- malformed recipes --------------------------------------------------------------------


RECIPE_FILE = "broken.toml"
HOOK_AT = f"{RECIPE_FILE}: families.query.variants[0].hooks[0]"


@pytest.fixture
def probes_folder(tmp_path: Path) -> Path:
    (tmp_path / "query.bpf.c").write_text("/* handlers */\n")
    return tmp_path


def document(*hooks: dict, mechanism: str = "usdt") -> dict:
    return {
        "database": "demo",
        "usdt_provider": "demo",
        "families": {
            "query": {
                "source": "query.bpf.c",
                "variants": [{"mechanism": mechanism, "hooks": list(hooks)}],
            }
        },
    }


def recipe_error(folder: Path, body: dict) -> str:
    with pytest.raises(RecipeError) as raised:
        _recipe_from(body, folder / RECIPE_FILE)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_valid_document_loads(probes_folder: Path) -> None:
    recipe = _recipe_from(
        document(
            {"handler": "start", "probe": "query__start", "args": [1, 2]},
            {"handler": "fail", "symbol": "abort_query", "args": ["8@arg1", "-4@8(arg2)"]},
            {"handler": "done", "symbol": "abort_query", "return": True, "args": ["-4@ret"]},
        ),
        probes_folder / RECIPE_FILE,
    )
    (variant,) = recipe.family("query").variants
    start, fail, done = variant.hooks
    assert (start.probe, start.usdt_args, start.symbol) == ("query__start", (1, 2), None)
    assert (fail.symbol, [spec.text for spec in fail.uprobe_args]) == (
        "abort_query", ["8@arg1", "-4@8(arg2)"])
    field = fail.uprobe_args[1]
    assert (field.base, field.number, field.in_memory, field.offset, field.signed) == (
        "arg", 2, True, 8, True)
    (returned,) = done.uprobe_args
    assert (done.on_return, returned.base, returned.size, returned.signed) == (True, "ret", 4, True)
    assert recipe.family("query").source == probes_folder / "query.bpf.c"


@pytest.mark.parametrize(
    ("hook_body", "mechanism", "expected"),
    [
        ({"probe": "query__start"}, "usdt", f"{HOOK_AT}: 'handler' must be a str"),
        ({"handler": 7, "probe": "query__start"}, "usdt", f"{HOOK_AT}: 'handler' must be a str"),
        ({"handler": "h", "probe": "p", "args": [0]}, "usdt",
         f"{HOOK_AT}: usdt args are argument numbers from 1"),
        ({"handler": "h", "probe": "p", "args": [1.0]}, "usdt",
         f"{HOOK_AT}: usdt args are argument numbers from 1"),
        ({"handler": "h", "probe": "p", "args": [1, "8@%rsi"]}, "usdt",
         f"{HOOK_AT}: recipe argument '8@%rsi' names a register"),
        ({"handler": "h", "probe": "p", "args": [1, "8@arg2"]}, "usdt",
         f"{HOOK_AT}: recipe argument '8@arg2': a USDT probe's own arguments are numbers"),
        ({"handler": "h", "probe": "query__start"}, "uprobe",
         f"{HOOK_AT}: a uprobe variant cannot use USDT probes"),
        ({"handler": "h"}, "uprobe", f"{HOOK_AT}: 'symbol' must be a str"),
        ({"handler": "h", "symbol": "f", "args": ["8@%rsi"]}, "uprobe",
         f"{HOOK_AT}: recipe argument '8@%rsi' names a register"),
        ({"handler": "h", "symbol": "f", "args": ["4@8(%rdi)"]}, "uprobe",
         f"{HOOK_AT}: recipe argument '4@8(%rdi)' names a register"),
        ({"handler": "h", "symbol": "f", "args": ["3@arg2"]}, "uprobe",
         f"{HOOK_AT}: argument spec '3@arg2': size 3 is not 1, 2, 4 or 8 bytes"),
        ({"handler": "h", "symbol": "f", "args": ["8@arg0"]}, "uprobe",
         f"{HOOK_AT}: recipe argument '8@arg0': arguments count from 1"),
        ({"handler": "h", "symbol": "f", "args": ["arg1"]}, "uprobe",
         f"{HOOK_AT}: recipe argument 'arg1' needs a size"),
        ({"handler": "h", "symbol": "f", "args": ["4@ret"]}, "uprobe",
         f"{HOOK_AT}: recipe argument '4@ret': ret is only known at a return probe"),
        ({"handler": "h", "symbol": "f", "return": True, "args": ["4@arg1"]}, "uprobe",
         f"{HOOK_AT}: recipe argument '4@arg1': a return probe cannot read the arguments"),
        ({"handler": "h", "symbol": "f", "versions": "banana"}, "uprobe",
         f"{HOOK_AT}: versions 'banana' are not version specifiers"),
        ({"handler": "h", "symbol": "f", "versions": [">=10", 18]}, "uprobe",
         f"{HOOK_AT}: versions ['>=10', 18] are not version specifiers"),
        ({"handler": "h", "symbol": "f", "versions": 18}, "uprobe",
         f"{HOOK_AT}: versions 18 are not version specifiers"),
        ({"handler": "h", "symbol": "f", "return": True, "args": ["8@counter"]}, "uprobe",
         f"{HOOK_AT}: a return probe cannot read globals relative to its site"),
    ],
)
def test_malformed_hook_names_file_and_field(
    probes_folder: Path, hook_body: dict, mechanism: str, expected: str
) -> None:
    message = recipe_error(probes_folder, document(hook_body, mechanism=mechanism))
    assert message.startswith(expected)


def test_usdt_hook_may_read_globals_at_its_site(probes_folder: Path) -> None:
    recipe = _recipe_from(
        document({"handler": "h", "probe": "p", "args": [2, "8@debug_query_string"]}),
        probes_folder / RECIPE_FILE,
    )
    (hook_read,) = recipe.family("query").variants[0].hooks
    number, spec = hook_read.usdt_args
    assert (number, spec.base, spec.symbol) == (2, "global", "debug_query_string")


def test_entry_probe_may_read_globals(probes_folder: Path) -> None:
    recipe = _recipe_from(
        document({"handler": "h", "symbol": "f", "args": ["8@counter+16"]}, mechanism="uprobe"),
        probes_folder / RECIPE_FILE,
    )
    (hook_read,) = recipe.family("query").variants[0].hooks
    assert (hook_read.uprobe_args[0].symbol, hook_read.uprobe_args[0].offset) == ("counter", 16)


def test_non_string_uprobe_arg_is_a_recipe_error(probes_folder: Path) -> None:
    body = document({"handler": "h", "symbol": "f", "args": [1]}, mechanism="uprobe")
    assert recipe_error(probes_folder, body).startswith(f"{HOOK_AT}: ")


def test_boolean_usdt_arg_is_a_recipe_error(probes_folder: Path) -> None:
    body = document({"handler": "h", "probe": "p", "args": [True]})
    assert recipe_error(probes_folder, body).startswith(
        f"{HOOK_AT}: usdt args are argument numbers from 1")


def test_unknown_mechanism(probes_folder: Path) -> None:
    body = document({"handler": "h", "symbol": "f"}, mechanism="kprobe")
    assert recipe_error(probes_folder, body) == (
        f"{RECIPE_FILE}: families.query.variants[0]: mechanism must be one of usdt, uprobe")


def test_missing_source(probes_folder: Path) -> None:
    body = document({"handler": "h", "symbol": "f"}, mechanism="uprobe")
    body["families"]["query"]["source"] = "nowhere.bpf.c"
    assert recipe_error(probes_folder, body) == (
        f"{RECIPE_FILE}: families.query: source nowhere.bpf.c does not exist")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda body: body.pop("database"), f"{RECIPE_FILE}: 'database' must be a str"),
        (lambda body: body.pop("families"), f"{RECIPE_FILE}: 'families' must be a dict"),
        (lambda body: body["families"]["query"].pop("variants"),
         f"{RECIPE_FILE}: families.query: 'variants' must be a list"),
        (lambda body: body["families"]["query"]["variants"][0].pop("hooks"),
         f"{RECIPE_FILE}: families.query.variants[0]: 'hooks' must be a list"),
        (lambda body: body["families"]["query"]["variants"][0].pop("mechanism"),
         f"{RECIPE_FILE}: families.query.variants[0]: 'mechanism' must be a str"),
    ],
)
def test_missing_tables_name_their_place(probes_folder: Path, change, expected: str) -> None:
    body = document({"handler": "h", "symbol": "f"}, mechanism="uprobe")
    change(body)
    assert recipe_error(probes_folder, body) == expected


def test_the_failing_hook_is_named_by_its_index(probes_folder: Path) -> None:
    body = document({"handler": "ok", "symbol": "f"}, {"handler": "bad", "symbol": "g",
                                                       "args": ["nonsense"]}, mechanism="uprobe")
    assert recipe_error(probes_folder, body).startswith(
        f"{RECIPE_FILE}: families.query.variants[0].hooks[1]: recipe argument 'nonsense'")


# --- loading from a probes folder ---------------------------------------------------------


@pytest.fixture
def temporary_probes_dir(probes_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """load_recipe reading recipes from a temporary folder, with its cache emptied around."""
    monkeypatch.setattr(recipes, "probes_dir", lambda: probes_folder)
    load_recipe.cache_clear()
    yield probes_folder
    load_recipe.cache_clear()


def test_load_recipe_from_a_folder(temporary_probes_dir: Path) -> None:
    (temporary_probes_dir / "demo.toml").write_text(
        'database = "demo"\n'
        "[families.query]\n"
        'source = "query.bpf.c"\n'
        "[[families.query.variants]]\n"
        'mechanism = "uprobe"\n'
        'hooks = [{ handler = "h", symbol = "f", args = ["8@arg2"], versions = ">=2" }]\n'
    )
    recipe = load_recipe("demo")
    assert recipe.usdt_provider is None
    assert recipe.process_names == ()
    (hook_loaded,) = recipe.family("query").variants[0].hooks
    assert (hook_loaded.applies_to("1.9"), hook_loaded.applies_to("2.1")) == (False, True)


def test_toml_syntax_error_names_the_file(temporary_probes_dir: Path) -> None:
    (temporary_probes_dir / "demo.toml").write_text('database = "demo\n')
    with pytest.raises(RecipeError, match=r"^demo\.toml: .*line 1"):
        load_recipe("demo")


def test_unknown_database_lists_the_known_ones(temporary_probes_dir: Path) -> None:
    (temporary_probes_dir / "alpha.toml").write_text("")
    (temporary_probes_dir / "beta.toml").write_text("")
    with pytest.raises(RecipeError, match=r"^no recipe for 'oracle' \(have: alpha, beta\)$"):
        load_recipe("oracle")
