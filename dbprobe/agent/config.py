"""The agent's configuration: a TOML file, command-line flags over it, every value checked.

A mistake is one line that names the key and the reason; ``dbprobe agent`` exits with
status 2 on it at start, and keeps its running configuration on it at a reload (SIGHUP).
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from dbprobe.errors import DbprobeError
from dbprobe.units import parse_duration_ns

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_LISTEN = "127.0.0.1:9187"
FAMILIES = ("query", "locks", "txn")
DATABASES = ("postgresql", "mariadb", "mysql")
DEFAULT_THRESHOLDS = {"query": "100ms", "txn": "100ms", "locks": "100ms"}
DEFAULT_TOP_K = 50
MAX_TOP_K = 1000
DEFAULT_SPARE_PROGRAMS = 3  # builds with a program compiled ahead (dbprobe.kernel.spares)
MAX_SPARE_PROGRAMS = 16
DEFAULT_DETACH_AFTER = "30s"
MAX_THRESHOLD_NS = 24 * 3600 * 10**9
# Where the distributions install their servers: attached at start, so that a server
# started later from one of them is traced from its first statement.
DEFAULT_WATCH = (
    "/usr/lib/postgresql/*/bin/postgres",   # Debian, Ubuntu
    "/usr/pgsql-*/bin/postgres",            # PGDG packages for RHEL and Fedora
    "/usr/local/pgsql/bin/postgres",        # built from source
    "/usr/sbin/mariadbd",
    "/usr/sbin/mysqld",
    "/usr/libexec/mysqld",
)


class ConfigError(DbprobeError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int  # 0: any free port, the one bound is logged

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    listen: Listen = Listen("127.0.0.1", 9187)
    events: str | None = None  # a file to append JSON lines to, "-" for stdout, None for none
    families: tuple[str, ...] = FAMILIES
    databases: tuple[str, ...] = DATABASES
    # Statements, transactions and lock waits at or over these reach user space: each one
    # slow enough is an event; the kernel counts every one whatever its duration.
    thresholds_ns: Mapping[str, int] = field(default_factory=lambda: {
        family: parse_duration_ns(text, default_unit="ms") for family, text in DEFAULT_THRESHOLDS.items()})
    top_k: int = DEFAULT_TOP_K  # statement classes with series of their own, per server
    breakdown: bool = False  # where each class's time went (CPU, I/O, waits): costs CPU, opt-in
    spare_programs: int = DEFAULT_SPARE_PROGRAMS  # 0: every new binary compiles its own
    binaries: tuple[str, ...] = ()  # glob patterns of server binaries to follow; () follows all
    watch: tuple[str, ...] = DEFAULT_WATCH  # binaries attached before any server runs them
    detach_after_s: float = 30.0  # a binary no server runs (and not watched) stays this long
    source: str | None = None  # the file it was read from

    def kernel_thresholds_ns(self) -> dict[str, int]:
        """The thresholds compiled into the kernel side (lock waits are all sent)."""
        return {family: ns for family, ns in self.thresholds_ns.items() if family in ("query", "txn")}

    def tracing_differs(self, other: "AgentConfig") -> bool:
        """Whether going from this configuration to `other` needs the programs rebuilt."""
        return (self.families != other.families or self.breakdown != other.breakdown
                or self.kernel_thresholds_ns() != other.kernel_thresholds_ns())


def load_config(path: str | None, *, listen: str | None = None,
                events: str | None = None) -> AgentConfig:
    """The configuration from `path` (defaults without one), the flags taking precedence."""
    values: dict[str, Any] = {}
    where = "--config"
    if path is not None:
        where = path
        values = _read_toml(path)
    config = _from_document(values, where)
    if listen is not None:
        config = replace(config, listen=parse_listen(listen, "--listen"))
    if events is not None:
        config = replace(config, events=_events_path(events, "--events"))
    return config


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path}: is a directory, not a file") from None
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: it is not UTF-8 text") from None


def _from_document(document: Mapping[str, Any], where: str) -> AgentConfig:
    known = {"listen", "events", "families", "databases", "thresholds", "top_k", "breakdown",
             "spare_programs", "binaries", "watch", "detach_after"}
    for key in document:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    defaults = AgentConfig()
    get = _Getter(document, where)
    return AgentConfig(
        listen=parse_listen(get.string("listen"), f"{where}: listen") if "listen" in document
        else defaults.listen,
        events=_events_path(get.string("events"), f"{where}: events") if "events" in document
        else None,
        families=get.choices("families", FAMILIES) if "families" in document else defaults.families,
        databases=get.choices("databases", DATABASES) if "databases" in document else defaults.databases,
        thresholds_ns=_thresholds(document.get("thresholds", {}), where),
        top_k=get.whole("top_k", 1, MAX_TOP_K) if "top_k" in document else defaults.top_k,
        breakdown=get.flag("breakdown") if "breakdown" in document else defaults.breakdown,
        spare_programs=(get.whole("spare_programs", 0, MAX_SPARE_PROGRAMS) if "spare_programs" in document
                        else defaults.spare_programs),
        binaries=get.patterns("binaries") if "binaries" in document else defaults.binaries,
        watch=get.patterns("watch") if "watch" in document else defaults.watch,
        detach_after_s=(get.duration_ns("detach_after", default_unit="s") / 1e9
                        if "detach_after" in document else defaults.detach_after_s),
        source=None if where == "--config" else where,
    )


class _Getter:
    """Typed reads of one table's keys, each failure naming the key."""

    def __init__(self, table: Mapping[str, Any], where: str, prefix: str = ""):
        self._table = table
        self._where = where
        self._prefix = prefix

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self._where}: {self._prefix}{key}: {reason}")

    def _typed(self, key: str, kinds: tuple[type, ...], wanted: str) -> Any:
        value = self._table[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.fail(key, f"must be {wanted}, not {_toml_type(value)}")
        return value

    def string(self, key: str) -> str:
        return self._typed(key, (str,), "a string")

    def flag(self, key: str) -> bool:
        value = self._table[key]
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_toml_type(value)}")
        return value

    def whole(self, key: str, low: int, high: int) -> int:
        value = self._typed(key, (int,), "a whole number")
        if not low <= value <= high:
            raise self.fail(key, f"{value} is out of range ({low} to {high})")
        return value

    def strings(self, key: str) -> list[str]:
        values = self._typed(key, (list,), "a list of strings")
        for value in values:
            if not isinstance(value, str):
                raise self.fail(key, f"must be a list of strings, and {value!r} is {_toml_type(value)}")
        return values

    def choices(self, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values = self.strings(key)
        if not values:
            raise self.fail(key, f"is empty; choose from {', '.join(allowed)}")
        for value in values:
            if value not in allowed:
                raise self.fail(key, f"unknown '{value}' (choose from {', '.join(allowed)})")
        return tuple(name for name in allowed if name in values)

    def patterns(self, key: str) -> tuple[str, ...]:
        values = self.strings(key)
        for value in values:
            if not value.startswith("/"):
                raise self.fail(key, f"'{value}' is not an absolute path or pattern")
        return tuple(dict.fromkeys(values))

    def duration_ns(self, key: str, *, default_unit: str) -> int:
        value = self._table[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"must be a duration such as \"100ms\", not {_toml_type(value)}")
        try:
            ns = parse_duration_ns(str(value), default_unit=default_unit)
        except ValueError as error:
            raise self.fail(key, str(error)) from None
        if ns > MAX_THRESHOLD_NS:
            raise self.fail(key, f"'{value}' is longer than a day, the most it takes (24h)")
        return ns


def _thresholds(table: Any, where: str) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: thresholds: must be a table ([thresholds]), not {_toml_type(table)}")
    for key in table:
        if key not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"{where}: thresholds.{key}: unknown family "
                              f"(known: {', '.join(DEFAULT_THRESHOLDS)})")
    get = _Getter(table, where, prefix="thresholds.")
    merged = {**DEFAULT_THRESHOLDS, **table}
    return {family: get.duration_ns(family, default_unit="ms") if family in table
            else parse_duration_ns(merged[family], default_unit="ms") for family in DEFAULT_THRESHOLDS}


