"""A throwaway PostgreSQL with pg_stat_statements loaded and pgbench's tables: the server's
own per-statement counts, to hold dbprobe's to."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbprobe.demo.server import ThrowawayPostgres


@contextmanager
def pgss_cluster(bindir: Path | None = None) -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres(bindir=bindir,
                           settings={"shared_preload_libraries": "pg_stat_statements"}) as server:
        server.psql("create extension pg_stat_statements")
        initialised = server.run_as_postgres(["pgbench", "--initialize", "--scale=1", "--quiet"],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True)
        _, stderr = initialised.communicate(timeout=120)
        assert initialised.returncode == 0, stderr
        yield server
