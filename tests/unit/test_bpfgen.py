"""Generated entry points: their exact C text, and what that C computes when gcc compiles it
against a stand-in ``struct pt_regs`` and ``bpf_probe_read_user``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dbprobe.binary.argspec import ArgSpec, parse_argspec
from dbprobe.kernel.entrypoints import (MAX_ARGS, argument_read, comment_text, entry_points_source,
                                        group_sites)
from dbprobe.recipes.bind import ProbeSite
from dbprobe.recipes.load import probes_dir
from tests.support.sdtbin import compile_c

U64 = (1 << 64) - 1
SITE_ADDRESS = 0x1230
GLOBAL_ADDRESS = 0x4040


def site(
    handler: str = "handler",
    args: tuple[str, ...] = (),
    *,
    binary: str = "/srv/pg/bin/postgres",
    mechanism: str = "usdt",
    on_return: bool = False,
    address: int = SITE_ADDRESS,
    label: str | None = None,
) -> ProbeSite:
    specs = tuple(parse_argspec(text) for text in args)
    globals_at = tuple((spec.symbol, GLOBAL_ADDRESS) for spec in specs if spec.kind == "symbol")
    return ProbeSite(
        handler=handler, binary=binary, file_offset=address, ref_ctr_offset=0,
        on_return=on_return, args=specs, address=address, globals=globals_at,
        mechanism=mechanism, label=label or f"{handler}@{address:#x}",
    )


def read(text: str, index: int = 0) -> str:
    spec = parse_argspec(text)
    globals_at = {spec.symbol: GLOBAL_ADDRESS} if spec.symbol else {}
    return argument_read(index, spec, SITE_ADDRESS, globals_at)


def memory_read(size: int, address: str, index: int = 0, signed: bool = False) -> str:
    """An argument in memory: its address and size, read when the handler asks for it."""
    sign = f" args.sign |= 1 << {index};" if signed else ""
    return f"args.value[{index}] = {address}; args.size[{index}] = {size};{sign}"


# --- the C text of each kind of argument ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "index", "expected"),
    [
        # Registers: 8 bytes as they are; narrower ones truncated, then sign-extended if signed.
        ("8@%rsi", 0, "args.value[0] = (u64)ctx->si;"),
        ("-8@%rbx", 0, "args.value[0] = (u64)ctx->bx;"),
        ("-4@%edi", 1, "args.value[1] = (u64)(s64)(s32)ctx->di;"),
        ("4@%eax", 2, "args.value[2] = (u64)(u32)ctx->ax;"),
        ("-2@%r8w", 3, "args.value[3] = (u64)(s64)(s16)ctx->r8;"),
        ("2@%si", 4, "args.value[4] = (u64)(u16)ctx->si;"),
        ("-1@%dil", 5, "args.value[5] = (u64)(s64)(s8)ctx->di;"),
        ("1@%al", 0, "args.value[0] = (u64)(u8)ctx->ax;"),
        ("%rdx", 0, "args.value[0] = (u64)ctx->dx;"),  # no size: 8 bytes unsigned
        # Memory at a register plus a displacement.
        ("4@32(%r8)", 0, memory_read(4, "ctx->r8 + (32)")),
        ("-8@-144(%rbp)", 1, memory_read(8, "ctx->bp + (-144)", 1)),
        ("-2@12(%rdi)", 0, memory_read(2, "ctx->di + (12)", signed=True)),
        ("1@(%rax)", 0, memory_read(1, "ctx->ax + (0)")),
        ("8@0x10(%r13)", 0, memory_read(8, "ctx->r13 + (16)")),
        # Constants.
        ("-4@$42", 0, "args.value[0] = (u64)(s32)42LL;"),
        ("-4@$-7", 1, "args.value[1] = (u64)(s32)-7LL;"),
        ("4@$-1", 0, "args.value[0] = (u64)(u32)-1LL;"),
        ("8@$0x10", 0, "args.value[0] = (u64)(u64)16LL;"),
        # Globals: the site's runtime address minus its file address is the load bias.
        ("-4@request_count(%rip)", 0,
         memory_read(4, "ctx->ip - 0x1230ULL + 0x4040ULL + (0)", signed=True)),
        ("-4@8+statistics(%rip)", 0,
         memory_read(4, "ctx->ip - 0x1230ULL + 0x4040ULL + (8)", signed=True)),
        ("2@counter-2(%rip)", 0,
         memory_read(2, "ctx->ip - 0x1230ULL + 0x4040ULL + (-2)")),
    ],
)
def test_argument_read_text(spec: str, index: int, expected: str) -> None:
    assert read(spec, index) == expected


def test_unknown_argument_kind_is_refused() -> None:
    bogus = ArgSpec(8, False, "vector", "ax", 0, 0, None, "8@%xmm0")
    with pytest.raises(ValueError, match="unknown argument kind 'vector' in 8@%xmm0"):
        argument_read(0, bogus, SITE_ADDRESS, {})


def test_max_args_is_the_header_constant() -> None:
    header = (probes_dir() / "args.h").read_text()
    assert re.search(rf"#define\s+DBP_MAX_ARGS\s+{MAX_ARGS}\b", header)


# --- what the generated C computes ------------------------------------------------------------

REGISTERS = ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "r8", "r9", "r10", "r11", "r12",
             "r13", "r14", "r15", "ip")
# Register values whose narrow parts are negative when signed (di) or not (cx), for "reg" reads.
REGISTER_VALUES = {
    "ax": 0x0123456789ABCDEF, "bx": 0x8000000000000001, "cx": 0xFFFFFFFF00000005,
    "dx": 0x00000000000000FF, "si": 0xFEDCBA9876543210, "di": 0xDEADBEEFFFFFFF85,
    "r8": 0x7F7F7F7F7F7F7F80, "r13": 0x0000000180000000,
}
MEMORY_SIZE = 256
MEMORY_BASE = 128  # "mem" reads: every register points here
GLOBAL_AT = 64  # "symbol" reads: the global lives here

HARNESS_PRELUDE = f"""
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;
typedef int8_t s8; typedef int16_t s16; typedef int32_t s32; typedef int64_t s64;
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
struct pt_regs {{ u64 {", ".join(REGISTERS)}; }};
static unsigned char memory[{MEMORY_SIZE}];
static inline long bpf_probe_read_user(void *dst, u32 size, const void *src)
{{
	memcpy(dst, src, size);
	return 0;
}}
""" + (probes_dir() / "args.h").read_text()  # struct dbp_args and dbp_arg(), as the programs have them

MEMORY_FILL = f"for (int i = 0; i < {MEMORY_SIZE}; i++) memory[i] = (unsigned char)(i * 37 + 11);"


def memory_bytes() -> bytes:
    return bytes((i * 37 + 11) % 256 for i in range(MEMORY_SIZE))


def expected_value(spec: ArgSpec) -> int:
    """What the argument is, computed from its spec without any C."""
    if spec.kind == "reg":
        raw = REGISTER_VALUES[spec.reg]
    elif spec.kind == "const":
        raw = spec.value
    else:
        at = (MEMORY_BASE if spec.kind == "mem" else GLOBAL_AT) + spec.offset
        raw = int.from_bytes(memory_bytes()[at:at + spec.size], "little")
    bits = 8 * spec.size
    raw &= (1 << bits) - 1
    if spec.signed and raw >> (bits - 1):
        raw -= 1 << bits
    return raw & U64


def register_setup(kind: str) -> str:
    """C statements giving ctx's registers their values for reads of `kind`."""
    if kind == "reg":
        return " ".join(f"ctx->{name} = {value:#x}ULL;" for name, value in REGISTER_VALUES.items())
    if kind == "mem":
        return " ".join(f"ctx->{name} = (u64)(memory + {MEMORY_BASE});" for name in REGISTERS)
    # The process is loaded with some bias; ip is the site's address plus that bias.
    return (f"u64 bias = (u64)(memory + {GLOBAL_AT}) - {GLOBAL_ADDRESS:#x}ULL;"
            f" ctx->ip = bias + {SITE_ADDRESS:#x}ULL;")


