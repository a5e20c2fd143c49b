"""Every engine dbprobe knows, and how to find the one a server or a binary belongs to."""

from __future__ import annotations

from typing import Callable

from dbprobe.engines.base import Engine
from dbprobe.engines.mysql.engine import MariaDB, MySQL
from dbprobe.engines.postgresql.engine import PostgreSQL
from dbprobe.errors import DbprobeError

# MariaDB before MySQL: a MariaDB binary also holds a MySQL-like release number
# ("5.5.5-10.11.19-MariaDB", what it tells old clients).
ENGINES: tuple[Engine, ...] = (PostgreSQL(), MariaDB(), MySQL())
NAMES = tuple(engine.name for engine in ENGINES)

_BY_NAME = {engine.name: engine for engine in ENGINES}


def engine_for(name: str) -> Engine:
    """The engine called `name` ("postgresql", "mariadb", "mysql")."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise DbprobeError(f"unknown database {name!r}: expected one of {', '.join(NAMES)}") from None


def display_names(names: tuple[str, ...] | list[str], joiner: str | None = None) -> str:
    """ "PostgreSQL, MariaDB or MySQL" (or joined by `joiner`), for messages."""
    shown = [engine_for(name).display_name for name in names]
    if joiner is not None or len(shown) < 2:
        return (joiner or "").join(shown)
    return f"{', '.join(shown[:-1])} or {shown[-1]}"


def engines_running(file_name: str) -> tuple[Engine, ...]:
    """The engines whose servers run a binary of that file name, in ENGINES order."""
    return tuple(engine for engine in ENGINES if file_name in engine.process_names)


def server_binary_names() -> frozenset[str]:
    return frozenset(name for engine in ENGINES for name in engine.process_names)


def identify(file_name: str,
             version_of: Callable[[Engine], str | None]) -> tuple[Engine, str | None] | None:
    """The engine of a server binary called `file_name`, with its version; None if none.

    `version_of(engine)` reads the version the binary holds in that engine's spelling. The
    engines that run binaries of that name are asked first; a binary of another name is a
    server's only when its version string says so. Of several engines sharing a name
    (mysqld), the first whose version the binary holds wins; with no version at all, the
    engine whose preferred name it is.
    """
    named = engines_running(file_name)
    candidates = named or tuple(engine for engine in ENGINES if engine.version_names_binary)
    for engine in candidates:
        version = version_of(engine)
        if version is not None:
            return engine, version
    if not named:
        return None
    preferred = [engine for engine in named if engine.process_names[0] == file_name]
    return (preferred or named)[-1], None
