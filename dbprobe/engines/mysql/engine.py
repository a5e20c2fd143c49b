"""MySQL and MariaDB as dbprobe knows them: one server process, a thread per connection.

The two share their binary's usual name (``mysqld``; MariaDB also installs ``mariadbd``),
their command line, their SQL dialect and their lock waits; their version strings and
where each server shows a lock's holder differ.
"""

from __future__ import annotations

from typing import Callable

from dbprobe.binary.elf import ElfBinary
from dbprobe.engines.base import NO_MODE, Engine, LockHolder, RunningServer, ServerSettings
from dbprobe.engines.mysql import cmdline, locks
from dbprobe.kernel.records import RawLockEvent
from dbprobe.model import LockTarget


class _MySQLFamily(Engine):
    double_quoted_strings = True  # without ANSI_QUOTES, "..." is a string
    forks_backends = False
    reports_deadlocks = False
    _version_patterns: tuple[bytes, ...]  # the first that the binary holds says its version

    def find_version(self, binary: ElfBinary) -> str | None:
        return next(filter(None, map(binary.find_version_string, self._version_patterns)), None)

    def is_serving(self, argv: list[str]) -> bool:
        return not any(argument in cmdline.ONE_OFF_OPTIONS for argument in argv[1:])

    def settings(self, server: RunningServer) -> ServerSettings:
        return cmdline.server_settings(server)

    def lock_target(self, raw: RawLockEvent, version: str | None,
                    read_string: Callable[[int, int], str | None]) -> LockTarget:
        return locks.decode_wait(raw, read_string)

    def lock_mode(self, raw: RawLockEvent) -> str:
        return NO_MODE

    def conflicting_holders(self, raw: RawLockEvent) -> tuple[LockHolder, ...]:
        return ()  # the servers do not say who holds what a thread waits for

    def wait_outcome(self, flags: int, code: int = 0) -> str:
        return locks.outcome(flags)

    def unseen_blocker(self, target: LockTarget) -> str:
        return f"unknown ({locks.blocker_hint(self.name, target)})"


class MariaDB(_MySQLFamily):
    name = "mariadb"
    display_name = "MariaDB"
    version_names_binary = True
    # Matched whole: the binary also holds "for example 10.1.1-MariaDB-mariadb1precise-log".
    _version_patterns = (rb"\x00(\d+\.\d+\.\d+)-MariaDB",)


class MySQL(_MySQLFamily):
    name = "mysql"
    display_name = "MySQL"
    # A bare release number: on its own it does not tell a MySQL binary from any other.
    version_names_binary = False
    _version_patterns = (
        # InnoDB's name for the server that wrote a redo log, "MySQL 9.7.4" (LOG_HEADER_CREATOR),
        # is in every MySQL binary since 5.7, whole. MySQL 9's version string is not: the linker
        # keeps "9.7.4" only as the tail of that name, and the string of its own next to it is
        # the version with its update number, "9.7.4.0". So this is looked for first.
        rb"\x00MySQL (\d+\.\d+\.\d+)\x00",
        rb"\x00((?:5\.[5-7]|[89]\.\d+)\.\d+)(?:-[^\x00\s]*)?\x00",
    )