def run_c(tmp_path: Path, source: str, *, as_lines: bool = False) -> list:
    """Compile and run a harness; its output as numbers, or as lines."""
    program = compile_c([_write(tmp_path / "harness.c", source)], tmp_path / "harness",
                        flags=("-O1", "-Wall", "-Werror"))
    output = subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout
    return output.splitlines() if as_lines else [int(line) for line in output.split()]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


EVALUATED_SPECS = (
    "8@%rsi", "-8@%rbx", "-4@%edi", "4@%edi", "-4@%ecx", "-2@%di", "2@%di", "-1@%dil", "1@%dil",
    "-1@%dl", "-2@%r8w", "-4@%r13d", "%rax",
    "4@32(%r8)", "-4@32(%r8)", "-8@-120(%rbp)", "8@-8(%rbp)", "-2@12(%rdi)", "2@12(%rdi)",
    "-1@(%rax)", "1@(%rax)", "-4@100(%r15)",
    "-4@$42", "-4@$-7", "4@$-1", "8@$0x10", "-8@$-1", "-1@$200", "2@$70000",
    "-4@request_count(%rip)", "-4@8+statistics(%rip)", "2@counter-2(%rip)", "-8@16+table(%rip)",
)


def test_generated_reads_compute_the_argument_values(tmp_path: Path) -> None:
    specs = [parse_argspec(text) for text in EVALUATED_SPECS]
    cases = []
    for number, spec in enumerate(specs):
        globals_at = {spec.symbol: GLOBAL_ADDRESS} if spec.symbol else {}
        cases.append(
            f"static u64 case_{number}(void)\n{{\n"
            f"\tstruct pt_regs regs = {{0}}, *ctx = &regs;\n\tstruct dbp_args args = {{0}};\n"
            f"\t{register_setup(spec.kind)}\n"
            f"\t{argument_read(number % MAX_ARGS, spec, SITE_ADDRESS, globals_at)}\n"
            f"\treturn dbp_arg(&args, {number % MAX_ARGS});\n}}\n"
        )
    calls = "\n".join(f'\tprintf("%llu\\n", (unsigned long long)case_{n}());'
                      for n in range(len(specs)))
    source = (HARNESS_PRELUDE + "\n".join(cases)
              + f"\nint main(void)\n{{\n\t{MEMORY_FILL}\n{calls}\n\treturn 0;\n}}\n")
    computed = run_c(tmp_path, source)
    expected = [expected_value(spec) for spec in specs]
    assert dict(zip(EVALUATED_SPECS, computed)) == dict(zip(EVALUATED_SPECS, expected))