def parse_listen(text: str, what: str) -> Listen:
    """HOST:PORT, [IPV6]:PORT; the host an address or a name."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not host:
        raise ConfigError(f"{what}: '{text}' is not HOST:PORT (example: {DEFAULT_LISTEN})")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
        _require_address(host, text, what)
    elif ":" in host:
        raise ConfigError(f"{what}: '{text}': write an IPv6 address in brackets, as [::1]:9187")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{what}: '{text}': the port must be a number from 0 to 65535")
    if not bracketed and not host.replace(".", "").replace("-", "").isalnum():
        raise ConfigError(f"{what}: '{text}': '{host}' is not an address or a host name")
    return Listen(host, int(port_text))


def _require_address(host: str, text: str, what: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ConfigError(f"{what}: '{text}': '{host}' is not an IPv6 address") from None


def _events_path(text: str, what: str) -> str:
    if text == "-":
        return text
    if not text:
        raise ConfigError(f"{what}: empty; give a file to append events to, or - for stdout")
    parent = Path(text).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"{what}: '{text}': its directory {parent} does not exist")
    return str(Path(text).expanduser())


def _toml_type(value: Any) -> str:
    names: dict[type, str] = {str: "a string", bool: "true/false", int: "a number", float: "a number",
                              list: "a list", dict: "a table"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a date or time")


def describe(config: AgentConfig) -> str:
    """One line for the log: what this configuration traces and where it serves."""
    thresholds = ", ".join(f"{family} {ns / 1e6:g} ms" for family, ns in config.thresholds_ns.items()
                           if family in config.families)
    return (f"families {', '.join(config.families)} (thresholds {thresholds}); "
            f"top {config.top_k} classes per server"
            f"{', where their time goes' if config.breakdown else ''}; events to "
            f"{'stdout' if config.events == '-' else config.events or 'nowhere'}")
