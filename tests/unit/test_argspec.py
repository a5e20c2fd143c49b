"""Decoding of x86-64 SDT argument specs: every form PostgreSQL's binary uses, and garbage."""

from __future__ import annotations

from functools import partial

import pytest

from dbprobe.binary import argspec
from dbprobe.binary.arch.x86 import REGISTER_FIELDS
from dbprobe.binary.arch.x86_64 import X86_64
from dbprobe.binary.argspec import ArgSpec, ArgSpecError

parse_argspec = partial(argspec.parse_argspec, arch=X86_64)
parse_argspecs = partial(argspec.parse_argspecs, arch=X86_64)

PT_REGS_FIELDS = {
    "ax",
    "bx",
    "cx",
    "dx",
    "si",
    "di",
    "bp",
    "sp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "ip",
}


def spec(
    text: str,
    size: int,
    signed: bool,
    kind: str,
    reg: str | None = None,
    offset: int = 0,
    value: int = 0,
    symbol: str | None = None,
) -> ArgSpec:
    return ArgSpec(
        size=size,
        signed=signed,
        kind=kind,
        reg=reg,
        offset=offset,
        value=value,
        symbol=symbol,
        text=text,
    )


DECODED = [
    # registers: the pt_regs field of the 64-bit register, the width from N@
    spec("8@%rbx", 8, False, "reg", "bx"),
    spec("4@%ebx", 4, False, "reg", "bx"),
    spec("1@%dil", 1, False, "reg", "di"),
    spec("1@%sil", 1, False, "reg", "si"),
    spec("1@%al", 1, False, "reg", "ax"),
    spec("2@%ax", 2, False, "reg", "ax"),
    spec("-4@%eax", 4, True, "reg", "ax"),
    spec("8@%rsi", 8, False, "reg", "si"),
    spec("-4@%r13d", 4, True, "reg", "r13"),
    spec("8@%r8", 8, False, "reg", "r8"),
    spec("4@%r8d", 4, False, "reg", "r8"),
    spec("2@%r8w", 2, False, "reg", "r8"),
    spec("1@%r8b", 1, False, "reg", "r8"),
    spec("1@%bpl", 1, False, "reg", "bp"),
    spec("1@%spl", 1, False, "reg", "sp"),
    spec("8@%rsp", 8, False, "reg", "sp"),
    # constants
    spec("-4@$1", 4, True, "const", value=1),
    spec("-4@$8192", 4, True, "const", value=8192),
    spec("-4@$-7", 4, True, "const", value=-7),
    spec("8@$0x10", 8, False, "const", value=16),
    # memory at an offset from a base register
    spec("4@(%r12)", 4, False, "mem", "r12"),
    spec("4@60(%rax)", 4, False, "mem", "ax", offset=60),
    spec("-4@-136(%rbp)", 4, True, "mem", "bp", offset=-136),
    spec("2@12(%r12)", 2, False, "mem", "r12", offset=12),
    spec("1@14(%r12)", 1, False, "mem", "r12", offset=14),
    spec("8@-144(%rbp)", 8, False, "mem", "bp", offset=-144),
    spec("-8@8(%esp)", 8, True, "mem", "sp", offset=8),
    # rip-relative globals
    spec("-4@NBuffers(%rip)", 4, True, "symbol", "ip", symbol="NBuffers"),
    spec(
        "-4@40+CheckpointStats(%rip)", 4, True, "symbol", "ip", offset=40, symbol="CheckpointStats"
    ),
    spec("8@counter.0+16(%rip)", 8, False, "symbol", "ip", offset=16, symbol="counter.0"),
    spec("4@table-4(%rip)", 4, False, "symbol", "ip", offset=-4, symbol="table"),
    # no N@ prefix (old notes): unsigned, address-sized, as GDB reads them
    spec("%rdi", 8, False, "reg", "di"),
    spec("16(%rbx)", 8, False, "mem", "bx", offset=16),
]


@pytest.mark.parametrize("expected", DECODED, ids=[case.text for case in DECODED])
def test_decodes(expected: ArgSpec) -> None:
    assert parse_argspec(expected.text) == expected


REJECTED = [
    ("8@", "no operand"),
    ("3@%rax", "size 3 is not 1, 2, 4 or 8"),
    ("16@%rax", "size 16 is not 1, 2, 4 or 8"),
    ("8@%xyz", "unknown register %xyz"),
    ("8@(%rax,%rdx,8)", "indexed memory operands"),
    ("4@-8(%rbp,%rax,4)", "indexed memory operands"),
    ("1@%ah", "high-byte register %ah"),
    ("8f@%xmm0", "floating-point"),
    ("8@%xmm1", "vector register %xmm1"),
    ("8@sym(%rax)", "only supported relative to %rip"),
    ("8@16(%rip)", "needs a symbol"),
    ("8@%fs:40", "cannot decode operand '%fs:40'"),
    ("8@1234", "cannot decode operand '1234'"),
    ("garbage", "cannot decode operand 'garbage'"),
    ("", "empty argument spec"),
]


@pytest.mark.parametrize(
    ("text", "message"), REJECTED, ids=[text or "empty" for text, _ in REJECTED]
)
def test_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ArgSpecError) as raised:
        parse_argspec(text)
    assert message in str(raised.value)
    if text:
        assert repr(text) in str(raised.value), "the message names the spec"


def test_argspec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_argspec("3@%rax")


def test_parses_a_whole_argument_string_in_order() -> None:
    args = parse_argspecs("4@(%r12) 4@4(%r12)  4@8(%r12) 2@12(%r12) 1@14(%r12) -4@%r13d")
    assert [arg.text for arg in args] == [
        "4@(%r12)",
        "4@4(%r12)",
        "4@8(%r12)",
        "2@12(%r12)",
        "1@14(%r12)",
        "-4@%r13d",
    ]
    assert [arg.offset for arg in args[:5]] == [0, 4, 8, 12, 14]
    assert args[5].signed and args[5].reg == "r13"


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_argument_string_has_no_arguments(text: str) -> None:
    assert parse_argspecs(text) == ()


def test_one_bad_spec_fails_the_whole_string() -> None:
    with pytest.raises(ArgSpecError, match="8@%xyz"):
        parse_argspecs("8@%rax 8@%xyz")


def test_every_register_alias_maps_to_a_pt_regs_field() -> None:
    assert set(REGISTER_FIELDS.values()) == PT_REGS_FIELDS
    # 16 general-purpose registers in 4 widths each, plus rip
    assert len(REGISTER_FIELDS) == 16 * 4 + 1


@pytest.mark.parametrize("width_prefix", ["r", "e", ""])
def test_legacy_register_widths_share_one_field(width_prefix: str) -> None:
    for name, field in [("ax", "ax"), ("si", "si"), ("bp", "bp")]:
        register = f"{width_prefix}{name}"
        assert parse_argspec(f"8@%{register}").reg == field


def test_without_an_architecture_notes_decode_as_this_machine_s() -> None:
    assert argspec.parse_argspec("8@%rsi") == parse_argspec("8@%rsi")


def test_str_is_the_original_spec() -> None:
    assert str(parse_argspec(" -4@40+CheckpointStats(%rip) ")) == "-4@40+CheckpointStats(%rip)"