def handler_stub(name: str) -> str:
    """A handler that prints its hook id and every argument it received."""
    return (
        f"static inline int {name}(struct pt_regs *ctx, const struct dbp_args *args, u16 hook)\n{{\n"
        f'\t(void)ctx;\n\tprintf("{name} %u", (unsigned)hook);\n'
        f'\tfor (int i = 0; i < DBP_MAX_ARGS; i++)\n'
        f'\t\tprintf(" %llu", (unsigned long long)dbp_arg(args, i));\n'
        f'\tprintf("\\n");\n\treturn 0;\n}}\n'
    )


def harness_source(programs, setups: list[str], handlers: set[str]) -> str:
    """The entry functions compiled with handler stubs, each entry called once with its setup."""
    calls = [f"\t{{ struct pt_regs regs = {{0}}, *ctx = &regs; {setup} {program.function}(ctx); }}"
             for program, setup in zip(programs, setups)]
    return (HARNESS_PRELUDE
            + "".join(handler_stub(name) for name in sorted(handlers))
            + entry_points_source(programs)
            + f"\nint main(void)\n{{\n\t{MEMORY_FILL}\n" + "\n".join(calls)
            + "\n\treturn 0;\n}\n")


def received(handler: str, hook_id: int, args: list[int]) -> str:
    padded = [*args, *[0] * (MAX_ARGS - len(args))]
    return " ".join([handler, str(hook_id), *map(str, padded)])


def test_entry_points_pass_their_hook_id_and_arguments(tmp_path: Path) -> None:
    memory = memory_bytes()
    # (site, C statements that set its registers, the arguments its handler must receive)
    cases = [
        (site("on_start", ("8@%rsi", "-4@%edi"), address=0x1000),
         "ctx->si = 0xfedcba9876543210ULL; ctx->di = 0xdeadbeefffffff85ULL;",
         [0xFEDCBA9876543210, 0xFFFFFFFFFFFFFF85]),
        (site("on_done", (), address=0x2000), "", []),
        (site("on_start", ("8@%rsi", "-4@32(%r8)"), mechanism="uprobe", address=0x3000),
         "ctx->si = 5; ctx->r8 = (u64)(memory + 128);",
         [5, int.from_bytes(memory[160:164], "little", signed=True) & U64]),
        (site("on_global", ("-4@8+statistics(%rip)",)), register_setup("symbol"),
         [int.from_bytes(memory[GLOBAL_AT + 8:GLOBAL_AT + 12], "little", signed=True) & U64]),
    ]
    programs = group_sites([case[0] for case in cases])
    assert [program.sites for program in programs] == [(case[0],) for case in cases]
    source = harness_source(programs, [case[1] for case in cases], {c[0].handler for c in cases})
    assert run_c(tmp_path, source, as_lines=True) == [
        received(program.handlers[0], program.hook_id, expected)
        for program, (_, _, expected) in zip(programs, cases)
    ]


