"""What dbprobe needs from the machine, checked before anything is attached.

Each check returns a Check with a status and, when it is not ok, the fix. ``dbprobe
doctor`` prints them all; the tracing commands stop at the first failure with its fix as
the one-line error.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from dbprobe.errors import DbprobeError

OK, WARN, FAIL = "ok", "warn", "fail"

# Capability numbers from linux/capability.h.
CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF = 21, 19, 38, 39

TRACEFS_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe")


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


def check_uprobes() -> Check:
    if not UPROBE_PMU.is_dir():
        return Check("uprobes", FAIL, "no uprobe event source in /sys/bus/event_source/devices",
                     "use a kernel built with CONFIG_UPROBES and CONFIG_UPROBE_EVENTS")
    if not (UPROBE_PMU / "format" / "ref_ctr_offset").exists():
        return Check("uprobes", WARN, "no ref_ctr_offset: USDT probes with semaphores cannot be enabled",
                     "use a kernel 4.20 or newer; dbprobe falls back to uprobes")
    return Check("uprobes", OK, "uprobe PMU with ref_ctr_offset (USDT semaphores)")


def check_tracefs() -> Check:
    mounted = next((path for path in TRACEFS_MOUNTS if Path(path, "events").is_dir()), None)
    if mounted:
        return Check("tracefs", OK, f"mounted at {mounted}")
    return Check("tracefs", FAIL, "tracefs is not mounted",
                 "mount -t tracefs nodev /sys/kernel/tracing")


def check_bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError:
        return Check("bcc", FAIL, "BCC's Python bindings cannot be imported",
                     "apt-get install python3-bpfcc, and use a Python that sees it "
                     "(a venv made with --system-site-packages)")
    return Check("bcc", OK, f"BCC bindings at {Path(bcc.__file__).parent}")


def kernel_headers_dir() -> Path | None:
    override = os.environ.get("BCC_KERNEL_SOURCE")
    candidates = ([Path(override)] if override else []) + [
        Path("/lib/modules") / platform.release() / "build",
    ]
    for candidate in candidates:
        if (candidate / "include" / "linux").is_dir() or (candidate / "include" / "generated").is_dir():
            return candidate
    return None


def check_kernel_headers() -> Check:
    found = kernel_headers_dir()
    if found is not None:
        return Check("kernel headers", OK, f"{found} -> {found.resolve()}")
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return Check("kernel headers", OK, "built into the kernel (CONFIG_IKHEADERS)")
    release = platform.release()
    return Check(
        "kernel headers", FAIL, f"none for {release}: BCC compiles its programs against them",
        f"apt-get install linux-headers-{release}; where the distribution has none for this "
        f"kernel, install linux-headers-amd64 and link /lib/modules/{release}/build to its "
        f"/usr/src/linux-headers-*-amd64 tree and /lib/modules/{release}/source to the "
        f"-common one (make setup does this); uprobe programs need nothing version-specific",
    )


def check_bpf() -> Check:
    """Whether this process may load BPF programs, by loading the smallest one."""
    if check_bcc().status != OK:
        return Check("bpf", FAIL, "not checked: BCC is missing", "install BCC first")
    try:
        from bcc import BPF
        probe = BPF(text="int dbprobe_bpf_check(void *ctx) { return 0; }")
        try:
            probe.load_func(b"dbprobe_bpf_check", BPF.KPROBE)
        finally:
            probe.cleanup()
    except Exception as error:  # BCC raises plain Exception for everything
        return Check("bpf", FAIL, f"cannot load a BPF program: {str(error).splitlines()[0]}",
                     "run as root on a kernel with CONFIG_BPF_SYSCALL; check kernel.unprivileged_bpf_disabled "
                     "and lockdown (mokutil --sb-state)")
    return Check("bpf", OK, "a BPF program loads")


TRACING_CHECKS: tuple[Callable[[], Check], ...] = (
    check_privileges, check_kernel, check_uprobes, check_tracefs, check_bcc, check_kernel_headers,
)


def failures(checks: Iterable[Callable[[], Check]]) -> list[Check]:
    return [check for check in (run() for run in checks) if check.status == FAIL]


def require_tracing_ready() -> None:
    """Stop with the first missing prerequisite and its fix, before anything is attached."""
    for check in failures(TRACING_CHECKS):
        raise DbprobeError(f"{check.name}: {check.detail}; fix: {check.fix}")
