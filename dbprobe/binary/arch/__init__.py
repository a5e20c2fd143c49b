"""What differs per CPU architecture, one module each, in the manner of bpftrace's src/arch/.

Argument registers, the return register, the stack and instruction pointers and the
operand syntax of SDT notes live in these modules; nothing else in dbprobe names a
register. Recipes say ``8@arg2`` and ``4@ret``, and binding a recipe to a binary
resolves them through the binary's architecture.

Another architecture is one more module that fills in ``Architecture`` (for AArch64:
x0-x7 as ``regs[0]``..``regs[7]``, the result in ``regs[0]``, ``sp``, ``pc``, and
operands such as ``x19`` and ``[sp, 16]``) and one more entry below.
"""

from __future__ import annotations

import platform

from dbprobe.binary.arch.architecture import Architecture, Operand
from dbprobe.binary.arch.i386 import I386
from dbprobe.binary.arch.x86_64 import X86_64

__all__ = ["Architecture", "Operand", "SUPPORTED", "architecture_for", "host"]

SUPPORTED: dict[str, Architecture] = {arch.name: arch for arch in (X86_64, I386)}

# platform.machine() spellings of the same architectures
_HOST_NAMES = {"amd64": "x86_64", "i686": "i386", "i586": "i386"}


def architecture_for(machine: str) -> Architecture | None:
    """The architecture of an ElfBinary.machine ("x86_64"), or None when dbprobe has none."""
    return SUPPORTED.get(machine)


def host() -> Architecture | None:
    """The architecture this machine runs."""
    machine = platform.machine().lower()
    return architecture_for(_HOST_NAMES.get(machine, machine))
