"""What the reports are about: domain records that know nothing of BPF."""

from __future__ import annotations

from dataclasses import dataclass

from dbprobe.fingerprint import Fingerprint


@dataclass(frozen=True, slots=True)
class Source:
    """Where a hook's events come from: which server binary, through which mechanism."""

    db: str  # "postgresql" | "mariadb" | "mysql"
    binary: str
    mechanism: str  # "usdt" | "uprobe"


@dataclass(frozen=True, slots=True)
class Query:
    """One statement that completed at or over the threshold."""

    end: float  # wall-clock time it finished, seconds since the epoch
    duration_ms: float
    pid: int  # host pid of the backend (PostgreSQL) or server (MySQL)
    tid: int
    ns_pid: int | None  # pid inside the server's container, when it differs
    db: str
    database: str | None
    text: str  # as the server saw it
    fingerprint: Fingerprint
    protocol: str  # "simple" | "extended" | "prepared"
    mechanism: str  # "usdt" | "uprobe"
    error: bool  # failed or cancelled
    truncated: bool  # the text was longer than the kernel captures

    @property
    def start(self) -> float:
        return self.end - self.duration_ms / 1000.0
