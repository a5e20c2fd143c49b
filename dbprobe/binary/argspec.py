"""Argument specs: where one probe argument lives and how wide it is.

A USDT probe's note describes each argument as ``SIZE@OPERAND``, the operand in the
syntax of the binary's architecture, as the compiler chose it: on x86-64 ``-4@%r13d``
(a signed int in r13), ``8@60(%rax)`` (8 bytes at rax+60), ``-4@$1`` (the constant 1),
``-4@40+CheckpointStats(%rip)`` (a global's field). The size prefix is common to every
architecture and decoded here; the operand is decoded by the architecture's module
(dbprobe/binary/arch/). Recipes say the same without naming registers
(dbprobe/binary/recipe_args.py), and resolve to the same ArgSpec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbprobe.binary.arch import Architecture

ARG_SIZES = (1, 2, 4, 8)

# Without a SIZE@ prefix (notes from sdt.h before sizes were recorded) the
# width is unknown; like GDB's SystemTap probe support, read an unsigned
# value of the address size.
DEFAULT_SIZE = 8

_SIZE_PREFIX = re.compile(r"(?P<size>-?[0-9]+)(?P<float>f)?@(?P<operand>.*)", re.DOTALL)


class ArgSpecError(ValueError):
    """An argument spec that cannot be decoded; the message names the spec."""


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """Where one probe argument lives and how wide it is, in one architecture's registers."""

    size: int
    signed: bool
    kind: str  # "reg" | "mem" | "const" | "symbol"
    reg: str | None  # pt_regs field: the register, the base of "mem", the instruction pointer for "symbol"
    offset: int  # displacement for "mem", offset added to the symbol for "symbol"
    value: int  # the constant for "const"
    symbol: str | None  # the global of an instruction-pointer-relative "symbol" argument
    text: str

    def __str__(self) -> str:
        return self.text


def parse_argspecs(args: str, arch: Architecture | None = None) -> tuple[ArgSpec, ...]:
    """Decode a probe's whitespace-separated argument string; "" gives ()."""
    return tuple(parse_argspec(spec, arch) for spec in args.split())


def parse_argspec(spec: str, arch: Architecture | None = None) -> ArgSpec:
    """Decode one ``[-]SIZE@OPERAND`` spec of an SDT note of ``arch`` (this machine's
    architecture when None), or raise ArgSpecError saying why not."""
    text = spec.strip()
    if not text:
        raise ArgSpecError("empty argument spec")
    size, signed, operand = split_size(text)
    if not operand:
        raise ArgSpecError(f"argument spec {text!r} has no operand after '@'")
    where = (arch or _host_architecture()).decode_sdt_operand(operand, text)
    return ArgSpec(size, signed, where.kind, where.reg, where.offset, where.value, where.symbol, text)


def split_size(text: str) -> tuple[int, bool, str]:
    """(size in bytes, signed, operand) of ``[-]SIZE@OPERAND``; DEFAULT_SIZE without a prefix."""
    prefix = _SIZE_PREFIX.fullmatch(text)
    if prefix is None:
        return DEFAULT_SIZE, False, text
    if prefix["float"]:
        raise ArgSpecError(f"argument spec {text!r}: floating-point arguments are not supported")
    size = int(prefix["size"])
    if abs(size) not in ARG_SIZES:
        raise ArgSpecError(f"argument spec {text!r}: size {abs(size)} is not 1, 2, 4 or 8 bytes")
    return abs(size), size < 0, prefix["operand"]


def _host_architecture() -> Architecture:
    from dbprobe.binary.arch import host  # the arch modules import ArgSpecError from here

    found = host()
    if found is None:
        raise ArgSpecError("this machine's CPU architecture is not supported")
    return found
