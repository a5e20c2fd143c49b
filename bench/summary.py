"""From the runs to the figures reported per configuration, and the budgets checked."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.measure import RunResult
from bench.probehits import ProbeHits
from bench.startup import StartupResult
from bench.stats import Spread, bracketing_baselines, per_unit_us, spread

BASELINE = "baseline"


def server_us_per_txn(run: RunResult) -> float:
    return run.server_cpu_s * 1e6 / run.transactions


def traced_us_per_txn(run: RunResult) -> float:
    """What the database and its tracer spend per transaction."""
    return (run.server_cpu_s + run.tracer_cpu_s) * 1e6 / run.transactions


def all_us_per_txn(run: RunResult) -> float:
    """Everything the benchmark's processes spend per transaction, pgbench included."""
    return (run.server_cpu_s + run.tracer_cpu_s + run.client_cpu_s) * 1e6 / run.transactions


@dataclass(frozen=True, slots=True)
class PairedRun:
    """A configuration's run next to the baseline runs just before and after it."""

    run: RunResult
    tps_ratio: float
    extra_us_per_txn: float  # server + tracer CPU per transaction, over the baseline's
    extra_server_us_per_txn: float
    # The TPS ratio the CPU figures predict for a machine that runs nothing else:
    # baseline CPU per transaction / this run's (pgbench's own CPU included both times).
    cpu_bound_ratio: float


def pair_with_baselines(runs: Sequence[RunResult], protocol: str) -> list[PairedRun]:
    """Every non-baseline run of ``protocol`` paired with its neighbouring baselines."""
    timeline = sorted((run for run in runs if run.protocol == protocol), key=lambda run: run.sequence)

    def references(figure: Callable[[RunResult], float]) -> list[float | None]:
        return bracketing_baselines([(run.mode == BASELINE, figure(run)) for run in timeline])

    tps, traced, server, everything = (references(figure) for figure in (
        lambda run: run.tps, traced_us_per_txn, server_us_per_txn, all_us_per_txn))
    paired = []
    for index, run in enumerate(timeline):
        if tps[index] is None:
            continue
        paired.append(PairedRun(
            run=run,
            tps_ratio=run.tps / tps[index],
            extra_us_per_txn=traced_us_per_txn(run) - traced[index],
            extra_server_us_per_txn=server_us_per_txn(run) - server[index],
            cpu_bound_ratio=everything[index] / all_us_per_txn(run),
        ))
    return paired


@dataclass(frozen=True, slots=True)
class ModeSummary:
    mode: str
    protocol: str
    runs: int
    tps: Spread
    tps_ratio: Spread | None  # against the neighbouring baselines; None for the baseline
    cpu_bound_ratio: Spread | None
    server_us_per_txn: Spread
    tracer_us_per_txn: Spread
    extra_us_per_txn: Spread | None  # (server + tracer) CPU per transaction minus the baseline's
    extra_server_us_per_txn: Spread | None
    bpf_us_per_txn: Spread | None  # the tracer's BPF programs, from the kernel's statistics
    counted_per_txn: float | None  # statements the configuration counted, per transaction
    events_per_s: float | None  # statements delivered to user space per second
    tracer_us_per_event: Spread | None
    lost_events: int | None  # over all runs
    peak_rss_kib: int | None  # the highest of the runs
    attach_s: Spread | None
    other_load_cores: float  # median CPU the rest of the machine used meanwhile, in cores
    steal_cores: float
    exact_cpu: bool  # every run had its backends reaped before and after
    checks: tuple[str, ...]


def summarise(results: Sequence[RunResult], modes: Sequence[str],
              protocols: Sequence[str]) -> list[ModeSummary]:
    summaries = []
    for protocol in protocols:
        paired = pair_with_baselines(results, protocol)
        for mode in modes:
            runs = [run for run in results if run.mode == mode and run.protocol == protocol]
            if runs:
                summaries.append(_summarise_mode(runs, [p for p in paired if p.run.mode == mode]))
    return summaries


def _spread_or_none(values: list[float]) -> Spread | None:
    return spread(values) if values else None


