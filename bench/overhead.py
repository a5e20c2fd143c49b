"""What tracing costs the database: dbprobe and its alternatives on pgbench.

A throwaway PostgreSQL cluster (run from a private copy of the installed server, so no
other tracer on the host touches it) is loaded by select-only pgbench over the simple and
the extended protocol while each configuration is attached in turn: nothing, dbprobe slow
with a 100 ms threshold, dbprobe slow sending every statement to user space, dbprobe
slow + locks + txn together, a bpftrace histogram on the same USDT probes, and
pg_stat_statements. Runs are interleaved with baseline runs (A B A C A D ... A, several
rounds) so that machine noise cancels: each run is compared with the baseline runs just
before and just after it.

Reported: TPS ratio against no tracing, CPU per transaction (server processes from /proc,
BPF work in the backends included, plus the tracer processes), the events per second
dbprobe sustains without losing any and where it starts losing, start-up time to the first
event, the tracers' peak memory, and how many probe hits a transaction causes.

Run as root: ``make bench`` or ``.venv/bin/python bench/overhead.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python bench/overhead.py): make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import render  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.machine import describe_machine  # noqa: E402
from bench.pgbench import PROTOCOL_FLAGS  # noqa: E402
from bench.schedule import Measurements, Settings, run_benchmark  # noqa: E402
from bench.summary import (BASELINE, check_budgets, hit_costs, loss_points,  # noqa: E402
                           summarise)
from bench.modes import MODES  # noqa: E402
from dbprobe.errors import DbprobeError  # noqa: E402

RESULTS_FILE = Path(__file__).resolve().parent / "RESULTS.md"
MIN_TPS_RATIO = 0.95
MAX_STARTUP_S = 3.0
QUICK = {"rounds": 1, "seconds": 3, "protocols": "simple", "startup_trials": 1,
         "warmup": 1, "max_clients": 4}
DEFAULTS = {"rounds": 5, "seconds": 10, "protocols": "simple,extended", "startup_trials": 3,
            "warmup": 3, "max_clients": 64}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="overhead.py", description="what tracing costs PostgreSQL, measured on pgbench")
    parser.add_argument("--rounds", type=_positive,
                        help=f"runs of each configuration, interleaved (default {DEFAULTS['rounds']})")
    parser.add_argument("--seconds", type=_positive,
                        help=f"length of each pgbench run (default {DEFAULTS['seconds']})")
    parser.add_argument("--scale", type=_positive, default=10, help="pgbench scale (default 10)")
    parser.add_argument("--clients", type=_positive, default=4, help="pgbench clients (default 4)")
    parser.add_argument("--protocols", help="simple, extended or both, comma-separated "
                                            f"(default {DEFAULTS['protocols']})")
    parser.add_argument("--modes", default=",".join(key for key, mode in MODES.items() if mode.default),
                        help="configurations, comma-separated, from "
                             f"{','.join(MODES)} (default all but empty); the baseline is "
                             "always included")
    parser.add_argument("--max-clients", type=_positive,
                        help="the search for event loss doubles the clients up to this "
                             f"(default {DEFAULTS['max_clients']})")
    parser.add_argument("--startup-trials", type=int,
                        help=f"start-up measurements (default {DEFAULTS['startup_trials']}; 0: none)")
    parser.add_argument("--warmup", type=int,
                        help=f"seconds of pgbench after each server (re)start (default {DEFAULTS['warmup']})")
    parser.add_argument("--reference", default="main",
                        help="git revision that the slow-ref mode runs (default main)")
    parser.add_argument("--no-probe-hits", action="store_true",
                        help="do not count the probe hits per transaction")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON document instead of tables")
    parser.add_argument("--results", type=Path,
                        help=f"write the results in Markdown here (default {RESULTS_FILE.name} "
                             "beside this script; --quick writes none unless given)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of about a minute: one round of 3 s, simple protocol only")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    defaults = QUICK if args.quick else DEFAULTS

    def pick(name: str):
        value = getattr(args, name)
        return defaults[name] if value is None else value

    protocols = _choices(pick("protocols"), PROTOCOL_FLAGS, "protocol")
    modes = _choices(args.modes, MODES, "mode")
    return Settings(
        rounds=pick("rounds"), seconds=pick("seconds"), scale=args.scale, clients=args.clients,
        protocols=protocols, modes=(BASELINE, *(mode for mode in modes if mode != BASELINE)),
        max_clients=pick("max_clients"), startup_trials=pick("startup_trials"),
        warmup_seconds=pick("warmup"), count_probe_hits=not args.no_probe_hits,
        reference=args.reference,
    )


def check_machine(settings: Settings) -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root: the benchmark attaches BPF programs")
    if shutil.which("bpftrace") is None and ("bpftrace" in settings.modes or settings.count_probe_hits):
        raise BenchError("bpftrace is not installed (make setup installs it); or leave out "
                         "--modes bpftrace and pass --no-probe-hits")


def build_report(settings: Settings, found: Measurements, command: str) -> render.Report:
    summaries = summarise(found.runs, settings.modes, settings.protocols)
    return render.Report(
        settings=settings, machine=describe_machine(found.postgres_version), command=command,
        dbprobe_revision=found.dbprobe_revision + (
            f"; slow-ref runs {found.reference_revision}" if found.reference_revision else ""),
        summaries=summaries, loss=loss_points(found.loss_runs), startups=found.startups,
        hits=found.hits, hit_costs=hit_costs(summaries, found.hits),
        budgets=check_budgets(summaries, found.startups, MIN_TPS_RATIO, MAX_STARTUP_S),
        runs=found.runs,
    )


def interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP stop the benchmark as Ctrl-C does, through every cleanup (tracers
    stopped, server stopped, temporary files removed); Ctrl-C works even when started in
    the background, where a shell makes programs ignore it."""
    def interrupt(number: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(number).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, interrupt)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_arguments(argv)
    interrupt_on_termination()
    try:
        settings = settings_from(args)
        check_machine(settings)
        found = run_benchmark(settings)
    except (BenchError, DbprobeError) as error:
        print(f"overhead: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overhead: interrupted", file=sys.stderr)
        return 130
    report = build_report(settings, found, shlex.join(["python", "bench/overhead.py", *argv]))
    print(render.as_json(report) if args.json else render.text(report))
    results = args.results if args.results is not None else (None if args.quick else RESULTS_FILE)
    if results is not None:
        results.write_text(render.markdown(report))
        print(f"overhead: results written to {results}", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _choices(text: str, known, what: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        raise BenchError(f"unknown {what} {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return chosen


if __name__ == "__main__":
    sys.exit(main())
