"""What dbprobe needs from the machine, checked before anything is attached.

Each check returns a Check with a status and, when it is not ok, the fix. ``dbprobe
doctor`` prints them all; the tracing commands stop at the first failure with its fix as
the one-line error.
"""

from __future__ import annotations

import gzip
import os
import platform
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from dbprobe.errors import DbprobeError

OK, WARN, FAIL = "ok", "warn", "fail"

# Capability numbers from linux/capability.h.
CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF = 21, 19, 38, 39

TRACEFS_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe")
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
KHEADERS_ARCHIVE = Path("/sys/kernel/kheaders.tar.xz")
HEADER_TREES = Path("/usr/src")

# Kernel options dbprobe cannot work without, and what each one gives it.
REQUIRED_KERNEL_OPTIONS = {
    "CONFIG_BPF_SYSCALL": "the bpf() system call",
    "CONFIG_PERF_EVENTS": "perf events, through which BPF programs attach",
    "CONFIG_UPROBES": "uprobes",
    "CONFIG_UPROBE_EVENTS": "uprobe events",
    "CONFIG_BPF_EVENTS": "BPF programs on uprobes",
}

# Debian's name for the machine's architecture, in the names of its kernel packages.
_DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf",
                         "ppc64le": "ppc64el", "s390x": "s390x", "i686": "i386"}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def check_privileges() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", OK, "running as root")
    capabilities = _effective_capabilities()
    needed = {"CAP_BPF": CAP_BPF, "CAP_PERFMON": CAP_PERFMON, "CAP_SYS_PTRACE": CAP_SYS_PTRACE}
    missing = [name for name, bit in needed.items()
               if not capabilities >> bit & 1 and not capabilities >> CAP_SYS_ADMIN & 1]
    if not missing:
        return Check("privileges", OK, "CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE")
    return Check("privileges", FAIL, f"not root, missing {', '.join(missing)}",
                 "run dbprobe as root (sudo dbprobe ...)")


def _effective_capabilities() -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.MULTILINE)
    return int(match.group(1), 16) if match else 0


def check_kernel() -> Check:
    release = platform.release()
    version = _kernel_version(release)
    if version < (4, 20):
        return Check("kernel", FAIL, f"Linux {release}: USDT semaphores need 4.20 or newer",
                     "run a kernel 4.20 or newer (5.8+ for the BPF ring buffer)")
    if version < (5, 8):
        return Check("kernel", FAIL, f"Linux {release}: the BPF ring buffer needs 5.8 or newer",
                     "run a kernel 5.8 or newer")
    return Check("kernel", OK, f"Linux {release}")


