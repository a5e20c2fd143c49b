"""Argument specs of SystemTap SDT probes on x86-64, and of uprobe recipes.

A USDT probe's note describes each argument as ``SIZE@OPERAND``, the operand
in AT&T assembler syntax as the compiler chose it: ``-4@%r13d`` (a signed int
in r13), ``8@60(%rax)`` (8 bytes at rax+60), ``-4@$1`` (the constant 1),
``-4@40+CheckpointStats(%rip)`` (a global's field). Recipes use the same
syntax to say where a function argument lives (``8@%rsi``, ``4@8(%rsi)``).

Registers are named as the fields of BCC's ``struct pt_regs`` on x86-64
(``ax``, ``r13``, ``ip``...): a sub-register such as ``%r13d`` or ``%dil``
names the same field, and the width to read comes from the ``SIZE@`` prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

ARG_SIZES = (1, 2, 4, 8)

# Without a SIZE@ prefix (notes from sdt.h before sizes were recorded) the
# width is unknown; like GDB's SystemTap probe support, read an unsigned
# value of the address size.
DEFAULT_SIZE = 8


def _register_aliases() -> dict[str, str]:
    """Every x86-64 general-purpose register name, mapped to its pt_regs field."""
    aliases = {"rip": "ip"}
    for letter in "abcd":
        field = f"{letter}x"
        aliases.update(
            {f"r{letter}x": field, f"e{letter}x": field, field: field, f"{letter}l": field}
        )
    for field in ("si", "di", "bp", "sp"):
        aliases.update({f"r{field}": field, f"e{field}": field, field: field, f"{field}l": field})
    for number in range(8, 16):
        field = f"r{number}"
        aliases.update({field: field, f"{field}d": field, f"{field}w": field, f"{field}b": field})
    return aliases


REGISTER_FIELDS: dict[str, str] = _register_aliases()

_HIGH_BYTE_REGISTERS = frozenset({"ah", "bh", "ch", "dh"})

_NUMBER = r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_IDENTIFIER = r"[A-Za-z_.][A-Za-z0-9_.$]*"

_SIZE_PREFIX = re.compile(r"(?P<size>-?[0-9]+)(?P<float>f)?@(?P<operand>.*)", re.DOTALL)
_CONSTANT = re.compile(rf"\$(?P<value>{_NUMBER})")
_REGISTER = re.compile(r"%(?P<reg>[a-z0-9]+)")
_MEMORY = re.compile(rf"(?P<disp>{_NUMBER})?\(%(?P<reg>[a-z0-9]+)\)")
_SYMBOL = re.compile(
    rf"(?:(?P<before>{_NUMBER})\+)?(?P<symbol>{_IDENTIFIER})(?P<after>[-+][0-9]+)?\(%(?P<reg>[a-z0-9]+)\)"
)
_INDEXED = re.compile(r"[^(]*\([^)]*,[^)]*\)")

_EXPECTED_FORMS = "expected %reg, $constant, offset(%reg) or symbol(%rip)"


class ArgSpecError(ValueError):
    """An argument spec that cannot be decoded; the message names the spec."""


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """Where one probe argument lives and how wide it is."""

    size: int
    signed: bool
    kind: str  # "reg" | "mem" | "const" | "symbol"
    reg: str | None  # pt_regs field: the register, the base of "mem", "ip" for "symbol"
    offset: int  # displacement for "mem", offset added to the symbol for "symbol"
    value: int  # the constant for "const"
    symbol: str | None  # the global of a rip-relative "symbol" argument
    text: str

    def __str__(self) -> str:
        return self.text


def parse_argspecs(args: str) -> tuple[ArgSpec, ...]:
    """Decode a probe's whitespace-separated argument string; "" gives ()."""
    return tuple(parse_argspec(spec) for spec in args.split())


def parse_argspec(spec: str) -> ArgSpec:
    """Decode one ``[-]SIZE@OPERAND`` spec, or raise ArgSpecError saying why not."""
    text = spec.strip()
    if not text:
        raise ArgSpecError("empty argument spec")
    size, signed, operand = _split_size(text)
    if not operand:
        raise ArgSpecError(f"argument spec {text!r} has no operand after '@'")
    return _parse_operand(operand, size=size, signed=signed, text=text)


def _split_size(text: str) -> tuple[int, bool, str]:
    prefix = _SIZE_PREFIX.fullmatch(text)
    if prefix is None:
        return DEFAULT_SIZE, False, text
    if prefix["float"]:
        raise ArgSpecError(f"argument spec {text!r}: floating-point arguments are not supported")
    size = int(prefix["size"])
    if abs(size) not in ARG_SIZES:
        raise ArgSpecError(f"argument spec {text!r}: size {abs(size)} is not 1, 2, 4 or 8 bytes")
    return abs(size), size < 0, prefix["operand"]


def _parse_operand(operand: str, *, size: int, signed: bool, text: str) -> ArgSpec:
    spec = partial(_argspec, text, size, signed)
    if match := _CONSTANT.fullmatch(operand):
        return spec("const", value=int(match["value"], 0))
    if match := _REGISTER.fullmatch(operand):
        return spec("reg", reg=_register_field(match["reg"], text))
    if match := _MEMORY.fullmatch(operand):
        if match["reg"] == "rip":
            # Relative to the instruction after the probe's nop: meaningless without a symbol.
            raise ArgSpecError(f"argument spec {text!r}: a %rip-relative operand needs a symbol")
        displacement = int(match["disp"], 0) if match["disp"] else 0
        return spec("mem", reg=_register_field(match["reg"], text), offset=displacement)
    if match := _SYMBOL.fullmatch(operand):
        if match["reg"] != "rip":
            raise ArgSpecError(
                f"argument spec {text!r}: a symbol is only supported relative to %rip"
            )
        offset = int(match["before"] or "0", 0) + int(match["after"] or "0")
        return spec("symbol", reg="ip", offset=offset, symbol=match["symbol"])
    if _INDEXED.fullmatch(operand):
        raise ArgSpecError(
            f"argument spec {text!r}: indexed memory operands (base,index,scale) are not supported"
        )
    raise ArgSpecError(
        f"argument spec {text!r}: cannot decode operand {operand!r}; {_EXPECTED_FORMS}"
    )


def _argspec(
    text: str,
    size: int,
    signed: bool,
    kind: str,
    *,
    reg: str | None = None,
    offset: int = 0,
    value: int = 0,
    symbol: str | None = None,
) -> ArgSpec:
    return ArgSpec(size, signed, kind, reg, offset, value, symbol, text)


def _register_field(name: str, text: str) -> str:
    if name in _HIGH_BYTE_REGISTERS:
        raise ArgSpecError(f"argument spec {text!r}: high-byte register %{name} is not supported")
    if name.startswith(("xmm", "ymm", "zmm")):
        raise ArgSpecError(
            f"argument spec {text!r}: vector register %{name} cannot be read by a uprobe"
        )
    try:
        return REGISTER_FIELDS[name]
    except KeyError:
        raise ArgSpecError(f"argument spec {text!r}: unknown register %{name}") from None
