"""The interface every CPU architecture module fills in.

An architecture says where a function finds its arguments at its first instruction,
where its return value is at its return, and how a SystemTap SDT note of that
architecture spells an operand. Registers are named as the fields of BCC's
``struct pt_regs`` for that architecture, which is what the generated C reads
(``ctx->si`` on x86-64, ``ctx->regs[1]`` on AArch64).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


class Operand(NamedTuple):
    """Where an SDT note's operand is, before its size is attached.

    ``kind`` is "reg" (the value of ``reg``), "mem" (memory at ``reg`` + ``offset``),
    "const" (``value``) or "symbol" (memory at the global ``symbol`` + ``offset``, found
    relative to the instruction pointer ``reg``).
    """

    kind: str
    reg: str | None = None
    offset: int = 0
    value: int = 0
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Architecture:
    name: str  # as ElfBinary.machine says it: "x86_64"
    argument_registers: tuple[str, ...]  # the integer arguments in order, at function entry
    return_register: str  # the integer return value, at function return
    stack_pointer: str
    instruction_pointer: str
    # Where the first argument that is not in a register lies, past the stack pointer at
    # function entry (x86 pushes the return address below it), and how far apart they are.
    first_stack_argument: int
    stack_slot: int
    # Decodes an SDT note operand: (operand, the whole spec for messages) -> Operand,
    # raising ArgSpecError when it cannot.
    decode_sdt_operand: Callable[[str, str], Operand]

    def stack_argument_offset(self, number: int) -> int:
        """Where argument ``number`` (1-based, past the register ones) is, from the stack pointer."""
        return self.first_stack_argument + (number - len(self.argument_registers) - 1) * self.stack_slot