def _summarise_mode(runs: list[RunResult], paired: list[PairedRun]) -> ModeSummary:
    counted = [run.statements / run.transactions for run in runs if run.statements is not None]
    events = [run.events / run.seconds for run in runs if run.events is not None]
    per_event = [us for run in runs if run.events
                 if (us := per_unit_us(run.tracer_cpu_s, run.events)) is not None]
    lost = [run.lost_events for run in runs if run.lost_events is not None]
    peaks = [run.peak_rss_kib for run in runs if run.peak_rss_kib is not None]
    return ModeSummary(
        mode=runs[0].mode, protocol=runs[0].protocol, runs=len(runs),
        tps=spread(run.tps for run in runs),
        tps_ratio=_spread_or_none([p.tps_ratio for p in paired]),
        cpu_bound_ratio=_spread_or_none([p.cpu_bound_ratio for p in paired]),
        server_us_per_txn=spread(server_us_per_txn(run) for run in runs),
        tracer_us_per_txn=spread(run.tracer_cpu_s * 1e6 / run.transactions for run in runs),
        bpf_us_per_txn=_spread_or_none([run.bpf_s * 1e6 / run.transactions for run in runs
                                        if run.bpf_s is not None and run.transactions]),
        extra_us_per_txn=_spread_or_none([p.extra_us_per_txn for p in paired]),
        extra_server_us_per_txn=_spread_or_none([p.extra_server_us_per_txn for p in paired]),
        counted_per_txn=statistics.median(counted) if counted else None,
        events_per_s=statistics.median(events) if events else None,
        tracer_us_per_event=_spread_or_none(per_event),
        lost_events=sum(lost) if lost else None,
        peak_rss_kib=max(peaks) if peaks else None,
        attach_s=_spread_or_none([run.attach_s for run in runs if run.attach_s is not None]),
        other_load_cores=statistics.median(run.other_cpu_s / run.seconds for run in runs),
        steal_cores=statistics.median(run.steal_s / run.seconds for run in runs),
        exact_cpu=all(run.quiet for run in runs),
        checks=tuple(dict.fromkeys(run.check for run in runs if run.check)),
    )


@dataclass(frozen=True, slots=True)
class LossPoint:
    protocol: str
    clients: int
    tps: float
    events_per_s: float
    lost_events: int
    tracer_cpu_share: float  # of one core


def loss_points(runs: Sequence[RunResult]) -> list[LossPoint]:
    return [LossPoint(run.protocol, run.clients, run.tps, (run.events or 0) / run.seconds,
                      run.lost_events or 0, run.tracer_cpu_s / run.seconds) for run in runs]


@dataclass(frozen=True, slots=True)
class HitCost:
    """The extra backend CPU of a configuration spread over the probe hits it causes."""

    protocol: str
    mode: str
    hits_per_txn: float
    extra_server_us_per_txn: float
    us_per_hit: float | None


def hit_costs(summaries: Sequence[ModeSummary], hits: Sequence[ProbeHits]) -> list[HitCost]:
    """For dbprobe slow and the empty probes (the query family's probes) and the bpftrace
    reference (two probes per statement): extra backend CPU per transaction over the
    baseline, per probe hit."""
    found = {(summary.mode, summary.protocol): summary for summary in summaries}
    costs = []
    for probe_hits in hits:
        query_hits = probe_hits.family_hits("query")
        for mode, hits_per_txn in (("slow", query_hits), ("empty", query_hits), ("bpftrace", 2.0)):
            summary = found.get((mode, probe_hits.protocol))
            if summary is None or summary.extra_server_us_per_txn is None:
                continue
            extra = summary.extra_server_us_per_txn.median
            costs.append(HitCost(probe_hits.protocol, mode, hits_per_txn, extra,
                                 extra / hits_per_txn if hits_per_txn else None))
    return costs


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    name: str
    target: str
    measured: str
    met: bool | None  # None when this run did not measure it


def check_budgets(summaries: Sequence[ModeSummary], startups: Sequence[StartupResult],
                  min_ratio: float, max_startup_s: float) -> list[BudgetCheck]:
    found = {(summary.mode, summary.protocol): summary for summary in summaries}
    slow = found.get(("slow", "simple"))
    checks = [_ratio_check("dbprobe slow 100ms, pgbench -S: TPS ratio", slow and slow.tps_ratio,
                           min_ratio),
              _ratio_check("dbprobe slow 100ms, pgbench -S: CPU-bound ratio", slow and slow.cpu_bound_ratio,
                           min_ratio)]
    agent = found.get(("agent", "simple"))
    checks.append(_ratio_check("dbprobe agent (every family), pgbench -S: TPS ratio",
                               agent and agent.tps_ratio, min_ratio))
    for protocol in ("simple", "extended"):
        mine, reference = found.get(("slow", protocol)), found.get(("bpftrace", protocol))
        if mine is not None and reference is not None:
            checks.append(_versus_reference(mine, reference))
    for protocol in ("simple", "extended"):
        together, alone = found.get(("together", protocol)), found.get(("slow", protocol))
        if together is not None and alone is not None:
            checks.append(_together_check(together, alone))
    checks.append(_no_loss_check(found.get(("slow-all", "simple"))))
    checks.append(_startup_check(startups, max_startup_s))
    return checks


