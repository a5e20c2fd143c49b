"""Compile the BPF programs with BCC and attach them to every process of a binary.

Uprobes are attached by binary and file offset with pid -1, so every process mapping the
binary is traced, those running now and those forked later (postgres forks a backend per
connection). USDT semaphores use the kernel's uprobe reference counter (``ref_ctr_offset``,
Linux 4.20+): the kernel raises the semaphore in every such process, present and future,
and lowers it on detach. libbcc's ``bpf_attach_uprobe`` takes that offset as its seventh
argument, which BCC's own Python declaration leaves out (bcc issue 5236), so the call is
declared here on a separate function object.

A module may be compiled ahead (``held``), for a binary not seen yet: its tracepoints wait
until an Attachment takes it (dbprobe.kernel.spares keeps such modules).
``Attachment`` owns the module and every perf event it opened; closing it detaches all,
and the kernel drops them too if the process dies, since they live as file descriptors.
Where the kernel's uprobe PMU refuses a site, libbcc falls back to creating the uprobe
through tracefs (an entry in uprobe_events), which outlives the process: such an entry is
removed whether the attach succeeds or fails.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import time
import tempfile
from contextlib import contextmanager
from typing import Iterator, Sequence

from dbprobe.kernel.entrypoints import HookProgram
from dbprobe.errors import DbprobeError

UPROBE_ENTRY = 0
UPROBE_RETURN = 1

_event_numbers = itertools.count()


def import_bcc():
    try:
        import bcc
    except ImportError:
        raise DbprobeError("BCC's Python bindings are missing: apt-get install python3-bpfcc "
                           "(and run dbprobe with a Python that sees them)") from None
    return bcc


def compile_module(source: str, cflags: Sequence[str], *, held: bool = False):
    """The BCC module of a program text: compiled, its maps created. BCC attaches the
    module's tracepoint programs as it compiles; a module `held` leaves them unloaded until
    an Attachment takes it, and has its other programs loaded (verified) already: a module
    compiled ahead, for a binary not seen yet."""
    bcc = import_bcc()
    kind = _held_module_class(bcc) if held else bcc.BPF
    with _captured_stderr() as diagnostics:
        try:
            module = kind(text=source.encode(), cflags=list(cflags))
        except Exception as error:
            raise DbprobeError(_compile_failure(error, diagnostics())) from None
        if held:
            module.load_programs()
    return module


# The functions BCC attaches itself, by the prefix of their names (BPF._trace_autoload).
_AUTOLOADED = (b"kprobe__", b"kretprobe__", b"tracepoint__", b"raw_tracepoint__", b"kfunc__",
               b"kretfunc__", b"lsm__")
_HELD_MODULE = None


def _held_module_class(bcc):
    """bcc.BPF, its tracepoints attached by start() rather than when it compiles."""
    global _HELD_MODULE
    if _HELD_MODULE is None:
        class HeldModule(bcc.BPF):
            started = False

            def _trace_autoload(self):
                if self.started:
                    super()._trace_autoload()

            def start(self) -> None:
                self.started = True
                self._trace_autoload()

            def load_programs(self) -> None:
                """Load every uprobe program, so that attaching spends no verifier time."""
                lib = bcc.libbcc.lib
                for index in range(lib.bpf_num_functions(self.module)):
                    name = lib.bpf_function_name(self.module, index)
                    if not name.startswith(_AUTOLOADED):
                        try:
                            self.load_func(name, bcc.BPF.KPROBE)
                        except Exception:
                            pass  # loaded again when attached, which says why it fails

        _HELD_MODULE = HeldModule
    return _HELD_MODULE


class Attachment:
    """A compiled BPF module and the uprobes its programs are attached to."""

    def __init__(self, module):
        """Own `module` (from compile_module), starting its tracepoints if they are held."""
        bcc = import_bcc()
        self._lib = bcc.libbcc.lib
        self._attach_uprobe = _declare_attach_uprobe(self._lib)
        self.bpf = module
        self._events: list[tuple[bytes, int]] = []  # (event name, perf event fd)
        if getattr(module, "started", True) is False:
            self._start_tracepoints()

    def _start_tracepoints(self) -> None:
        with _captured_stderr() as diagnostics:
            try:
                self.bpf.start()
            except Exception as error:
                detail = str(error).splitlines()[0] if str(error) else diagnostics().strip()
                self.close()
                raise DbprobeError(f"cannot attach the program's tracepoints: {detail}") from None

    @classmethod
    def compile(cls, source: str, cflags: Sequence[str]) -> "Attachment":
        return cls(compile_module(source, cflags))

    def has_table(self, name: str) -> bool:
        if self.bpf is None:
            return False
        try:
            self.bpf.get_table(name)
        except KeyError:
            return False
        return True

    def attach(self, programs: Sequence[HookProgram]) -> int:
        """Attach every site of every program, or none: a failure detaches what was done."""
        try:
            for program in programs:
                self._attach_program(program)
        except BaseException:
            self.detach()
            raise
        return len(self._events)

    def _attach_program(self, program: HookProgram) -> None:
        bcc = import_bcc()
        try:
            function = self.bpf.load_func(program.function.encode(), bcc.BPF.KPROBE)
        except Exception as error:
            raise DbprobeError(f"the kernel refused program {program.function} for "
                               f"{program.sites[0].label}: {str(error).splitlines()[0]}") from None
        kind = UPROBE_RETURN if program.on_return else UPROBE_ENTRY
        for site in program.sites:
            name = f"dbprobe_{os.getpid()}_{next(_event_numbers)}".encode()
            # libbcc says why a site is refused on fd 2; the error below says it in one line.
            with _captured_stderr():
                fd = self._attach_uprobe(function.fd, kind, name, site.binary.encode(),
                                         site.file_offset, -1, site.ref_ctr_offset)
            if fd < 0:
                # Where the uprobe PMU refuses a site, libbcc falls back on tracefs and
                # leaves the event it defined there behind: remove it too.
                self._remove_tracefs_event(name)
                raise DbprobeError(f"cannot attach to {site.label} in {site.binary} at offset "
                                   f"{site.file_offset:#x}: {os.strerror(-fd) if fd < -1 else 'refused'}")
            self._events.append((name, fd))

    def _remove_tracefs_event(self, name: bytes) -> None:
        """Remove libbcc's tracefs entry for `name`, once more if the kernel still held it."""
        for _ in range(REMOVE_TRIES):
            with _captured_stderr():
                self._lib.bpf_detach_uprobe(name)
            if not tracefs_events(f"{name.decode()}_bcc_"):
                return
            time.sleep(REMOVE_RETRY_S)

    @property
    def attached(self) -> int:
        return len(self._events)

    def detach(self) -> None:
        """Remove every uprobe; safe to call twice and from a failing attach."""
        while self._events:
            name, fd = self._events.pop()
            self._lib.bpf_close_perf_event_fd(fd)
            self._lib.bpf_detach_uprobe(name)

    def close(self) -> None:
        self.detach()
        bpf, self.bpf = self.bpf, None
        if bpf is not None:
            bpf.cleanup()

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


