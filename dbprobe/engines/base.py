"""The contract every database engine keeps: what the generic stages may ask of a server.

Discovery, correlation and the reports name no database. They ask the engine of a server
(``engine_for(server.db)``, in ``dbprobe.engines.registry``) for what only it knows: the
names of its binaries (from its recipe), its version as the binary spells it, its command
line, its process titles, the SQL dialect its statements are fingerprinted with, and how
its lock waits decode. ``tests/unit/test_engine_contract.py`` runs the same checks against
every engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from dbprobe.binary.elf import ElfBinary
from dbprobe.correlate.fingerprint import Fingerprint, fingerprint
from dbprobe.digest.locks import LWLockStats
from dbprobe.kernel.records import RawLockEvent
from dbprobe.model import LockTarget
from dbprobe.recipes.load import load_recipe

if TYPE_CHECKING:
    from dbprobe.kernel.maps import Collector

NO_MODE = "-"  # a lock wait whose server does not say in which mode it asked


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What a server's child process says about itself in its process title."""

    pid: int
    kind: str  # "client backend", "walsender", "autovacuum worker", "checkpointer"... or "unknown"
    user: str | None = None
    database: str | None = None
    client: str | None = None  # "127.0.0.1(51234)", "::1(5432)", "[local]"
    # What it does: "idle", "idle in transaction (aborted)", "SELECT", "streaming 0/3000148"...
    state: str | None = None


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where a running server keeps its data and listens, as far as it can be told cheaply."""

    data_dir: str | None  # as the server sees it
    port: int | None


class RunningServer(Protocol):
    """What an engine may read of a running server's main process; each read is best effort."""

    @property
    def argv(self) -> list[str]: ...

    def environment_variable(self, name: str) -> str | None: ...

    def working_directory(self) -> str | None: ...

    def read_text(self, path: str) -> str | None:
        """A file as the server sees it (inside its root), or None when unreadable."""


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A session that holds a lock a waiter asked for, in modes that conflict with it."""

    pid: int
    modes: tuple[str, ...]
    session: bool  # held across transactions (advisory locks)


class Engine(ABC):
    """One database server product, as dbprobe knows it."""

    name: str  # "postgresql": the recipe's name, Source.db, the JSON reports' "db"
    display_name: str  # "PostgreSQL", for messages
    # SQL dialect: "..." is a string literal (MySQL, MariaDB) rather than an identifier.
    double_quoted_strings: bool
    # A process per connection, forked by the server's main process from its own binary.
    forks_backends: bool
    # Its version string alone says a file is this server's binary, whatever the file's name.
    version_names_binary: bool

    @property
    def process_names(self) -> tuple[str, ...]:
        """The file names of its server binaries, the preferred one first (from its recipe)."""
        return load_recipe(self.name).process_names

    def fingerprint(self, text: str) -> Fingerprint:
        """The statement's fingerprint in this server's dialect."""
        return fingerprint(text, double_quoted_strings=self.double_quoted_strings)

    # -- discovery --------------------------------------------------------------------------

    @abstractmethod
    def find_version(self, binary: ElfBinary) -> str | None:
        """The server version the binary holds ("15.18", "10.11.19"); None when it says none."""

    @abstractmethod
    def is_serving(self, argv: list[str]) -> bool:
        """Whether a process of this binary with this command line serves clients, rather
        than doing a one-off job (print its version, initialise a data directory)."""

    @abstractmethod
    def settings(self, server: RunningServer) -> ServerSettings:
        """Its data directory and port, from its command line and what it left on disk."""

    def backend_info(self, pid: int, title: str) -> BackendInfo | None:
        """What a child process is doing, from its process title; None when the title is
        not one of this server's."""
        return None

    # -- lock waits -------------------------------------------------------------------------

    @abstractmethod
    def lock_target(self, raw: RawLockEvent, version: str | None,
                    read_string: Callable[[int, int], str | None]) -> LockTarget:
        """What a wait's start record says it waits for; `read_string(pid, address)` reads
        the server's memory."""

    @abstractmethod
    def lock_mode(self, raw: RawLockEvent) -> str:
        """The mode a wait's start record asks for, or NO_MODE."""

    @abstractmethod
    def conflicting_holders(self, raw: RawLockEvent) -> tuple[LockHolder, ...]:
        """The sessions the kernel saw hold the lock in modes that block this request."""

    @abstractmethod
    def wait_outcome(self, flags: int, code: int = 0) -> str:
        """How a wait ended, from its end record's flags and the error code it may carry:
        "granted", "deadlock", "lock timeout"..."""

    def idle_state_name(self, state: int) -> str | None:
        """What a session the kernel saw go idle in `state` is doing ("idle in
        transaction"); None when its program does not say."""
        return None

    # Its program sends a deadlock report (EV_DEADLOCK) right after the victim's failed wait.
    reports_deadlocks: bool

    @abstractmethod
    def unseen_blocker(self, target: LockTarget) -> str:
        """Why a wait names no blocker, and where to look for it."""

    def wait_event_name(self, info: int, version: str | None) -> str:
        """The name of a wait event word the kernel read (only PostgreSQL's programs read one)."""
        return f"wait {info:#010x}"

    def lwlock_waits(self, collector: Collector, server_pids: Sequence[int]) -> list[LWLockStats]:
        """The waits for its internal locks that its program counts in kernel, by tranche;
        `server_pids` are processes whose memory names them. None for most servers."""
        return []
