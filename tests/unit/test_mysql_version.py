"""MySQL's version, read from the bytes of its binary's .rodata.

Each case is a small program named mysqld whose .rodata holds the bytes a real server
binary has around its version strings, compiled with gcc (identify_binary reads the file
as it would read the server's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dbprobe.discover.processes import identify_binary
from tests.support.sdtbin import compile_c

# Debian unstable's mysql-server-core 9.7.4-2 (/usr/sbin/mysqld), byte for byte: the version
# with its update number among option names, InnoDB's redo-log creator name (whose tail is
# also the server's version string: the linker keeps no other "9.7.4"), and NDB's.
MYSQL_9_7_4 = (
    b"slave-auth-info\x00binlog_format\x00--binlog_max_flush_queue_time\x009.7.4.0\x00"
    b"--master-retry-count\x00--early-plugin-load\x00",
    b"log_is_data_lsn(flushed_lsn)\x00listed_files.empty()\x00MySQL 9.7.4\x00"
    b"log_before_file_produced\x00!f.m_full\x00",
    b"KEYHASH\x00LINHASH\x00version_string\x00ndb-9.7.4\x00api_wait_exec_complete_count\x00",
    # Release notes and help texts name other versions, never NUL on both sides.
    b"\x00In MySQL 9.0 and earlier, DROP VIEW\x00before MySQL 8.0.29, see\x00",
)
# A MySQL 8.0 build: its version string of its own, with the distribution's suffix.
MYSQL_8_0 = (
    b"\x008.0.36-0ubuntu0.22.04.1\x00--binlog_max_flush_queue_time\x00",
    b"listed_files.empty()\x00MySQL 8.0.36\x00log_before_file_produced\x00",
)
MYSQL_5_6 = (b"\x005.6.51-log\x00Can't open shared library\x00",)
MARIADB = (b"\x0010.11.19-MariaDB\x00", b"\x00MySQL 5.7.9\x00")


def mysqld_with(directory: Path, chunks: tuple[bytes, ...]) -> Path:
    """A program named mysqld whose .rodata holds `chunks`."""
    lines = [f'__attribute__((used)) const char chunk{index}[] = "{_octal(chunk)}";'
             for index, chunk in enumerate(chunks)]
    source = directory / "mysqld.c"
    source.write_text("\n".join(lines) + "\nint main(void) { return 0; }\n")
    (directory / "bin").mkdir()
    return compile_c([source], directory / "bin" / "mysqld")


def _octal(chunk: bytes) -> str:
    return "".join(f"\\{byte:03o}" for byte in chunk)


@pytest.mark.parametrize(("chunks", "expected"), [
    (MYSQL_9_7_4, ("mysql", "9.7.4")),
    (MYSQL_8_0, ("mysql", "8.0.36")),
    (MYSQL_8_0[:1], ("mysql", "8.0.36")),
    (MYSQL_5_6, ("mysql", "5.6.51")),
    (MARIADB, ("mariadb", "10.11.19")),
], ids=["mysql-9.7.4", "mysql-8.0", "mysql-8.0-without-innodb-name", "mysql-5.6", "mariadb"])
def test_version_of_a_mysqld_binary(tmp_path, chunks, expected):
    assert identify_binary(str(mysqld_with(tmp_path, chunks))) == expected


def test_innodbs_creator_name_wins_over_an_older_version_string(tmp_path):
    chunks = (b"\x008.0.29\x00deprecated since\x00", *MYSQL_9_7_4)
    assert identify_binary(str(mysqld_with(tmp_path, chunks))) == ("mysql", "9.7.4")
