"""Names from the server's catalog: through a query when the user gives ``--dsn`` (never
required), and database names from the server's own files (see below).

Relation OIDs become schema-qualified names (for the database the DSN connects to, and the
shared catalogs), database OIDs become names, and ``pg_blocking_pids()`` adds the server's
own view of who blocks a waiter. Any failure is reported once and then the catalog stays
silent: the report goes on with OIDs and dbprobe's own attribution.
"""

from __future__ import annotations

import os
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator


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


# -- database names from the server's own files ------------------------------------------------
#
# A backend's event carries its database's OID; the name is in pg_database, a shared catalog
# whose file (global/1262 unless VACUUM FULL moved it: global/pg_filenode.map says) holds
# every database that existed at the last checkpoint. A database created since is only in
# shared memory and in the WAL, which its CREATE DATABASE flushed at commit. Both are read
# as root through the data directory (a running server's /proc/PID/cwd), without a query.

PAGE_SIZE = 8192
PG_DATABASE_OID = 1262
NAMEDATALEN = 64
RELMAP_MAGIC = 0x592717
HEAP_XMIN_INVALID = 0x0200
HEAP_XMAX_INVALID = 0x0800
# The newest WAL read for a database created since the last checkpoint; one created
# before it is in pg_database's file, and an older one read from there once a later
# checkpoint has written it.
WAL_BYTES_READ = 256 * 1024 * 1024
# XLogPageHeaderData and XLogLongPageHeaderData, MAXALIGNed; xlp_pageaddr at 8.
WAL_SHORT_HEADER = 24
WAL_LONG_HEADER = 40
XLP_LONG_HEADER = 0x0002
MAX_ENCODING = 64  # pg_database.encoding, the column after datname and datdba
_WAL_SEGMENT = re.compile(r"[0-9A-F]{24}")


def database_name_in_files(data_directory: str, oid: int) -> str | None:
    """The name of database `oid`, from pg_database's file, else from the newest WAL."""
    return (_name_in_heap(Path(data_directory, "global", str(_pg_database_file(data_directory))), oid)
            or _name_in_wal(Path(data_directory, "pg_wal"), oid))


