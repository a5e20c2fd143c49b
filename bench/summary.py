"""From the runs to the figures reported per configuration, and the budgets checked."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.measure import RunResult
from bench.probehits import ProbeHits
from bench.startup import StartupResult
from bench.stats import Spread, median_of_ratios, paired_differences, per_unit_us, spread

BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class ModeSummary:
    mode: str
    protocol: str
    runs: int
    tps: Spread
    tps_ratio: Spread | None  # against the baseline of the same round; None for the baseline
    server_us_per_txn: Spread
    tracer_us_per_txn: Spread
    extra_us_per_txn: Spread | None  # (server + tracer) CPU per transaction minus the baseline's
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


def cpu_us_per_txn(run: RunResult) -> float:
    return (run.server_cpu_s + run.tracer_cpu_s) * 1e6 / run.transactions


def summarise(results: Sequence[RunResult], modes: Sequence[str],
              protocols: Sequence[str]) -> list[ModeSummary]:
    summaries = []
    for protocol in protocols:
        baseline = [run for run in results if run.mode == BASELINE and run.protocol == protocol]
        for mode in modes:
            runs = [run for run in results if run.mode == mode and run.protocol == protocol]
            if runs:
                summaries.append(_summarise_mode(runs, baseline))
    return summaries


def _summarise_mode(runs: list[RunResult], baseline: list[RunResult]) -> ModeSummary:
    first = runs[0]
    by_round = {run.round: run for run in runs}
    base_by_round = {run.round: run for run in baseline}
    is_baseline = first.mode == BASELINE
    extra = paired_differences({key: cpu_us_per_txn(run) for key, run in base_by_round.items()},
                               {key: cpu_us_per_txn(run) for key, run in by_round.items()})
    counted = [run.statements / run.transactions for run in runs if run.statements is not None]
    events = [run.events / run.seconds for run in runs if run.events is not None]
    per_event = [us for run in runs if run.events
                 if (us := per_unit_us(run.tracer_cpu_s, run.events)) is not None]
    lost = [run.lost_events for run in runs if run.lost_events is not None]
    peaks = [run.peak_rss_kib for run in runs if run.peak_rss_kib is not None]
    attach = [run.attach_s for run in runs if run.attach_s is not None]
    return ModeSummary(
        mode=first.mode, protocol=first.protocol, runs=len(runs),
        tps=spread(run.tps for run in runs),
        tps_ratio=None if is_baseline else median_of_ratios(
            {key: run.tps for key, run in base_by_round.items()},
            {key: run.tps for key, run in by_round.items()}),
        server_us_per_txn=spread(run.server_cpu_s * 1e6 / run.transactions for run in runs),
        tracer_us_per_txn=spread(run.tracer_cpu_s * 1e6 / run.transactions for run in runs),
        extra_us_per_txn=None if is_baseline or not extra else spread(extra),
        counted_per_txn=statistics.median(counted) if counted else None,
        events_per_s=statistics.median(events) if events else None,
        tracer_us_per_event=spread(per_event) if per_event else None,
        lost_events=sum(lost) if lost else None,
        peak_rss_kib=max(peaks) if peaks else None,
        attach_s=spread(attach) if attach else None,
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
    """The extra server CPU of a configuration spread over the probe hits it causes."""

    protocol: str
    mode: str
    hits_per_txn: float
    extra_server_us_per_txn: float
    us_per_hit: float | None


def hit_costs(summaries: Sequence[ModeSummary], results: Sequence[RunResult],
              hits: Sequence[ProbeHits]) -> list[HitCost]:
    """For dbprobe slow (the query family's probes) and the bpftrace reference (two probes
    per statement): extra backend CPU per transaction over the baseline, per probe hit."""
    costs = []
    for probe_hits in hits:
        per_mode = {"slow": probe_hits.family_hits("query"), "bpftrace": 2.0}
        for mode, hits_per_txn in per_mode.items():
            extra = _extra_server_us(results, mode, probe_hits.protocol)
            if extra is None:
                continue
            costs.append(HitCost(probe_hits.protocol, mode, hits_per_txn, extra,
                                 extra / hits_per_txn if hits_per_txn else None))
    return costs


def _extra_server_us(results: Sequence[RunResult], mode: str, protocol: str) -> float | None:
    def per_round(name: str) -> dict[int, float]:
        return {run.round: run.server_cpu_s * 1e6 / run.transactions for run in results
                if run.mode == name and run.protocol == protocol}
    differences = paired_differences(per_round(BASELINE), per_round(mode))
    return statistics.median(differences) if differences else None


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    name: str
    target: str
    measured: str
    met: bool | None  # None when this run did not measure it


def check_budgets(summaries: Sequence[ModeSummary], startups: Sequence[StartupResult],
                  min_ratio: float, max_startup_s: float) -> list[BudgetCheck]:
    found = {(summary.mode, summary.protocol): summary for summary in summaries}
    checks = [_ratio_check(found.get(("slow", "simple")), min_ratio)]
    for protocol in ("simple", "extended"):
        slow, reference = found.get(("slow", protocol)), found.get(("bpftrace", protocol))
        if slow is not None and reference is not None:
            checks.append(_versus_reference(slow, reference))
    checks.append(_no_loss_check(found.get(("slow-all", "simple"))))
    checks.append(_startup_check(startups, max_startup_s))
    return checks


def _ratio_check(slow: ModeSummary | None, min_ratio: float) -> BudgetCheck:
    name, target = "dbprobe slow 100ms, pgbench -S: TPS ratio", f">= {min_ratio:.2f}"
    if slow is None or slow.tps_ratio is None:
        return BudgetCheck(name, target, "not measured", None)
    ratio = slow.tps_ratio
    met = ratio.median >= min_ratio
    shortfall = "" if met else f"; short by {min_ratio - ratio.median:.3f}"
    return BudgetCheck(name, target, f"{ratio.median:.3f} [{ratio.low:.3f}-{ratio.high:.3f}]"
                       f"{shortfall}", met)


def _versus_reference(slow: ModeSummary, reference: ModeSummary) -> BudgetCheck:
    name = f"dbprobe slow 100ms vs bpftrace reference ({slow.protocol})"
    if slow.tps_ratio is None or reference.tps_ratio is None:
        return BudgetCheck(name, "ratio >= reference's", "not measured", None)
    mine, theirs = slow.tps_ratio.median, reference.tps_ratio.median
    cpu = ""
    if slow.extra_us_per_txn is not None and reference.extra_us_per_txn is not None:
        cpu = (f"; extra CPU {slow.extra_us_per_txn.median:+.1f} vs "
               f"{reference.extra_us_per_txn.median:+.1f} us/txn")
    return BudgetCheck(name, "TPS ratio >= the reference's",
                       f"{mine:.3f} vs {theirs:.3f}{cpu}", mine >= theirs)


def _no_loss_check(all_queries: ModeSummary | None) -> BudgetCheck:
    name = "dbprobe slow 0, pgbench -S -c 4: lost events"
    if all_queries is None or all_queries.lost_events is None:
        return BudgetCheck(name, "0", "not measured", None)
    rate = f"{all_queries.events_per_s:,.0f} events/s" if all_queries.events_per_s else ""
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