def test_families_at_one_place_share_one_entry_function(tmp_path: Path) -> None:
    # Three families hook one function: one handler each, and one they all name, with
    # argument lists that are prefixes of the longest.
    shared_short = site("on_activity", ("8@%rsi",), label="report_activity")
    own = site("on_locks", ("-4@%edi",), label="report_activity")
    shared_long = site("on_activity", ("8@%rsi", "8@%rdx"), label="report_activity")
    elsewhere = site("on_error", (), address=0x9000, label="abort")
    programs = group_sites([shared_short, own, shared_long, elsewhere])
    assert [program.handlers for program in programs] == [("on_activity", "on_locks"), ("on_error",)]
    assert programs[0].sites == (shared_short,)  # attached once
    assert [call.args for call in programs[0].calls] == [shared_long.args, own.args]
    setup = "ctx->si = 7; ctx->dx = 9; ctx->di = 0xfffffffeULL;"
    source = harness_source(programs, [setup, ""], {"on_activity", "on_locks", "on_error"})
    assert source.count("int dbp_hook_") == 2
    assert run_c(tmp_path, source, as_lines=True) == [
        received("on_activity", 0, [7, 9]),
        received("on_locks", 0, [U64 - 1]),
        received("on_error", 1, []),
    ]


def test_one_handler_with_two_unrelated_argument_lists_at_one_place_is_refused() -> None:
    with pytest.raises(ValueError, match=r"report_activity: handler h is hooked there twice"):
        group_sites([site("h", ("8@%rsi",), label="report_activity"),
                     site("h", ("8@%rdi",), label="report_activity")])


# --- nothing of the traced machine becomes code ------------------------------------------------

HOSTILE_TEXTS = ("/tmp/x*/bin/postgres", "/srv/*/ int evil; /*/postgres", "a\nb\\\n*/", "??/ */")


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_comment_text_cannot_end_a_comment(text: str) -> None:
    cleaned = comment_text(text)
    assert "*/" not in cleaned and "/*" not in cleaned
    assert "\n" not in cleaned and "\\" not in cleaned
    assert len(cleaned) == len(text)


def test_comment_text_keeps_ordinary_paths_and_labels() -> None:
    for text in ("/usr/lib/postgresql/15/bin/postgres", "postgresql:statement__status",
                 "MDL_wait::timed_wait (return)", "8@-144(%rbp)", "-4@8+statistics(%rip)"):
        assert comment_text(text) == text


def test_hostile_paths_and_labels_compile_as_comments(tmp_path: Path) -> None:
    # A container chooses its own paths: a directory named x* would close the comment.
    programs = group_sites([
        site("on_start", ("8@%rsi",), binary="/tmp/x*/bin/postgres",
             label="provider:*/ int injected = 1; /*"),
    ])
    source = entry_points_source(programs)
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    assert "injected" not in code and "bin" not in code
    program = harness_source(programs, ["ctx->si = 3;"], {"on_start"})
    assert run_c(tmp_path, program, as_lines=True) == [received("on_start", 0, [3])]


# --- grouping sites into entry functions ------------------------------------------------------


def test_sites_that_read_alike_share_one_entry_function() -> None:
    first = site("pg_portal_start", (), address=0x47FE88)
    second = site("pg_portal_start", (), address=0x48011B)
    (program,) = group_sites([first, second])
    assert (program.hook_id, program.function, program.handlers) == (
        0, "dbp_hook_0", ("pg_portal_start",))
    assert program.sites == (first, second)
    assert (program.binary, program.mechanism, program.on_return) == (
        first.binary, "usdt", False)


@pytest.mark.parametrize(
    ("other", "why"),
    [
        (site("h", ("8@%rsi",), binary="/other/postgres"), "another binary"),
        (site("h", ("8@%rsi",), mechanism="uprobe"), "another mechanism"),
        (site("h", ("8@%rsi",), on_return=True), "a return probe"),
        (site("h", ("8@%rdi",), address=0x2000), "other argument specs"),
        (site("h", ("-8@%rsi",), address=0x2000), "another signedness"),
        (site("g", ("8@%rsi",), address=0x2000), "another handler"),
    ],
)
def test_sites_that_differ_get_their_own_entry_function(other: ProbeSite, why: str) -> None:
    programs = group_sites([site("h", ("8@%rsi",)), other])
    assert len(programs) == 2, why
    assert [program.sites for program in programs] == [(site("h", ("8@%rsi",)),), (other,)]