def _pg_database_file(data_directory: str) -> int:
    """pg_database's file number, from the shared relation map (1262 if unreadable)."""
    try:
        data = Path(data_directory, "global", "pg_filenode.map").read_bytes()
    except OSError:
        return PG_DATABASE_OID
    if len(data) < 8 or struct.unpack_from("<i", data)[0] != RELMAP_MAGIC:
        return PG_DATABASE_OID
    count = struct.unpack_from("<i", data, 4)[0]
    for index in range(max(0, min(count, (len(data) - 8) // 8))):
        relation, file_number = struct.unpack_from("<II", data, 8 + 8 * index)
        if relation == PG_DATABASE_OID:
            return file_number
    return PG_DATABASE_OID


def _name_in_heap(path: Path, oid: int) -> str | None:
    """The live tuple of `oid` in pg_database's heap pages (a dead one is a dropped or
    renamed database's old version)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    for page in range(0, len(data) - PAGE_SIZE + 1, PAGE_SIZE):
        lower = struct.unpack_from("<H", data, page + 12)[0]
        for pointer in range(page + 24, min(page + lower, page + PAGE_SIZE), 4):
            item = struct.unpack_from("<I", data, pointer)[0]
            offset, flags = item & 0x7FFF, (item >> 15) & 3
            if flags != 1 or offset + 23 + 4 + NAMEDATALEN > PAGE_SIZE:
                continue
            tuple_at = page + offset
            xmax = struct.unpack_from("<I", data, tuple_at + 4)[0]
            infomask = struct.unpack_from("<H", data, tuple_at + 20)[0]
            data_at = tuple_at + data[tuple_at + 22]
            if infomask & HEAP_XMIN_INVALID or (xmax and not infomask & HEAP_XMAX_INVALID):
                continue
            if struct.unpack_from("<I", data, data_at)[0] == oid:
                return _name_at(data, data_at + 4)
    return None


def _name_in_wal(directory: Path, oid: int) -> str | None:
    """The newest pg_database tuple of `oid` in the newest WAL: an OID followed by a name
    (NUL-padded to NAMEDATALEN) and a plausible encoding two columns on. The tuple is in
    the insert record's data or, for the first change of the page after a checkpoint, in
    the record's full-page image (uncompressed: wal_compression is off by default)."""
    segments = _written_segments(directory)
    pattern = re.compile(re.escape(struct.pack("<I", oid)) + rb"[^\x00]", re.DOTALL)
    newer = b""
    for body in segments:  # the newest first
        # A tuple that starts at the end of a segment goes on in the next one.
        data = body + newer[:NAMEDATALEN * 2]
        found = None
        for match in pattern.finditer(data, 0, len(body)):
            name_at = match.start() + 4
            name = _name_at(data, name_at)
            end = name_at + NAMEDATALEN
            if name is not None and end + 8 <= len(data) \
                    and struct.unpack_from("<I", data, end + 4)[0] <= MAX_ENCODING:
                found = name  # the last one is the newest version (a rename writes another)
        if found is not None:
            return found
        newer = body
    return None


def _written_segments(directory: Path) -> Iterator[bytes]:
    """The WAL the server wrote, newest segment first, each as its pages' contents without
    their headers (so that a record split over pages is whole again), at most
    WAL_BYTES_READ of it.

    File names do not tell which segments hold WAL: a checkpoint renames the segments it
    no longer needs to future names, to be reused, with their old contents. A page belongs
    to the WAL when its header gives the address its place in the file names; the first
    page that does not is where the server's writing stopped. The segments left are those
    since about the last checkpoint, whose changes pg_database's file may not have yet."""
    try:
        names = [name for name in os.listdir(directory) if _WAL_SEGMENT.fullmatch(name)]
    except OSError:
        return
    read = 0
    seen: set[int] = set()
    # The highest timeline first for each segment number: a promoted server's.
    for name in sorted(names, key=lambda n: (int(n[8:16], 16), int(n[16:], 16), int(n[:8], 16)),
                       reverse=True):
        if read >= WAL_BYTES_READ:
            return
        data = _segment_if_written(Path(directory, name))
        if data is None:
            continue
        segment_size, page_size = _segment_layout(data)
        number = _segment_number(name, segment_size)
        if number in seen:
            continue
        seen.add(number)
        read += len(data)
        yield _segment_body(data, number * segment_size, page_size)


def _segment_if_written(path: Path) -> bytes | None:
    """A segment's contents if its first page is where its name puts it (a segment kept
    for reuse is only opened, not read)."""
    try:
        with path.open("rb") as file:
            first = file.read(WAL_LONG_HEADER)
            layout = _segment_layout(first)
            if layout is None or _page_address(first, 0) != \
                    _segment_number(path.name, layout[0]) * layout[0]:
                return None
            return first + file.read()
    except OSError:
        return None


def _segment_number(name: str, segment_size: int) -> int:
    """The number of the segment a file is named for: its log and segment parts."""
    return int(name[8:16], 16) * (0x1_0000_0000 // segment_size) + int(name[16:], 16)


def _page_address(data: bytes, page: int) -> int:
    return struct.unpack_from("<Q", data, page + 8)[0]


def _segment_layout(data: bytes) -> tuple[int, int] | None:
    """The segment and page sizes a segment's first page header (the long one) gives."""
    if len(data) < WAL_LONG_HEADER:
        return None
    info = struct.unpack_from("<H", data, 2)[0]
    segment_size, page_size = struct.unpack_from("<II", data, 32)
    if not info & XLP_LONG_HEADER or page_size < WAL_LONG_HEADER or page_size & (page_size - 1) \
            or segment_size < page_size or segment_size & (segment_size - 1) \
            or segment_size > 0x4000_0000:
        return None
    return segment_size, page_size


def _segment_body(data: bytes, start: int, page_size: int) -> bytes:
    """The contents of the segment's pages that the server wrote there (see above)."""
    parts = []
    for page in range(0, len(data) - page_size + 1, page_size):
        if _page_address(data, page) != start + page:
            break
        header = WAL_LONG_HEADER if page == 0 else WAL_SHORT_HEADER
        parts.append(data[page + header:page + page_size])
    return b"".join(parts)


def _name_at(data: bytes, at: int) -> str | None:
    """A NUL-padded `name` column at `at`, if it is one: printable UTF-8, then only NULs."""
    field = data[at:at + NAMEDATALEN]
    text, _, padding = field.partition(b"\0")
    if len(field) < NAMEDATALEN or not text or padding.strip(b"\0"):
        return None
    try:
        name = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if name.isprintable() else None
