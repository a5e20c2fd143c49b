"""The benchmark's PostgreSQL: a throwaway cluster run from a private copy of the server.

Uprobes belong to a file (an inode), not to a process: any tracer elsewhere on the host
attached to the installed ``postgres`` would fire in the benchmark's backends too, and
count as overhead of whatever is being measured. The benchmark therefore runs its own copy
of the installed server programs (USDT notes kept), which only its own tracers attach to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import pgbench
from bench.errors import BenchError
from bench.procstat import children_of, process_tree_ticks
from dbprobe.demo.server import PostgresLayout, ThrowawayPostgres, installed_postgres_bindir

QUIET_TIMEOUT_S = 15.0
SETTLE_S = 1.0
PG_STAT_STATEMENTS = "pg_stat_statements"


def private_postgres_copy(dest: Path) -> Path:
    """Copy the installed server programs into ``dest`` (shared files and modules linked,
    as postgres finds them relative to its own location); the copy's bindir."""
    source = PostgresLayout.of(installed_postgres_bindir())
    bindir = dest / source.bindir.relative_to(source.prefix)
    shutil.copytree(source.bindir, bindir, symlinks=True)
    for original in (source.sharedir, source.pkglibdir):
        linked = dest / original.relative_to(source.prefix)
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to(original, target_is_directory=True)
    for directory, subdirs, _ in os.walk(dest):
        for name in (directory, *(os.path.join(directory, sub) for sub in subdirs)):
            if not os.path.islink(name):
                os.chmod(name, 0o755)  # the postgres OS user runs programs from here
    return bindir


class BenchServer:
    """A pgbench-initialised throwaway cluster that can be switched to pg_stat_statements
    and back (each switch is a restart followed by a warm-up)."""

    def __init__(self, *, scale: int, warmup_seconds: int) -> None:
        self._scale = scale
        self._warmup_seconds = warmup_seconds
        self._root = Path(tempfile.mkdtemp(prefix="dbprobe-bench-"))
        self._root.chmod(0o755)
        self._server: ThrowawayPostgres | None = None
        self._background: set[int] = set()
        self.pg_stat_statements = False

    def start(self) -> BenchServer:
        try:
            bindir = private_postgres_copy(self._root / "postgresql")
            self._server = ThrowawayPostgres(bindir=bindir).start()
            pgbench.initialise(self._server, self._scale)
            self._after_start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def server(self) -> ThrowawayPostgres:
        if self._server is None:
            raise BenchError("the benchmark's server is not running")
        return self._server

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def binary(self) -> Path:
        return self.server.bindir / "postgres"

    def version(self) -> str:
        return subprocess.run([str(self.binary), "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()

    def use_pg_stat_statements(self, enabled: bool) -> None:
        if enabled == self.pg_stat_statements:
            return
        libraries = PG_STAT_STATEMENTS if enabled else ""
        self.server.restart({"shared_preload_libraries": libraries})
        if enabled:
            self.server.psql(f"CREATE EXTENSION IF NOT EXISTS {PG_STAT_STATEMENTS}")
        self.pg_stat_statements = enabled
        self._after_start()

    def psql(self, sql: str) -> str:
        return self.server.psql(sql)

    def cpu_ticks(self) -> int:
        """The server's CPU so far: postmaster, reaped and living children."""
        return process_tree_ticks(self.pid)

    def wait_quiet(self) -> bool:
        """Wait until every client backend has exited and been reaped (so its CPU is in the
        postmaster's cutime/cstime); False if one is still there after the timeout."""
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        while set(children_of(self.pid)) - self._background:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _after_start(self) -> None:
        self._warm_up()
        time.sleep(SETTLE_S)
        self._background = set(children_of(self.pid))

    def _warm_up(self) -> None:
        """Read the tables into shared buffers after a (re)start, so runs after a restart
        are not slower for it."""
        if self._warmup_seconds > 0:
            pgbench.run_pgbench(self.server, pgbench.Workload("simple", 4, self._warmup_seconds))