REMOVE_TRIES = 3
REMOVE_RETRY_S = 0.05
UPROBE_EVENTS = ("/sys/kernel/tracing/uprobe_events", "/sys/kernel/debug/tracing/uprobe_events")
_EVENT_OWNER = re.compile(r"^dbprobe_(\d+)_\d+_bcc_\d+$")


def tracefs_events(prefix: str = "dbprobe_") -> list[str]:
    """The names of the tracefs uprobe events that start with `prefix`."""
    for path in UPROBE_EVENTS:
        try:
            with open(path) as events:
                lines = events.read().splitlines()
        except OSError:
            continue
        names = (line.split(" ", 1)[0].partition("/")[2] for line in lines)
        return [name for name in names if name.startswith(prefix)]
    return []


def remove_stale_events() -> list[str]:
    """Remove the tracefs uprobe events a dbprobe process left behind when it died (killed
    while libbcc's tracefs fallback held one); the names removed. An event still in use
    (another pid namespace's dbprobe, whose pid this one cannot see) is refused by the kernel
    and stays."""
    removed = []
    for name in tracefs_events():
        owner = _EVENT_OWNER.match(name)
        if owner is None or os.path.exists(f"/proc/{owner.group(1)}"):
            continue
        if any(_write_event_line(path, f"-:uprobes/{name}\n") for path in UPROBE_EVENTS):
            removed.append(name)
    return removed


def _write_event_line(path: str, line: str) -> bool:
    """Write one definition to a tracefs events file (which cannot seek, so no "a" mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return False
    try:
        os.write(fd, line.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _declare_attach_uprobe(lib):
    # lib["name"] is a fresh function object: BCC's own declaration stays untouched.
    function = lib["bpf_attach_uprobe"]
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                         ctypes.c_uint64, ctypes.c_int, ctypes.c_uint32]
    return function


@contextmanager
def _captured_stderr() -> Iterator:
    """Collect what libbcc and clang write to fd 2, to report it as one line or drop it."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: _read_back(sink)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _read_back(sink) -> str:
    sink.flush()
    sink.seek(0)
    return sink.read().decode(errors="replace")


def _compile_failure(error: Exception, diagnostics: str) -> str:
    if "kernel headers" in diagnostics.lower() or "linux/" in diagnostics and "not found" in diagnostics:
        return ("BCC cannot find kernel headers for this kernel: run `dbprobe doctor` "
                "for how to install them")
    first_error = next((line.strip() for line in diagnostics.splitlines()
                        if re.search(r"\berror\b", line)), None)
    detail = first_error or str(error).splitlines()[0]
    return f"the BPF program did not compile: {detail}"