def test_sites_reading_globals_are_separated_by_address() -> None:
    here = site("h", ("-4@counter(%rip)",), address=0x1000)
    there = site("h", ("-4@counter(%rip)",), address=0x2000)
    same_place = site("h", ("-4@counter(%rip)",), address=0x1000, label="again")
    programs = group_sites([here, there, same_place])
    assert [program.sites for program in programs] == [(here,), (there,)]


def test_sites_not_reading_globals_share_across_addresses() -> None:
    programs = group_sites([site("h", ("8@%rsi",), address=a) for a in (0x1000, 0x2000, 0x3000)])
    assert len(programs) == 1
    assert len(programs[0].sites) == 3


def test_hook_ids_count_from_zero_in_order_of_first_appearance() -> None:
    sites = [site("a", address=1), site("b", address=2), site("a", address=0x9999),
             site("c", mechanism="uprobe", address=3), site("b", ("8@%rsi",), address=4),
             site("c", mechanism="uprobe", address=5)]
    programs = group_sites(sites)
    assert [program.hook_id for program in programs] == list(range(len(programs)))
    assert [program.handlers for program in programs] == [("a",), ("b",), ("c",), ("b",)]
    functions = [program.function for program in programs]
    assert len(set(functions)) == len(functions)
    assert sum(len(program.sites) for program in programs) == len(sites)


def test_no_sites_no_programs() -> None:
    assert group_sites([]) == []
    assert entry_points_source([]) == ""


# --- the entry functions' source ----------------------------------------------------------------


def test_entry_points_source_has_one_function_per_group() -> None:
    programs = group_sites([
        site("pg_simple_start", ("8@%rbx",), label="postgresql:query__start"),
        site("pg_portal_start", (), label="postgresql:query__execute__start", address=1),
        site("pg_portal_start", (), label="postgresql:query__execute__start", address=2),
        site("pg_error", (), mechanism="uprobe", label="AbortCurrentTransaction"),
    ])
    source = entry_points_source(programs)
    definitions = re.findall(r"^int (\w+)\(struct pt_regs \*ctx\)$", source, re.MULTILINE)
    assert definitions == ["dbp_hook_0", "dbp_hook_1", "dbp_hook_2"]
    calls = re.findall(r"\t(\w+)\(ctx, &args0, (\d+)\);", source)
    assert calls == [("pg_simple_start", "0"), ("pg_portal_start", "1"), ("pg_error", "2")]
    assert source.count("struct dbp_args args0 = {};") == 3
    assert "args0.value[0] = (u64)ctx->bx;  /* 8@%rbx */" in source
    assert "/* postgresql:query__execute__start in /srv/pg/bin/postgres (usdt) */" in source
    assert "/* AbortCurrentTransaction in /srv/pg/bin/postgres (uprobe) */" in source


def test_one_entry_function_exactly() -> None:
    (program,) = group_sites([site("h", ("8@%rsi", "-4@%edi"), label="demo:p")])
    assert entry_points_source([program]) == (
        "#ifndef DBP_AFTER_HOOK\n#define DBP_AFTER_HOOK(ctx)\n#endif\n"
        "/* demo:p in /srv/pg/bin/postgres (usdt) */\n"
        "int dbp_hook_0(struct pt_regs *ctx)\n"
        "{\n"
        "\tstruct dbp_args args0 = {};\n"
        "\targs0.value[0] = (u64)ctx->si;  /* 8@%rsi */\n"
        "\targs0.value[1] = (u64)(s64)(s32)ctx->di;  /* -4@%edi */\n"
        "\th(ctx, &args0, 0);\n"
        "\tDBP_AFTER_HOOK(ctx);\n"
        "\treturn 0;\n"
        "}\n"
    )


def test_too_many_arguments_are_refused() -> None:
    programs = group_sites([site("h", tuple(f"8@{i}(%rsi)" for i in range(MAX_ARGS + 1)),
                                 label="demo:wide")])
    with pytest.raises(ValueError, match=f"demo:wide: more than {MAX_ARGS} arguments"):
        entry_points_source(programs)
