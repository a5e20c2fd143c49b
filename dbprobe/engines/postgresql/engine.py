"""PostgreSQL as dbprobe knows it: a postmaster forking a backend per connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from dbprobe.binary.elf import ElfBinary
from dbprobe.digest.locks import LWLockStats
from dbprobe.discover.memory import read_c_string
from dbprobe.engines.base import BackendInfo, Engine, LockHolder, RunningServer, ServerSettings
from dbprobe.engines.postgresql import cmdline, locks, titles, wait_events
from dbprobe.kernel.records import LOCK_WAIT_FAILED, PG_LOCK_WAIT_ERROR, RawLockEvent
from dbprobe.model import LockTarget

if TYPE_CHECKING:
    from dbprobe.kernel.maps import Collector

# As the server's .rodata holds it, whole (a NUL before it): the binary also holds messages
# like "upgrading to PostgreSQL 9.1.".
VERSION_PATTERN = rb"(?:^|\x00)PostgreSQL (\d+(?:\.\d+)+|\d+(?:devel|beta\d+|rc\d+)) "


class PostgreSQL(Engine):
    name = "postgresql"
    display_name = "PostgreSQL"
    double_quoted_strings = False  # "..." is an identifier
    forks_backends = True
    version_names_binary = True
    reports_deadlocks = True

    def find_version(self, binary: ElfBinary) -> str | None:
        return binary.find_version_string(VERSION_PATTERN)

    def is_serving(self, argv: list[str]) -> bool:
        # A backend whose postmaster died is reparented to a process that does not run its
        # binary, and keeps its process title.
        if " ".join(argv).startswith(titles.TITLE_PREFIX):
            return False
        return not any(argument in cmdline.ONE_OFF_OPTIONS for argument in argv[1:])

    def settings(self, server: RunningServer) -> ServerSettings:
        return cmdline.server_settings(server)

    def backend_info(self, pid: int, title: str) -> BackendInfo | None:
        return titles.parse_process_title(pid, title)

    def lock_target(self, raw: RawLockEvent, version: str | None,
                    read_string: Callable[[int, int], str | None]) -> LockTarget:
        return locks.decode_tag(raw.fields, raw.locktype, version)

    def lock_mode(self, raw: RawLockEvent) -> str:
        return locks.mode_name(raw.mode)

    def wait_event_name(self, info: int, version: str | None) -> str:
        return wait_events.event_name(info, version)

    def conflicting_holders(self, raw: RawLockEvent) -> tuple[LockHolder, ...]:
        return tuple(
            LockHolder(pid, tuple(locks.mode_name(mode) for mode in locks.modes_in(bits)), session)
            for pid, bits, session in raw.holders
            if pid != raw.pid and locks.conflicts(raw.mode, bits)
        )

    def wait_outcome(self, flags: int, code: int = 0) -> str:
        if flags & PG_LOCK_WAIT_ERROR:
            return locks.wait_outcome(code)
        return "deadlock" if flags & LOCK_WAIT_FAILED else "granted"

    def idle_state_name(self, state: int) -> str | None:
        return locks.IDLE_STATES.get(state)

    def unseen_blocker(self, target: LockTarget) -> str:
        return ("not seen (it waits behind another waiter, or this server version's layout "
                "of PGPROC is not in the recipe; --dsn asks the server)")

    def lwlock_waits(self, collector: Collector, server_pids: Sequence[int]) -> list[LWLockStats]:
        """LWLock waits; the kernel keys them by the address of the tranche's name, which
        any of the server's processes can read."""
        stats = []
        for counted in collector.lwlock_totals():
            address = counted.tranche_address
            name = next(filter(None, (read_c_string(pid, address) for pid in server_pids)), None)
            stats.append(LWLockStats(name or f"tranche at {address:#x}", counted.mode, counted.waits,
                                     counted.total_ns, counted.max_ns))
        return stats