def _kernel_version(release: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def kernel_config_paths(release: str | None = None) -> tuple[Path, ...]:
    """Where the running kernel's build configuration may be read, in order."""
    release = release or platform.release()
    return (Path("/proc/config.gz"), Path(f"/boot/config-{release}"))


def parse_kernel_config(text: str) -> dict[str, str]:
    """CONFIG_NAME -> value ("y", "m", "0x10"...) of a kernel .config; unset options are absent."""
    options = {}
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.startswith("CONFIG_"):
            options[name.strip()] = value.strip()
    return options


def check_kernel_config(paths: Sequence[Path] | None = None) -> Check:
    paths = kernel_config_paths() if paths is None else paths
    found = next(((path, text) for path in paths if (text := _read_kernel_config(path)) is not None),
                 None)
    if found is None:
        return Check("kernel config", WARN,
                     f"cannot read {' or '.join(map(str, paths))} (the uprobes, bpf and ring "
                     f"buffer checks test the kernel directly)",
                     "modprobe configs  # /proc/config.gz, where the kernel builds it as a module")
    path, text = found
    options = parse_kernel_config(text)
    missing = [name for name in REQUIRED_KERNEL_OPTIONS if options.get(name) != "y"]
    if missing:
        needs = ", ".join(f"{name} ({REQUIRED_KERNEL_OPTIONS[name]})" for name in missing)
        return Check("kernel config", FAIL, f"{path}: not built with {needs}",
                     f"boot a kernel built with {', '.join(f'{name}=y' for name in missing)}: "
                     f"apt-get install linux-image-{debian_architecture()} && reboot")
    return Check("kernel config", OK, f"{path}: {', '.join(f'{name}=y' for name in REQUIRED_KERNEL_OPTIONS)}")


def _read_kernel_config(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        data = gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError):
        return None
    return data.decode("utf-8", errors="replace")


def check_btf(path: Path = BTF_VMLINUX) -> Check:
    """Informational: dbprobe compiles with BCC against headers and does not need BTF."""
    if path.exists():
        return Check("btf", OK, f"{path} present (informational: dbprobe does not need BTF)")
    return Check("btf", OK, f"no {path} (informational: dbprobe does not need BTF)")


def debian_architecture() -> str:
    machine = platform.machine()
    return _DEBIAN_ARCHITECTURES.get(machine, machine)


def check_uprobes() -> Check:
    if not UPROBE_PMU.is_dir():
        return Check("uprobes", FAIL, "no uprobe event source in /sys/bus/event_source/devices",
                     "use a kernel built with CONFIG_UPROBES and CONFIG_UPROBE_EVENTS")
    if not (UPROBE_PMU / "format" / "ref_ctr_offset").exists():
        return Check("uprobes", WARN, "no ref_ctr_offset: USDT probes with semaphores cannot be enabled",
                     "use a kernel 4.20 or newer; dbprobe falls back to uprobes")
    return Check("uprobes", OK, "uprobe PMU with ref_ctr_offset (USDT semaphores)")


def check_tracefs() -> Check:
    mounted = next((path for path in TRACEFS_MOUNTS if _is_tracefs(Path(path))), None)
    if mounted:
        return Check("tracefs", OK, f"mounted at {mounted}")
    return Check("tracefs", FAIL, "tracefs is not mounted",
                 "mount -t tracefs nodev /sys/kernel/tracing")


def _is_tracefs(path: Path) -> bool:
    try:
        return (path / "events").is_dir()
    except PermissionError:  # not root: the mount table still says what is mounted there
        return _mount_type(path) == "tracefs"


def _mount_type(path: Path) -> str | None:
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return None
    types = {fields[1]: fields[2] for fields in map(str.split, mounts.splitlines()) if len(fields) > 2}
    return types.get(str(path))


def check_bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError:
        return Check("bcc", FAIL, "BCC's Python bindings cannot be imported",
                     "apt-get install python3-bpfcc, and use a Python that sees it "
                     "(a venv made with --system-site-packages)")
    version = getattr(bcc, "__version__", None)
    return Check("bcc", OK, f"BCC {version or '(version unknown)'} at {Path(bcc.__file__).parent}")


def kernel_header_candidates(release: str | None = None) -> list[Path]:
    """Where BCC looks for the running kernel's headers: BCC_KERNEL_SOURCE alone when set."""
    override = os.environ.get("BCC_KERNEL_SOURCE")
    if override:
        return [Path(override)]
    return [Path("/lib/modules") / (release or platform.release()) / "build"]


def kernel_headers_dir(candidates: Sequence[Path] | None = None) -> Path | None:
    for candidate in kernel_header_candidates() if candidates is None else candidates:
        if (candidate / "include" / "linux").is_dir() or (candidate / "include" / "generated").is_dir():
            return candidate
    return None


def check_kernel_headers(candidates: Sequence[Path] | None = None,
                         kheaders: Path = KHEADERS_ARCHIVE, release: str | None = None) -> Check:
    """Headers BCC can compile against: a headers tree, or the kernel's own (CONFIG_IKHEADERS)."""
    release = release or platform.release()
    found = kernel_headers_dir(candidates)
    if found is not None:
        tree = found.resolve()
        if release in str(tree):
            return Check("kernel headers", OK, f"{found} -> {tree}")
        return Check("kernel headers", OK, f"{found} -> {tree}: another kernel's headers, "
                                           f"enough for dbprobe's uprobe programs")
    if kheaders.exists():
        return Check("kernel headers", OK, "built into the kernel (CONFIG_IKHEADERS)")
    return Check("kernel headers", FAIL, f"none for {release}: BCC compiles its programs against them",
                 kernel_headers_fix(release, debian_architecture()))


def kernel_headers_fix(release: str, architecture: str) -> str:
    """Install the kernel's headers or, where the distribution has none for it (a custom or
    cloud kernel), link its generic ones: uprobe programs need nothing version-specific."""
    modules = f"/lib/modules/{release}"
    newest = "ls -d {trees} | sort -V | tail -n 1"
    flavoured = newest.format(trees=f"{HEADER_TREES}/linux-headers-*-{architecture}")
    common = newest.format(trees=f"{HEADER_TREES}/linux-headers-*-common")
    return (f"apt-get install linux-headers-{release}; where the distribution has none for this "
            f"kernel, link the generic ones (make setup does this): "
            f"apt-get install linux-headers-{architecture} && mkdir -p {modules} && "
            f"ln -sfn \"$({flavoured})\" {modules}/build && "
            f"ln -sfn \"$({common})\" {modules}/source")


def check_bpf() -> Check:
    """Whether this process may load BPF programs, by loading the smallest one."""
    if check_bcc().status != OK:
        return Check("bpf", FAIL, "not checked: BCC is missing", "install BCC first")
    error = _load_error("int dbprobe_bpf_check(void *ctx) { return 0; }", "dbprobe_bpf_check")
    if error is not None:
        return Check("bpf", FAIL, f"cannot load a BPF program: {error}",
                     "run as root on a kernel with CONFIG_BPF_SYSCALL; check kernel.unprivileged_bpf_disabled "
                     "and lockdown (mokutil --sb-state)")
    return Check("bpf", OK, "a BPF program loads")


_RING_BUFFER_PROGRAM = """
BPF_RINGBUF_OUTPUT(dbprobe_ring_check, 1);
int dbprobe_ring_buffer_check(void *ctx) {
    u32 value = 0;
    dbprobe_ring_check.ringbuf_output(&value, sizeof(value), 0);
    return 0;
}
"""


def check_ring_buffer() -> Check:
    """Whether the kernel has BPF ring buffers, which carry dbprobe's events to user space."""
    if check_bcc().status != OK:
        return Check("ring buffer", FAIL, "not checked: BCC is missing", "install BCC first")
    error = _load_error(_RING_BUFFER_PROGRAM, "dbprobe_ring_buffer_check")
    if error is None:
        return Check("ring buffer", OK, "a BPF ring buffer map is created and written to")
    if check_bpf().status != OK:
        return Check("ring buffer", FAIL, "not checked: no BPF program loads here",
                     "follow the bpf check's fix, then run dbprobe doctor again")
    return Check("ring buffer", FAIL, f"cannot load a program with a BPF ring buffer: {error}",
                 "run a kernel 5.8 or newer (BPF_MAP_TYPE_RINGBUF)")


def _load_error(source: str, function: str) -> str | None:
    """Compile `source` and load `function` from it; what went wrong, in one line, if anything.

    BCC's library writes the kernel's reason to stderr and raises a vaguer exception; the
    reason is captured and kept, and nothing reaches the terminal.
    """
    with _captured_stderr() as library_output:
        try:
            from bcc import BPF
            program = BPF(text=source)
            try:
                program.load_func(function.encode(), BPF.KPROBE)
            finally:
                program.cleanup()
        except Exception as error:  # BCC raises plain Exception for everything
            failure = _first_line(str(error)) or type(error).__name__
        else:
            return None
    reason = _first_line(library_output.text)
    return f"{failure} ({reason})" if reason and reason not in failure else failure


class _Captured:
    text = ""


@contextmanager
def _captured_stderr() -> Iterator[_Captured]:
    """What is written to file descriptor 2 meanwhile, by Python or by C libraries."""
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


TRACING_CHECKS: tuple[Callable[[], Check], ...] = (
    check_privileges, check_kernel, check_uprobes, check_tracefs, check_bcc, check_kernel_headers,
)


# What ``dbprobe doctor`` checks about the machine, in the order it prints them.
MACHINE_CHECKS: tuple[Callable[[], Check], ...] = (
    check_privileges, check_kernel, check_kernel_config, check_btf, check_tracefs, check_uprobes,
    check_bcc, check_kernel_headers, check_bpf, check_ring_buffer,
)


def require_tracing_ready() -> None:
    """Stop with the first missing prerequisite and its fix, before anything is attached."""
    for run in TRACING_CHECKS:
        check = run()
        if check.status == FAIL:
            raise DbprobeError(f"{check.name}: {check.detail}; fix: {check.fix}")
