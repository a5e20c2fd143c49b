"""``dbprobe slow`` fed by one probe hit per PostgreSQL statement, the experiment the README
describes under "Benchmarks": ``python -m bench.onehit [slow options] -p PID``.

It runs the slow-query report as ``dbprobe slow`` does, but its query family is
bench/onehit.bpf.c (which includes the repository's probes/ headers), fed by EndCommand (each completed statement's
CommandComplete) and AbortCurrentTransaction, which read the statement's start, database
and text from the backend's own status entry instead of following its activity reports.
The recipe below is this module's: the product's recipe does not have it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from dbprobe import cli
from dbprobe.kernel import trace
from dbprobe.recipes import load

HERE = Path(__file__).resolve().parent

# PgBackendStatus (utils/backend_status.h) on x86-64, PostgreSQL 14 to 16 (checked against
# 15's headers by tests/unit/test_onehit_layout.py): st_activity_start_timestamp at 32,
# st_databaseid at 48, st_state at 232, st_activity_raw at 248.
ENTRY_ARGS = '["8@MyBEEntry", "4@pgstat_track_activity_query_size", "4@$32", "4@$48", "4@$232", "4@$248"]'
DONE_ARGS = ENTRY_ARGS[:-1] + ', "4@arg2"]'  # and EndCommand's CommandDest
FAMILY = f"""
[families.query]
source = "onehit.bpf.c"

[[families.query.variants]]
mechanism = "uprobe"
hooks = [
    {{ handler = "pg_statement_done", symbol = "EndCommand", args = {DONE_ARGS}, versions = ">=14,<17" }},
    {{ handler = "pg_statement_failed", symbol = "AbortCurrentTransaction", args = {ENTRY_ARGS}, versions = ">=14,<17" }},
]
"""


def onehit_recipe(database: str) -> load.Recipe:
    recipe = load.load_recipe(database)
    if database != "postgresql":
        return recipe
    family = load._family_from("query", tomllib.loads(FAMILY)["families"]["query"], HERE,
                               "onehit: families.query")
    return dataclasses.replace(recipe, families={**recipe.families, "query": family})


def tai_offset_ns() -> int:
    """CLOCK_TAI less CLOCK_REALTIME: the leap seconds the kernel was told of, if any."""
    return round((time.clock_gettime_ns(time.CLOCK_TAI) - time.clock_gettime_ns(time.CLOCK_REALTIME))
                 / 1e9) * 1_000_000_000


def with_tai_offset(build):
    def build_program(plans, parameters):
        program = build(plans, parameters)
        return dataclasses.replace(program, cflags=(*program.cflags,
                                                    f"-DDBP_TAI_OFFSET_NS={tai_offset_ns()}ULL"))
    return build_program


def main(argv: list[str]) -> int:
    trace.load_recipe = onehit_recipe
    trace.build_program = with_tai_offset(trace.build_program)
    return cli.main(["slow", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
