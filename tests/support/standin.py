"""A stand-in for MySQL's mysqld (tests/fixtures/mysql8_standin.cc): built with g++, driven
over its stdin.

Only Debian unstable's MySQL 9 can be installed where the tests run (see
contained_mysql.py), so the MySQL recipe's other layouts are tested against this small
program: it has dispatch_command with MySQL's mangled name and
argument layout, MySQL's network-buffer behaviour and a version string, and "runs" the
statements it is sent for as long as each one asks, reporting the row-lock, metadata-lock
and sleep waits they are told to make as mysqld does (thd_wait_begin, MDL_wait::timed_wait).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

STANDIN_SOURCE = Path(__file__).resolve().parent.parent / "fixtures" / "mysql8_standin.cc"

_SETUP_HINT = "install the toolchain: apt-get install g++ systemtap-sdt-dev"


@dataclass(frozen=True, slots=True)
class StandinFlavour:
    """Which mysqld the stand-in imitates."""

    version: str = "8.0.36"
    packet_signature: bool = False  # MySQL 5.6's dispatch_command instead of 5.7's and 8's
    usdt: bool = False  # with MySQL 5.x's DTrace probes query__start and query__done

    @property
    def name(self) -> str:
        return "-".join(["mysql", self.version, *(["packet"] if self.packet_signature else []),
                         *(["usdt"] if self.usdt else [])])

    def defines(self) -> list[str]:
        flags = [f'-DSTANDIN_VERSION="{self.version}"']
        if self.packet_signature:
            flags.append("-DSTANDIN_PACKET_SIGNATURE")
        if self.usdt:
            flags.append("-DSTANDIN_USDT")
        return flags


def build_standin(directory: Path, flavour: StandinFlavour = StandinFlavour()) -> Path:
    """Compile the stand-in as ``<directory>/<flavour>/mysqld`` (discovery knows mysqld by name)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.fail(f"g++ is not installed; {_SETUP_HINT}", pytrace=False)
    output = directory / flavour.name / "mysqld"
    output.parent.mkdir(parents=True, exist_ok=True)
    # -rdynamic: like mysqld, export the server's functions in .dynsym. -g: its DWARF is what
    # the mysql recipe's offsets into COM_DATA are checked against.
    command = [gxx, "-O2", "-g", "-rdynamic", *flavour.defines(), "-o", str(output),
               str(STANDIN_SOURCE)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{result.stderr.strip()}\n{_SETUP_HINT}",
                    pytrace=False)
    return output


class StandinServer:
    """A running stand-in: each call sends one command and waits for its answer."""

    def __init__(self, binary: Path):
        self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, bufsize=1)
        self.banner = self._answer()

    @property
    def pid(self) -> int:
        return self.process.pid

    def query(self, sql: str, ms: int = 0) -> None:
        self._expect(f"query {ms} {sql}", "ok")

    def query_waiting(self, wait: str, sql: str, ms: int) -> None:
        """A COM_QUERY that waits `ms` for a "rowlock", an "mdl" (metadata lock) or a "sleep"."""
        assert wait in ("rowlock", "mdl", "sleep"), wait
        self._expect(f"{wait} {ms} {sql}", "ok")

    def prepare(self, sql: str) -> int:
        answer = self._send(f"prepare {sql}")
        verb, _, statement_id = answer.partition(" ")
        assert verb == "prepared", answer
        return int(statement_id)

    def execute(self, statement_id: int, ms: int = 0) -> None:
        self._expect(f"execute {statement_id} {ms}", "ok")

    def close_statement(self, statement_id: int) -> None:
        self._expect(f"close {statement_id}", "ok")

    def stop(self) -> None:
        if self.process.poll() is None:
            self._send("quit")
            self.process.wait(10)

    def __enter__(self) -> "StandinServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)

    def _expect(self, line: str, answer: str) -> None:
        got = self._send(line)
        assert got == answer, f"stand-in answered {got!r} to {line!r}"

    def _send(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the stand-in exited ({self.process.poll()})")
        return line.rstrip("\n")