MAX_TOGETHER_COST = 1.2  # slow+locks+txn in one process, against slow alone: extra CPU/txn


def _together_check(together: ModeSummary, alone: ModeSummary) -> BudgetCheck:
    name = f"slow+locks+txn in one process vs slow alone ({together.protocol})"
    target = f"extra CPU <= {MAX_TOGETHER_COST:g}x"
    if together.extra_us_per_txn is None or alone.extra_us_per_txn is None:
        return BudgetCheck(name, target, "not measured", None)
    mine, theirs = together.extra_us_per_txn.median, alone.extra_us_per_txn.median
    if theirs <= 0:
        return BudgetCheck(name, target, f"{mine:+.1f} vs {theirs:+.1f} us/txn (no cost to compare)",
                           None)
    ratio = mine / theirs
    bpf = ""
    if together.bpf_us_per_txn is not None and alone.bpf_us_per_txn is not None:
        bpf = (f"; BPF programs {together.bpf_us_per_txn.median:.2f} vs "
               f"{alone.bpf_us_per_txn.median:.2f} us/txn")
    return BudgetCheck(name, target, f"{ratio:.2f}x ({mine:+.1f} vs {theirs:+.1f} us/txn{bpf})",
                       ratio <= MAX_TOGETHER_COST)


def _ratio_check(name: str, ratio: Spread | None, min_ratio: float) -> BudgetCheck:
    target = f">= {min_ratio:.2f}"
    if ratio is None:
        return BudgetCheck(name, target, "not measured", None)
    met = ratio.median >= min_ratio
    shortfall = "" if met else f"; short by {min_ratio - ratio.median:.3f}"
    return BudgetCheck(name, target, f"{_range(ratio)}{shortfall}", met)


def _versus_reference(mine: ModeSummary, reference: ModeSummary) -> BudgetCheck:
    name = f"dbprobe slow 100ms vs bpftrace reference ({mine.protocol})"
    target = "TPS ratio >= the reference's"
    if mine.tps_ratio is None or reference.tps_ratio is None:
        return BudgetCheck(name, target, "not measured", None)
    cpu = ""
    if mine.extra_us_per_txn is not None and reference.extra_us_per_txn is not None:
        cpu = (f"; extra CPU {mine.extra_us_per_txn.median:+.1f} vs "
               f"{reference.extra_us_per_txn.median:+.1f} us/txn")
    return BudgetCheck(name, target, f"{mine.tps_ratio.median:.3f} vs "
                       f"{reference.tps_ratio.median:.3f}{cpu}",
                       mine.tps_ratio.median >= reference.tps_ratio.median)


def _no_loss_check(all_queries: ModeSummary | None) -> BudgetCheck:
    name = "dbprobe slow 0, pgbench -S -c 4: lost events"
    if all_queries is None or all_queries.lost_events is None:
        return BudgetCheck(name, "0", "not measured", None)
    rate = f"{all_queries.events_per_s:,.0f} events/s" if all_queries.events_per_s else "no events"
    per_event = (f", tracer {all_queries.tracer_us_per_event.median:.1f} us CPU/event"
                 if all_queries.tracer_us_per_event else "")
    return BudgetCheck(name, "0", f"{all_queries.lost_events:,} at {rate}{per_event}",
                       all_queries.lost_events == 0)


def _startup_check(startups: Sequence[StartupResult], max_startup_s: float) -> BudgetCheck:
    name, target = "dbprobe slow: start to first event", f"<= {max_startup_s:g} s (every trial)"
    if not startups:
        return BudgetCheck(name, target, "not measured", None)
    first = spread(startup.to_first_event_s for startup in startups)
    return BudgetCheck(name, target, f"median {first.median:.2f} s, worst {first.high:.2f} s",
                       first.high <= max_startup_s)


def _range(figures: Spread) -> str:
    return f"{figures.median:.3f} [{figures.low:.3f}-{figures.high:.3f}]"
