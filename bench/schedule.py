"""The benchmark's plan and its execution: interleaved rounds, then the side studies
(start-up time, where event loss starts, probe hits per transaction)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.bpfstats import bpf_stats
from bench.cluster import BenchServer
from bench.measure import RunResult, measure
from bench.pgbench import Workload
from bench.probehits import ProbeHits, count_hits
from bench.snapshot import take_revision_snapshot, take_snapshot
from bench.startup import StartupResult, time_to_first_event
from bench.modes import MODES
from bench.tracers import Tools

LOSS_SEARCH_MODE = "slow-all"


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int
    seconds: int
    scale: int
    clients: int
    protocols: tuple[str, ...]
    modes: tuple[str, ...]  # the baseline first
    max_clients: int  # where the search for event loss stops
    startup_trials: int
    warmup_seconds: int
    count_probe_hits: bool
    reference: str = "main"  # the git revision the slow-ref mode runs


@dataclass(frozen=True, slots=True)
class Step:
    round: int
    mode: str
    protocol: str


def interleaved_schedule(modes: Sequence[str], protocols: Sequence[str], rounds: int) -> list[Step]:
    """A, then B A C A D A ... once per round, where A is the baseline (the first mode):
    every configuration's run has a baseline run just before and just after it. The order
    of the configurations turns by one each round, so none always follows the same one.
    Both protocols run back to back under one mode, so a configuration that needs a server
    restart (and the baseline after it) restarts the server twice a round."""
    baseline, configurations = modes[0], list(modes[1:])
    if not configurations:
        return [Step(number, baseline, protocol) for number in range(1, rounds + 1)
                for protocol in protocols]
    steps = [Step(1, baseline, protocol) for protocol in protocols]
    for number in range(1, rounds + 1):
        turn = (number - 1) % len(configurations)
        for mode in configurations[turn:] + configurations[:turn]:
            for step_mode in (mode, baseline):
                steps += [Step(number, step_mode, protocol) for protocol in protocols]
    return steps


def clients_ladder(start: int, maximum: int) -> list[int]:
    """Client counts for the loss search: doubling from twice ``start`` up to ``maximum``."""
    ladder, clients = [], start * 2
    while clients <= maximum:
        ladder.append(clients)
        clients *= 2
    return ladder


@dataclass
class Measurements:
    runs: list[RunResult] = field(default_factory=list)
    loss_runs: list[RunResult] = field(default_factory=list)
    startups: list[StartupResult] = field(default_factory=list)
    hits: list[ProbeHits] = field(default_factory=list)
    postgres_version: str = ""
    dbprobe_revision: str = ""
    reference_revision: str = ""  # what slow-ref ran, when it ran


Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(f"overhead: {message}", file=sys.stderr, flush=True)


def run_benchmark(settings: Settings, progress: Progress = stderr_progress) -> Measurements:
    found = Measurements()
    progress(f"initialising a pgbench database of scale {settings.scale}")
    with tempfile.TemporaryDirectory(prefix="dbprobe-bench-out-") as scratch, bpf_stats(), \
            BenchServer(scale=settings.scale, warmup_seconds=settings.warmup_seconds) as server:
        reference = (take_revision_snapshot(Path(scratch) / "dbprobe-reference", settings.reference)
                     if any(mode.endswith("-ref") for mode in settings.modes) else None)
        tools = Tools(workdir=Path(scratch), dbprobe=take_snapshot(Path(scratch) / "dbprobe-under-test"),
                      reference=reference)
        if reference is not None:
            found.reference_revision = reference.revision
        found.postgres_version = server.version()
        found.dbprobe_revision = tools.dbprobe.revision
        _interleaved_rounds(server, settings, tools, found, progress)
        _loss_search(server, settings, tools, found, progress)
        server.use_pg_stat_statements(False)
        _startup_trials(server, settings, tools, found, progress)
        _probe_hits(server, settings, tools, found, progress)
    return found


def _interleaved_rounds(server: BenchServer, settings: Settings, tools: Tools,
                        found: Measurements, progress: Progress) -> None:
    steps = interleaved_schedule(settings.modes, settings.protocols, settings.rounds)
    for index, step in enumerate(steps, start=1):
        workload = Workload(step.protocol, settings.clients, settings.seconds)
        run = measure(server, MODES[step.mode], workload, tools, round_number=step.round,
                      sequence=len(found.runs))
        found.runs.append(run)
        progress(f"[{index}/{len(steps)}] round {step.round} {step.mode:<9} {step.protocol:<8} "
                 f"{run.tps:>9,.0f} tps, server {run.server_cpu_s * 1e6 / run.transactions:6.1f}"
                 f" + tracer {run.tracer_cpu_s * 1e6 / run.transactions:5.1f} us/txn")


def _loss_search(server: BenchServer, settings: Settings, tools: Tools, found: Measurements,
                 progress: Progress) -> None:
    """Mode 3 with ever more clients until events are lost (the runs at the usual client
    count are the interleaved ones)."""
    if LOSS_SEARCH_MODE not in settings.modes:
        return
    for protocol in settings.protocols:
        if any(run.lost_events for run in found.runs
               if run.mode == LOSS_SEARCH_MODE and run.protocol == protocol):
            continue  # loss already at the usual client count
        for clients in clients_ladder(settings.clients, settings.max_clients):
            workload = Workload(protocol, clients, settings.seconds)
            run = measure(server, MODES[LOSS_SEARCH_MODE], workload, tools, round_number=0,
                          sequence=len(found.runs) + len(found.loss_runs))
            found.loss_runs.append(run)
            progress(f"loss search {protocol} -c {clients}: {run.events or 0:,} events, "
                     f"{run.lost_events or 0:,} lost")
            if run.lost_events:
                break


def _startup_trials(server: BenchServer, settings: Settings, tools: Tools,
                    found: Measurements, progress: Progress) -> None:
    for trial in range(1, settings.startup_trials + 1):
        startup = time_to_first_event(server, tools.dbprobe)
        found.startups.append(startup)
        progress(f"start-up trial {trial}: attached after {startup.to_attached_s:.2f} s, "
                 f"first event after {startup.to_first_event_s:.2f} s")


def _probe_hits(server: BenchServer, settings: Settings, tools: Tools, found: Measurements,
                progress: Progress) -> None:
    if not settings.count_probe_hits:
        return
    for protocol in settings.protocols:
        hits = count_hits(server, Workload(protocol, settings.clients, min(settings.seconds, 5)),
                          tools)
        found.hits.append(hits)
        progress(f"probe hits per transaction ({protocol}): "
                 + ", ".join(f"{family} {hits.family_hits(family):.1f}" for family in hits.families))
