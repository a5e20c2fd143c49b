"""The benchmark's report: a text table for the terminal, Markdown for RESULTS.md, JSON.

Both text forms are made from the same sections (a title, a table, notes), so they say
the same thing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from tabulate import tabulate

from bench.machine import Machine
from bench.measure import RunResult
from bench.pgbench import Workload
from bench.probehits import ProbeHits
from bench.schedule import Settings
from bench.startup import StartupResult
from bench.stats import Spread, spread
from bench.summary import BudgetCheck, HitCost, LossPoint, ModeSummary
from bench.modes import MODES

PROTOCOL_TITLES = {"simple": "simple protocol (pgbench -S)",
                   "extended": "extended protocol (pgbench -M prepared -S)"}


@dataclass(frozen=True, slots=True)
class Report:
    settings: Settings
    machine: Machine
    command: str
    dbprobe_revision: str
    summaries: list[ModeSummary]
    loss: list[LossPoint]
    startups: list[StartupResult]
    hits: list[ProbeHits]
    hit_costs: list[HitCost]
    budgets: list[BudgetCheck]
    runs: list[RunResult]


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    headers: list[str]
    rows: list[list[object]]
    notes: list[str]


# --- the sections -----------------------------------------------------------------------


def sections(report: Report) -> list[Section]:
    found = [_overhead_section(report, protocol) for protocol in report.settings.protocols
             if any(summary.protocol == protocol for summary in report.summaries)]
    found += [section for section in (_loss_section(report), _startup_section(report),
                                      _hits_section(report)) if section is not None]
    found.append(_budget_section(report))
    return found


def _overhead_section(report: Report, protocol: str) -> Section:
    headers = ["configuration", "TPS", "TPS ratio [range]", "CPU-bound ratio", "server us/txn",
               "tracer us/txn", "extra CPU us/txn", "BPF us/txn", "counted/txn", "lost",
               "peak RSS MiB"]
    rows = []
    for summary in (s for s in report.summaries if s.protocol == protocol):
        rows.append([
            MODES[summary.mode].title,
            f"{summary.tps.median:,.0f}",
            _ratio(summary.tps_ratio),
            "-" if summary.cpu_bound_ratio is None else f"{summary.cpu_bound_ratio.median:.3f}",
            f"{summary.server_us_per_txn.median:.1f}",
            f"{summary.tracer_us_per_txn.median:.1f}",
            _signed(summary.extra_us_per_txn),
            "-" if summary.bpf_us_per_txn is None else f"{summary.bpf_us_per_txn.median:.2f}",
            "-" if summary.counted_per_txn is None else f"{summary.counted_per_txn:.3f}",
            "-" if summary.lost_events is None else f"{summary.lost_events:,}",
            "-" if summary.peak_rss_kib is None else f"{summary.peak_rss_kib / 1024:.0f}",
        ])
    workload = Workload(protocol, report.settings.clients, report.settings.seconds)
    notes = [f"{workload.describe()}; {report.settings.rounds} rounds of every configuration, "
             "each run between two baseline runs. Medians over the runs; ratios and extra CPU "
             "against the mean of the two neighbouring baseline runs.",
             "CPU-bound ratio: the TPS ratio predicted from CPU per transaction (server, "
             "tracer and pgbench) for a machine running nothing else; it does not depend on "
             "how much CPU other work took during the run.",
             "BPF us/txn: run time of the tracer's BPF programs, from the kernel's own "
             "statistics (enabled for the whole benchmark); the probe traps around them are "
             "in the extra CPU but not here. It does not depend on the machine's other load."]
    notes += [f"{MODES[summary.mode].title}: {check}" for summary in report.summaries
              if summary.protocol == protocol for check in summary.checks]
    inexact = [MODES[s.mode].title for s in report.summaries if s.protocol == protocol and not s.exact_cpu]
    if inexact:
        notes.append("server CPU approximate (a backend was not reaped in time) for: "
                     + ", ".join(inexact))
    return Section(PROTOCOL_TITLES[protocol], headers, rows, notes)


def _loss_section(report: Report) -> Section | None:
    mode3 = [s for s in report.summaries if s.mode == "slow-all"]
    if not mode3:
        return None
    rows = [[s.protocol, report.settings.clients, f"{s.tps.median:,.0f}",
             f"{s.events_per_s or 0:,.0f}", f"{s.lost_events or 0:,}",
             "-" if s.tracer_us_per_event is None else f"{s.tracer_us_per_event.median:.1f}",
             f"{_tracer_cores(report.runs, s.protocol, report.settings.clients):.2f}"]
            for s in mode3]
    rows += [[point.protocol, point.clients, f"{point.tps:,.0f}", f"{point.events_per_s:,.0f}",
              f"{point.lost_events:,}", "-", f"{point.tracer_cpu_share:.2f}"] for point in report.loss]
    notes = [_loss_verdict(report, protocol) for protocol in report.settings.protocols]
    notes.append("dbprobe's stdout goes to a file, not /dev/null, so that its final summary "
                 "(statements, lost_events) can be read; either way it is one write per event.")
    return Section("dbprobe slow --threshold 0: every statement to user space",
                   ["protocol", "clients", "TPS", "events/s", "lost", "tracer us/event",
                    "tracer CPU (cores)"], rows, notes)


def _loss_verdict(report: Report, protocol: str) -> str:
    points = [(run.clients, run.lost_events or 0) for run in report.runs
              if run.mode == "slow-all" and run.protocol == protocol]
    points += [(point.clients, point.lost_events) for point in report.loss if point.protocol == protocol]
    if not points:
        return f"{protocol}: not measured"
    losing = sorted(clients for clients, lost in points if lost)
    if losing:
        return f"{protocol}: events are lost from {losing[0]} clients on"
    return f"{protocol}: no event lost up to {max(clients for clients, _ in points)} clients"


def _tracer_cores(runs: Sequence[RunResult], protocol: str, clients: int) -> float:
    shares = [run.tracer_cpu_s / run.seconds for run in runs
              if run.mode == "slow-all" and run.protocol == protocol and run.clients == clients]
    return spread(shares).median if shares else 0.0


def _startup_section(report: Report) -> Section | None:
    if not report.startups:
        return None
    attached = spread(s.to_attached_s for s in report.startups)
    first = spread(s.to_first_event_s for s in report.startups)
    peaks = [s.peak_rss_kib for s in report.startups if s.peak_rss_kib is not None]
    rows = [["process start to 'probes attached'", f"{attached.median:.2f}", f"{attached.low:.2f}",
             f"{attached.high:.2f}"],
            ["process start to first event", f"{first.median:.2f}", f"{first.low:.2f}",
             f"{first.high:.2f}"]]
    notes = [f"{len(report.startups)} trials of dbprobe slow --json -p PID while a session runs "
             "SELECT pg_sleep(0.2) over and over"]
    if peaks:
        notes.append(f"peak RSS of dbprobe slow: {max(peaks) / 1024:.0f} MiB")
    return Section("dbprobe slow start-up (seconds)", ["", "median", "best", "worst"], rows, notes)


def _hits_section(report: Report) -> Section | None:
    if not report.hits:
        return None
    families = list(report.hits[0].families)
    costed = list(dict.fromkeys(cost.mode for cost in report.hit_costs))
    rows = []
    for hits in report.hits:
        costs = {cost.mode: cost for cost in report.hit_costs if cost.protocol == hits.protocol}
        rows.append([hits.protocol, *(f"{hits.family_hits(family):.2f}" for family in families),
                     *(_per_hit(costs.get(mode)) for mode in costed)])
    notes = ["BPF program runs in the backends per transaction, counted with bpftrace on the "
             "sites dbprobe attaches (pgstat_report_activity is in every family: three commands "
             "attached run three programs per hit there, one process running the three "
             "reports runs one).",
             "us/hit: extra backend CPU per transaction over the neighbouring baselines "
             "(median of the runs) divided by the hits: dbprobe slow's query probes, the "
             "same probes with empty programs, the reference's two probes."]
    for hits in report.hits:
        detail = [f"{probe.rsplit(':', 1)[-1]} {per_txn:.2f}"
                  for probe, per_txn in hits.per_transaction.items() if per_txn >= 0.005]
        notes.append(f"per probe ({hits.protocol}): " + ", ".join(detail))
    return Section("probe hits per transaction",
                   ["protocol", *(f"dbprobe {family}" for family in families),
                    *(f"{MODES[mode].title}: us/hit" for mode in costed)], rows, notes)


def _per_hit(cost: HitCost | None) -> str:
    if cost is None:
        return "-"
    if cost.us_per_hit is None:
        return f"{cost.extra_server_us_per_txn:+.1f} us/txn"
    return f"{cost.us_per_hit:.2f} ({cost.extra_server_us_per_txn:+.1f} us / {cost.hits_per_txn:.1f} hits)"


def _budget_section(report: Report) -> Section:
    rows = [[check.name, check.target, check.measured,
             {True: "met", False: "NOT MET", None: "-"}[check.met]] for check in report.budgets]
    return Section("budgets", ["check", "target", "measured", "verdict"], rows,
                   [_noise_note(report.runs)])


def _noise_note(runs: Sequence[RunResult]) -> str:
    if not runs:
        return "no runs"
    other = spread(run.other_cpu_s / run.seconds for run in runs)
    steal = spread(run.steal_s / run.seconds for run in runs)
    return (f"noise: the rest of the machine used {other.median:.2f} cores during the runs "
            f"(median; {other.low:.2f}-{other.high:.2f}), hypervisor steal "
            f"{steal.median:.2f} cores (median; up to {steal.high:.2f})")


def _ratio(ratio: Spread | None) -> str:
    if ratio is None:
        return "1 (baseline)"
    return f"{ratio.median:.3f} [{ratio.low:.3f}-{ratio.high:.3f}]"


def _signed(value: Spread | None) -> str:
    return "-" if value is None else f"{value.median:+.1f}"


# --- text, Markdown, JSON -----------------------------------------------------------------


def text(report: Report) -> str:
    parts = [_headline(report), _machine_line(report.machine),
             f"dbprobe under test: {report.dbprobe_revision}"]
    for section in sections(report):
        parts.append(f"\n{section.title}\n"
                     + tabulate(section.rows, headers=section.headers, tablefmt="simple",
                                disable_numparse=True))
        parts += [f"  {note}" for note in section.notes]
    return "\n".join(parts)


def markdown(report: Report) -> str:
    machine = report.machine
    parts = [
        "# What tracing costs PostgreSQL",
        "",
        "Written by `bench/overhead.py` (the last run; run it again to refresh). "
        + _headline(report) + ".",
        "",
        "## Machine",
        "",
        f"- CPU: {machine.cpu_model}, {machine.cores} cores"
        + (" (virtual machine)" if machine.virtualised else ""),
        f"- memory: {machine.memory_gib} GiB",
        f"- kernel: {machine.kernel}; {machine.distribution}",
        f"- {machine.postgres}; {machine.bpftrace}; Python {machine.python}",
        f"- dbprobe under test: {report.dbprobe_revision}",
        f"- date: {machine.date}; load average at start "
        + ", ".join(f"{load:.2f}" for load in machine.load_average),
        f"- {_noise_note(report.runs)}",
        "",
        "Command:",
        "",
        f"    {report.command}",
        "",
        "Configurations:",
        "",
    ]
    parts += [f"- **{mode.title}**: `{mode.command}`" for key, mode in MODES.items()
              if key in report.settings.modes]
    for section in sections(report):
        parts += ["", f"## {section.title}", "",
                  tabulate(section.rows, headers=section.headers, tablefmt="github",
                           disable_numparse=True), ""]
        parts += [f"- {note}" for note in section.notes]
    return "\n".join(parts) + "\n"


def as_json(report: Report) -> str:
    document = {
        "command": report.command,
        "dbprobe_revision": report.dbprobe_revision,
        "settings": dataclasses.asdict(report.settings),
        "machine": dataclasses.asdict(report.machine),
        "summaries": [dataclasses.asdict(summary) for summary in report.summaries],
        "loss_search": [dataclasses.asdict(point) for point in report.loss],
        "startup": [dataclasses.asdict(startup) for startup in report.startups],
        "probe_hits": [dataclasses.asdict(hits) for hits in report.hits],
        "hit_costs": [dataclasses.asdict(cost) for cost in report.hit_costs],
        "budgets": [dataclasses.asdict(check) for check in report.budgets],
        "runs": [dataclasses.asdict(run) for run in report.runs],
    }
    return json.dumps(document, indent=2)


def _headline(report: Report) -> str:
    settings = report.settings
    return (f"pgbench select-only, scale {settings.scale}, {settings.clients} clients, "
            f"{settings.rounds} rounds of {settings.seconds} s runs per configuration and "
            f"protocol ({', '.join(settings.protocols)}), each run between two baseline runs")


def _machine_line(machine: Machine) -> str:
    return (f"{machine.cpu_model}, {machine.cores} cores"
            + (" (VM)" if machine.virtualised else "")
            + f", kernel {machine.kernel}, {machine.postgres}, {machine.date}")
