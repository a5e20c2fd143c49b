"""Names from the server's catalog, when the user gives ``--dsn``; never required.

Relation OIDs become schema-qualified names (for the database the DSN connects to, and the
shared catalogs), database OIDs become names, and ``pg_blocking_pids()`` adds the server's
own view of who blocks a waiter. Any failure is reported once and then the catalog stays
silent: the report goes on with OIDs and dbprobe's own attribution.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable


class PostgresCatalog:
    blockers_source = "pg_blocking_pids"

    def __init__(self, dsn: str, warn: Callable[[str], None]):
        self._dsn = dsn
        self._warn = warn
        self._connection = None
        self._failed = False
        self._database_oid: int | None = None

    def _query(self, sql: str, params: tuple = ()) -> list[tuple] | None:
        if self._failed:
            return None
        try:
            if self._connection is None:
                self._connect()
            return self._connection.execute(sql, params).fetchall()
        except Exception as error:  # psycopg's errors, a missing psycopg, a dead server
            self._failed = True
            self._warn(f"--dsn: {str(error).strip().splitlines()[0]}; going on without catalog names")
            return None

    def _connect(self) -> None:
        try:
            import psycopg
        except ImportError:
            raise RuntimeError("psycopg is not installed (pip install psycopg[binary])") from None
        self._connection = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
        # Catalog lookups must never wait behind the locks being reported.
        self._connection.execute("set lock_timeout = '500ms'; set statement_timeout = '2s'")
        rows = self._connection.execute(
            "select oid from pg_database where datname = current_database()").fetchall()
        self._database_oid = rows[0][0] if rows else None

    @lru_cache(maxsize=4096)
    def relation_name(self, database_oid: int | None, relation_oid: int) -> str | None:
        rows = self._query(
            "select format('%%I.%%I', n.nspname, c.relname), c.relisshared from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where c.oid = %s", (relation_oid,))
        if not rows:
            return None
        name, shared = rows[0]
        if shared or database_oid in (None, 0, self._database_oid):
            return name
        return None  # the same OID names something else in another database

    @lru_cache(maxsize=256)
    def database_name(self, database_oid: int) -> str | None:
        rows = self._query("select datname from pg_database where oid = %s", (database_oid,))
        return rows[0][0] if rows else None

    def blocking_pids(self, pid: int) -> list[int]:
        rows = self._query("select pg_blocking_pids(%s)", (pid,))
        return list(rows[0][0]) if rows and rows[0][0] else []

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
