"""x86-64 (System V ABI): the first six integer arguments in rdi, rsi, rdx, rcx, r8, r9,
the rest on the stack above the return address; the result in rax."""

from __future__ import annotations

from dbprobe.binary.arch import x86
from dbprobe.binary.arch.architecture import Architecture

X86_64 = Architecture(
    name="x86_64",
    argument_registers=("di", "si", "dx", "cx", "r8", "r9"),
    return_register=x86.RETURN_REGISTER,
    stack_pointer=x86.STACK_POINTER,
    instruction_pointer=x86.INSTRUCTION_POINTER,
    first_stack_argument=8,
    stack_slot=8,
    decode_sdt_operand=x86.decode_sdt_operand,
)
