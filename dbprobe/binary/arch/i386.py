"""i386 (System V ABI, cdecl): every argument on the stack above the return address; the
result in eax. Its SDT notes use the same AT&T syntax as x86-64's."""

from __future__ import annotations

from dbprobe.binary.arch import x86
from dbprobe.binary.arch.architecture import Architecture

I386 = Architecture(
    name="i386",
    argument_registers=(),
    return_register=x86.RETURN_REGISTER,
    stack_pointer=x86.STACK_POINTER,
    instruction_pointer=x86.INSTRUCTION_POINTER,
    first_stack_argument=4,
    stack_slot=4,
    decode_sdt_operand=x86.decode_sdt_operand,
)
