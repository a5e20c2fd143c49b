"""Print, as JSON, the probes dbprobe attaches to a PostgreSQL server for each report family,
named as bpftrace names them: ``python -m bench.plan_probes PID``.

Run as a module with the dbprobe under test first on PYTHONPATH, so the plan is that
dbprobe's own.
"""

from __future__ import annotations

import json
import sys

from bench.bpftrace import probe_spec
from dbprobe.recipes.bind import plan_family
from dbprobe.recipes.load import load_recipe
from dbprobe.discover.targets import choose_targets

FAMILIES = ("query", "locks", "txn")


def planned_probes(pid: int) -> dict[str, list[str]]:
    target = choose_targets(pid=pid, binary=None, databases=("postgresql",))[0]
    recipe = load_recipe("postgresql")
    binary = target.open_binary()
    probes = {}
    for family in FAMILIES:
        plan = plan_family(recipe, family, binary, target.version)
        probes[family] = list(dict.fromkeys(
            probe_spec(target.binary, site.mechanism, site.label, site.on_return)
            for site in plan.sites))
    return probes


if __name__ == "__main__":
    print(json.dumps(planned_probes(int(sys.argv[1]))))
