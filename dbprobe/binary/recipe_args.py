"""Recipe arguments: where a function's arguments are, said without naming a register.

A recipe reads ``SIZE@WHERE``, with SIZE as in SDT notes (``-4`` a signed int, ``8`` an
unsigned 8 bytes) and WHERE one of:

  ``arg2``                 the function's second argument, at its entry
  ``8(arg2)``, ``(arg2)``  memory at the second argument plus 8 (or 0): a struct's field
  ``ret``, ``8(ret)``      the return value, at the function's return, or memory at it
  ``NAME``, ``NAME+8``     the global variable NAME, or memory 8 bytes into it
  ``$64``                  the constant 64 (an offset into a server struct, per version)

Arguments count from 1, as USDT argument numbers do; ``argN`` and ``ret`` are never
taken for globals of those names. Binding a recipe to a binary resolves each one through
the binary's architecture (dbprobe/binary/arch/) into the ArgSpec that the kernel side
reads: ``8@arg2`` is rsi on x86-64.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbprobe.binary.arch import Architecture
from dbprobe.binary.argspec import ArgSpec, ArgSpecError, split_size

_NUMBER = r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_BASE = r"arg(?P<number>[1-9][0-9]*)|(?P<ret>ret)"
_VALUE = re.compile(_BASE)
# arg0, arg, 8(arg0): an argument miscounted from 0, not a global of that name.
_ARGUMENT_LIKE = re.compile(r"(?:[0-9a-fA-Fx-]*\()?arg[0-9]*\)?")
_NOT_GLOBALS = re.compile(r"arg[0-9]*|ret")
_IN_MEMORY = re.compile(rf"(?P<offset>{_NUMBER})?\((?:{_BASE})\)")
_CONSTANT = re.compile(rf"\$(?P<value>{_NUMBER})")
_GLOBAL = re.compile(r"(?P<symbol>[A-Za-z_][A-Za-z0-9_.$]*)(?P<offset>[-+](?:0[xX][0-9a-fA-F]+|[0-9]+))?")

_EXPECTED_FORMS = "expected argN, OFFSET(argN), ret, OFFSET(ret), GLOBAL, GLOBAL+OFFSET or $CONSTANT"


@dataclass(frozen=True, slots=True)
class RecipeArg:
    """One argument a recipe hook reads, the same on every architecture."""

    size: int
    signed: bool
    base: str  # "arg" | "ret" | "global" | "const"
    number: int  # which argument, from 1, for "arg"; 0 otherwise
    in_memory: bool  # read memory at base + offset rather than the base itself
    offset: int  # the value, for "const"
    symbol: str | None  # the global, for "global"
    text: str

    def __str__(self) -> str:
        return self.text

    def resolve(self, arch: Architecture) -> ArgSpec:
        """Where this argument is in ``arch``'s registers and memory."""
        def spec(kind: str, reg: str, offset: int = 0, symbol: str | None = None) -> ArgSpec:
            return ArgSpec(self.size, self.signed, kind, reg, offset, 0, symbol, self.text)

        if self.base == "const":
            return ArgSpec(self.size, self.signed, "const", None, 0, self.offset, None, self.text)
        if self.base == "global":
            return spec("symbol", arch.instruction_pointer, self.offset, self.symbol)
        if self.base == "ret":
            register = arch.return_register
        elif self.number <= len(arch.argument_registers):
            register = arch.argument_registers[self.number - 1]
        elif self.in_memory:
            raise ArgSpecError(
                f"recipe argument {self.text!r}: argument {self.number} is on the stack on"
                f" {arch.name}, and memory it points to cannot be read")
        else:
            return spec("mem", arch.stack_pointer, arch.stack_argument_offset(self.number))
        return spec("mem", register, self.offset) if self.in_memory else spec("reg", register)


def parse_recipe_arg(text: str) -> RecipeArg:
    """Decode one ``[-]SIZE@WHERE`` of a recipe, or raise ArgSpecError saying why not."""
    if not isinstance(text, str):
        raise ArgSpecError(f"recipe argument {text!r} is not a string")
    stripped = text.strip()
    if "@" not in stripped:
        raise ArgSpecError(f"recipe argument {stripped!r} needs a size: 8@arg1, -4@ret...")
    size, signed, where = split_size(stripped)
    if "%" in where:
        raise ArgSpecError(f"recipe argument {stripped!r} names a register; {_EXPECTED_FORMS}")
    if match := _VALUE.fullmatch(where):
        base, number = _base(match)
        return RecipeArg(size, signed, base, number, False, 0, None, stripped)
    if match := _CONSTANT.fullmatch(where):
        return RecipeArg(size, signed, "const", 0, False, int(match["value"], 0), None, stripped)
    if match := _IN_MEMORY.fullmatch(where):
        base, number = _base(match)
        offset = int(match["offset"] or "0", 0)
        return RecipeArg(size, signed, base, number, True, offset, None, stripped)
    if _ARGUMENT_LIKE.fullmatch(where):
        raise ArgSpecError(f"recipe argument {stripped!r}: arguments count from 1 (arg1, arg2...)")
    if (match := _GLOBAL.fullmatch(where)) and not _NOT_GLOBALS.fullmatch(match["symbol"]):
        offset = int(match["offset"] or "0", 0)
        return RecipeArg(size, signed, "global", 0, True, offset, match["symbol"], stripped)
    raise ArgSpecError(f"recipe argument {stripped!r}: cannot decode {where!r}; {_EXPECTED_FORMS}")


def _base(match: re.Match[str]) -> tuple[str, int]:
    return ("ret", 0) if match["ret"] else ("arg", int(match["number"]))


def placement_error(arg: RecipeArg, site: str) -> str | None:
    """Why ``arg`` cannot be read where a hook runs, or None. ``site`` is "usdt" (a USDT
    probe's site), "entry" or "return" (a uprobe at a function's entry or return)."""
    if site == "usdt" and arg.base not in ("global", "const"):
        return (f"recipe argument {arg.text!r}: a USDT probe's own arguments are numbers"
                " (1, 2...); its site can read globals")
    if site == "entry" and arg.base == "ret":
        return f"recipe argument {arg.text!r}: ret is only known at a return probe"
    if site == "return" and arg.base == "arg":
        return (f"recipe argument {arg.text!r}: a return probe cannot read the arguments;"
                " their registers no longer hold them")
    if site == "return" and arg.base == "global":
        return "a return probe cannot read globals relative to its site"
    return None
