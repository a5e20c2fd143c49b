"""Assembling the program text: local includes inlined once each, compile-time parameters."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from dbprobe.binary.argspec import parse_argspec
from dbprobe.recipes.bind import FamilyPlan, ProbeSite
from dbprobe.commands.options import ring_buffer_bytes
from dbprobe.kernel.program import Parameters, build_program, expand_includes
from dbprobe.recipes.load import load_recipe


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_local_includes_are_inlined(tmp_path: Path) -> None:
    write(tmp_path, {
        "main.c": '#include "common.h"\nint main_body;\n',
        "common.h": "int common_body;\n",
    })
    assert expand_includes(tmp_path / "main.c", set()) == "int common_body;\n\nint main_body;\n"


def test_a_header_included_twice_appears_once(tmp_path: Path) -> None:
    write(tmp_path, {
        "main.c": '#include "common.h"\n#include "extra.h"\nint main_body;\n',
        "extra.h": '#include "common.h"\nint extra_body;\n',
        "common.h": "int common_body;\n",
    })
    text = expand_includes(tmp_path / "main.c", set())
    assert text.count("int common_body;") == 1
    order = [text.index(f"int {name}_body;") for name in ("common", "extra", "main")]
    assert order == sorted(order)
    assert '#include "' not in text


def test_the_seen_set_spans_several_sources(tmp_path: Path) -> None:
    write(tmp_path, {
        "one.c": '#include "shared.h"\nint one;\n',
        "two.c": '#include "shared.h"\nint two;\n',
        "shared.h": "int shared;\n",
    })
    seen: set[Path] = set()
    texts = [expand_includes(tmp_path / "one.c", seen), expand_includes(tmp_path / "two.c", seen)]
    assert "".join(texts).count("int shared;") == 1
    assert "int shared;" in texts[0]
    assert seen == {(tmp_path / name).resolve() for name in ("one.c", "two.c", "shared.h")}
    assert expand_includes(tmp_path / "one.c", seen) == ""  # already there


def test_includes_resolve_beside_the_including_file(tmp_path: Path) -> None:
    write(tmp_path, {
        "main.c": '#include "lib/outer.h"\n',
        "lib/outer.h": '#include "inner.h"\nint outer;\n',
        "lib/inner.h": "int inner;\n",
        "inner.h": "int wrong_inner;\n",
    })
    text = expand_includes(tmp_path / "main.c", set())
    assert "int inner;" in text
    assert "wrong_inner" not in text


def test_system_includes_are_left_to_the_compiler(tmp_path: Path) -> None:
    source = '#include <uapi/linux/ptrace.h>\n#include <linux/sched.h>\nint body;\n'
    write(tmp_path, {"main.c": source})
    assert expand_includes(tmp_path / "main.c", set()) == source


def test_a_missing_include_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, {"main.c": '#include "present.h"\n', "present.h": '#include "absent.h"\n'})
    missing = r"^present\.h includes absent\.h, which is missing$"
    with pytest.raises(FileNotFoundError, match=missing):
        expand_includes(tmp_path / "main.c", set())


def test_an_include_with_a_trailing_comment_is_inlined(tmp_path: Path) -> None:
    write(tmp_path, {"main.c": '#include "common.h"  /* shared */\n', "common.h": "int common;\n"})
    assert "int common;" in expand_includes(tmp_path / "main.c", set())


def test_the_packaged_query_program_expands_completely() -> None:
    source = load_recipe("postgresql").family("query").source
    text = expand_includes(source, set())
    assert not re.search(r'^\s*#\s*include\s+"', text, re.MULTILINE)
    assert text.count("#define DBPROBE_H") == 1
    assert text.count("#define DBPROBE_QUERY_H") == 1
    assert "#include <uapi/linux/ptrace.h>" in text


# --- compile-time parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "flags"),
    [
        (Parameters(), ()),
        (Parameters(thresholds_ns={"query": 50_000_000}), ("-DDBP_QUERY_THRESHOLD_NS=50000000ULL",)),
        (Parameters(thresholds_ns={"txn": 2, "query": 1}, filter_pids=True),
         ("-DDBP_QUERY_THRESHOLD_NS=1ULL", "-DDBP_TXN_THRESHOLD_NS=2ULL", "-DDBP_FILTER_PIDS=1")),
        (Parameters(ringbuf_bytes=64 << 20), ("-DDBP_RINGBUF_PAGES=16384",)),
        (Parameters(ringbuf_bytes=4096), ("-DDBP_RINGBUF_PAGES=1",)),
    ],
)
def test_cflags(parameters: Parameters, flags: tuple[str, ...]) -> None:
    assert parameters.cflags() == flags


# --- the whole program ----------------------------------------------------------------------


def usdt_site(handler: str, label: str, binary: str, args: tuple[str, ...] = (),
              address: int = 0x100) -> ProbeSite:
    return ProbeSite(
        handler=handler, binary=binary, file_offset=address, ref_ctr_offset=0x10, on_return=False,
        args=tuple(parse_argspec(text) for text in args), address=address, globals=(),
        mechanism="usdt", label=label,
    )


def query_plan(binary: str) -> FamilyPlan:
    sites = (
        usdt_site("pg_activity", "postgresql:statement__status", binary, ("8@%rsi", "4@%eax")),
        usdt_site("pg_error", "AbortCurrentTransaction", binary, address=0x200),
    )
    return FamilyPlan(load_recipe("postgresql").family("query"), binary, "usdt", sites, ())


def test_build_program_joins_sources_entry_points_and_flags() -> None:
    # Two binaries traced by the same family: its source is compiled once.
    plans = [query_plan("/srv/pg15/bin/postgres"), query_plan("/srv/pg16/bin/postgres")]
    program = build_program(plans, Parameters(thresholds_ns={"query": 7}, filter_pids=True))
    assert program.cflags == ("-DDBP_QUERY_THRESHOLD_NS=7ULL", "-DDBP_FILTER_PIDS=1",
                              "-DDBP_WITH_POSTGRESQL_QUERY=1")
    assert program.source.count("static __always_inline int pg_activity(") == 1
    assert program.source.count("#define DBPROBE_H") == 1
    assert [(hook.hook_id, hook.handlers, hook.binary) for hook in program.hooks] == [
        (0, ("pg_activity",), "/srv/pg15/bin/postgres"),
        (1, ("pg_error",), "/srv/pg15/bin/postgres"),
        (2, ("pg_activity",), "/srv/pg16/bin/postgres"),
        (3, ("pg_error",), "/srv/pg16/bin/postgres"),
    ]
    # Entry points come after the handlers they call.
    handler_at = program.source.index("static __always_inline int pg_activity(")
    assert handler_at < program.source.index("int dbp_hook_0(struct pt_regs *ctx)")
    assert program.source.endswith("\tpg_error(ctx, &args0, 3);\n\tDBP_AFTER_HOOK(ctx);\n\treturn 0;\n}\n")


@pytest.mark.parametrize("size", [0, 1000, 4096 * 3, (8 << 20) + 4096, -4096])
def test_a_ring_buffer_that_is_not_a_power_of_two_pages_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="power of two pages"):
        Parameters(ringbuf_bytes=size)


def test_every_family_source_is_announced_to_the_others() -> None:
    postgresql = load_recipe("postgresql")
    plans = [FamilyPlan(postgresql.family(name), "/srv/pg/bin/postgres", "usdt", (), ())
             for name in ("query", "locks", "txn")]
    program = build_program(plans, Parameters())
    assert program.cflags == ("-DDBP_WITH_POSTGRESQL_QUERY=1", "-DDBP_WITH_POSTGRESQL_LOCKS=1",
                              "-DDBP_WITH_POSTGRESQL_TXN=1")
    # The families' shared activity and slot appear once.
    assert program.source.count("#define DBPROBE_POSTGRESQL_H") == 1
    assert program.source.count("static __always_inline int pg_activity(") == 1


@pytest.mark.parametrize(("text", "size"), [("4K", 4096), ("16M", 16 << 20), ("16MiB", 16 << 20),
                                            ("1G", 1 << 30), ("64", 64 << 20), ("8m", 8 << 20)])
def test_ring_buffer_sizes_as_the_option_takes_them(text: str, size: int) -> None:
    assert ring_buffer_bytes(text) == size
    assert Parameters(ringbuf_bytes=size).ringbuf_bytes == size


@pytest.mark.parametrize("text", ["3M", "2K", "2G", "0", "-8M", "lots", "", "1.5M"])
def test_ring_buffer_sizes_that_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a"):
        ring_buffer_bytes(text)
