"""x86 registers and the AT&T operand syntax of SDT notes, shared by x86-64 and i386.

A note's operand is ``%r13d`` (a register), ``8@60(%rax)`` (memory at a register plus
a displacement), ``$1`` (a constant) or ``40+CheckpointStats(%rip)`` (a global's
field). A sub-register such as ``%r13d`` or ``%dil`` names the same pt_regs field as
the full register; the width to read comes from the spec's ``SIZE@`` prefix.
"""

from __future__ import annotations

import re

from dbprobe.binary.arch.architecture import Operand
from dbprobe.binary.argspec import ArgSpecError


def _register_aliases() -> dict[str, str]:
    """Every general-purpose register name, mapped to its pt_regs field."""
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
INSTRUCTION_POINTER = "ip"
STACK_POINTER = "sp"
RETURN_REGISTER = "ax"

_HIGH_BYTE_REGISTERS = frozenset({"ah", "bh", "ch", "dh"})
_INSTRUCTION_POINTERS = frozenset({"rip"})

_NUMBER = r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_IDENTIFIER = r"[A-Za-z_.][A-Za-z0-9_.$]*"

_CONSTANT = re.compile(rf"\$(?P<value>{_NUMBER})")
_REGISTER = re.compile(r"%(?P<reg>[a-z0-9]+)")
_MEMORY = re.compile(rf"(?P<disp>{_NUMBER})?\(%(?P<reg>[a-z0-9]+)\)")
_SYMBOL = re.compile(
    rf"(?:(?P<before>{_NUMBER})\+)?(?P<symbol>{_IDENTIFIER})(?P<after>[-+][0-9]+)?\(%(?P<reg>[a-z0-9]+)\)"
)
_INDEXED = re.compile(r"[^(]*\([^)]*,[^)]*\)")

_EXPECTED_FORMS = "expected %reg, $constant, offset(%reg) or symbol(%rip)"


def decode_sdt_operand(operand: str, text: str) -> Operand:
    """Decode an AT&T operand of the spec ``text``, or raise ArgSpecError saying why not."""
    if match := _CONSTANT.fullmatch(operand):
        return Operand("const", value=int(match["value"], 0))
    if match := _REGISTER.fullmatch(operand):
        return Operand("reg", reg=_register_field(match["reg"], text))
    if match := _MEMORY.fullmatch(operand):
        if match["reg"] in _INSTRUCTION_POINTERS:
            # Relative to the instruction after the probe's nop: meaningless without a symbol.
            raise ArgSpecError(f"argument spec {text!r}: a %rip-relative operand needs a symbol")
        displacement = int(match["disp"], 0) if match["disp"] else 0
        return Operand("mem", reg=_register_field(match["reg"], text), offset=displacement)
    if match := _SYMBOL.fullmatch(operand):
        if match["reg"] not in _INSTRUCTION_POINTERS:
            raise ArgSpecError(
                f"argument spec {text!r}: a symbol is only supported relative to %rip"
            )
        offset = int(match["before"] or "0", 0) + int(match["after"] or "0")
        return Operand("symbol", reg=INSTRUCTION_POINTER, offset=offset, symbol=match["symbol"])
    if _INDEXED.fullmatch(operand):
        raise ArgSpecError(
            f"argument spec {text!r}: indexed memory operands (base,index,scale) are not supported"
        )
    raise ArgSpecError(
        f"argument spec {text!r}: cannot decode operand {operand!r}; {_EXPECTED_FORMS}"
    )


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
