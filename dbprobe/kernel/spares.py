"""Compiled programs kept ready for the next binary of the same build.

Compiling is most of the time an attach takes (BCC runs clang), and binaries of one build
(containers of one image, a copied server tree) get the same program text: the entry
points differ only in the comments that name their binary, since sites are attached by
file offset and USDT semaphores by the kernel's reference counter. So a module compiled
ahead for one binary serves the next binary of its build: it is attached where the other
would have been compiled.

A spare is compiled but holds nothing attached: its maps exist (fresh, as compiling made
them), its tracepoint programs are not loaded until an Attachment takes it. The store
keeps at most one spare per program and at most ``limit`` in all; the oldest goes first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from dbprobe.kernel.attach import compile_module
from dbprobe.kernel.program import TraceProgram

MAX_SPARES = 3  # builds kept ready at once; each spare holds its maps in kernel memory


def without_comments(text: str) -> str:
    """C text with every comment's content taken out; what the compiler sees is unchanged.
    A comment becomes one space and the line ends it held (so line numbers stay); string
    and character literals are kept whole, and a // comment goes on past a backslash at
    the end of its line, as in C."""
    out: list[str] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        pair = text[index:index + 2]
        if pair == "/*":
            end = text.find("*/", index + 2)
            end = length if end < 0 else end + 2
            out.append(" " + "\n" * text.count("\n", index, end))
            index = end
        elif pair == "//":
            end = _line_comment_end(text, index)
            out.append(" " + "\n" * text.count("\n", index, end))
            index = end
        elif char in "\"'":
            end = _literal_end(text, index)
            out.append(text[index:end])
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _line_comment_end(text: str, start: int) -> int:
    """Where a // comment at `start` ends: at the newline not spliced by a backslash."""
    index = start
    while True:
        newline = text.find("\n", index)
        if newline < 0:
            return len(text)
        if newline > start and text[newline - 1] == "\\" or text[newline - 2:newline] == "\\\r":
            index = newline + 1
            continue
        return newline


def _literal_end(text: str, start: int) -> int:
    """The index past the string or character literal opening at `start`."""
    quote, index = text[start], start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text[index] == quote or text[index] == "\n":
            return index + 1
        else:
            index += 1
    return len(text)


def program_key(program: TraceProgram) -> str:
    """What decides the compiled code: the text without its comments, and the flags."""
    digest = hashlib.sha256(without_comments(program.source).encode())
    for flag in program.cflags:
        digest.update(b"\0" + flag.encode())
    return digest.hexdigest()


class SpareModules:
    """Compiled, never attached BCC modules by program_key; thread-safe."""

    def __init__(self, limit: int = MAX_SPARES):
        self.limit = limit
        self._modules: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._modules)

    def holds(self, program: TraceProgram) -> bool:
        with self._lock:
            return program_key(program) in self._modules

    def take(self, program: TraceProgram):
        """The spare compiled for this program, now the caller's; None when there is none."""
        with self._lock:
            return self._modules.pop(program_key(program), None)

    def prepare(self, program: TraceProgram) -> bool:
        """Compile a spare of `program` unless one is held already; whether one was made.
        A compile failure is the DbprobeError an attach would raise."""
        key = program_key(program)
        with self._lock:
            if self._closed or key in self._modules:
                return False
        module = compile_module(program.source, program.cflags, held=True)
        with self._lock:
            if self._closed or key in self._modules:
                extra = module
            else:
                self._modules[key] = module
                extra = self._evict() if len(self._modules) > self.limit else None
        if extra is not None:
            extra.cleanup()
        return extra is not module

    def _evict(self):
        return self._modules.popitem(last=False)[1]

    def clear(self) -> None:
        """Close every spare (a reload changed what the programs are)."""
        with self._lock:
            modules, self._modules = list(self._modules.values()), OrderedDict()
        for module in modules:
            module.cleanup()

    def close(self) -> None:
        """Close every spare; nothing is prepared after."""
        with self._lock:
            self._closed = True
        self.clear()
