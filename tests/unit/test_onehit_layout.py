"""The one-hit experiment (bench/onehit.py) reads PostgreSQL's PgBackendStatus at hand-written
offsets: they are checked here against the layout the compiler gives PostgreSQL 15's own
header (the installed server's package has no debug information to check them against)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.onehit import ENTRY_ARGS
from dbprobe.binary.dwarf import DebugInfo

SERVER_HEADERS = Path("/usr/include/postgresql/15/server")
# The offsets' arguments of pg_statement_done, in ENTRY_ARGS order after the first two.
MEMBERS = ("PgBackendStatus.st_activity_start_timestamp", "PgBackendStatus.st_databaseid",
           "PgBackendStatus.st_state", "PgBackendStatus.st_activity_raw")
SIZES = (8, 4, 4, 8)


@pytest.fixture(scope="module")
def backend_status(tmp_path_factory: pytest.TempPathFactory) -> DebugInfo:
    assert (SERVER_HEADERS / "utils" / "backend_status.h").is_file() and shutil.which("gcc"), \
        "PostgreSQL 15's server headers or gcc missing: make setup installs postgresql-server-dev-15"
    folder = tmp_path_factory.mktemp("onehit")
    source = folder / "status.c"
    source.write_text('#include "postgres.h"\n#include "utils/backend_status.h"\n'
                      "PgBackendStatus status;\n")
    subprocess.run(["gcc", "-g", "-c", f"-I{SERVER_HEADERS}", "-o", str(folder / "status.o"),
                    str(source)], check=True)
    return DebugInfo(str(folder / "status.o"))


def test_the_status_entry_offsets_are_where_postgresql_15_has_them(backend_status: DebugInfo) -> None:
    offsets = [int(arg.split("$", 1)[1]) for arg in json.loads(ENTRY_ARGS)[2:]]
    found = [backend_status.member(path) for path in MEMBERS]
    assert [(m.offset, m.size) for m in found] == list(zip(offsets, SIZES))
