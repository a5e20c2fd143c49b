"""What is attached to the server during a run, for each configuration.

Each configuration is attached before a run and finished after it; while attached it says
how much CPU its own processes used and their peak memory, and when finished how many
statements it counted (a tracer that counts nothing measures nothing) and how many
events it lost.
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from bench import bpftrace
from bench.cluster import BenchServer
from bench.errors import BenchError
from bench.modes import Mode
from bench.snapshot import DbprobeSnapshot
from bench.tracer_process import TracerProcess
from bench.usdt import semaphore_file_offset, semaphore_value

ATTACHED_MARK = "probes attached"  # dbprobe's status line once its probes are in place


@dataclass(frozen=True, slots=True)
class Tools:
    """What starting a tracer needs: where its output goes, which dbprobe to run."""

    workdir: Path
    dbprobe: DbprobeSnapshot
    reference: DbprobeSnapshot | None = None  # the revision the slow-ref mode runs


@dataclass(frozen=True, slots=True)
class TracerCounts:
    statements: int | None = None  # statements the configuration counted
    events: int | None = None  # statements delivered to user space
    lost_events: int | None = None
    check: str = ""  # what was verified about the configuration, for the report


class Attached:
    """What one configuration attached for a run: its processes (none for some)."""

    def __init__(self, processes: list[TracerProcess]) -> None:
        self.processes = processes
        self.ready_seconds: float | None = None
        try:
            if processes:
                self.ready_seconds = max(process.wait_ready() for process in processes)
        except BaseException:
            self.kill()
            raise

    def cpu_ticks(self) -> int:
        return sum(process.cpu_ticks() for process in self.processes)

    def peak_rss_kib(self) -> int | None:
        """The peak resident memory of its processes, added up."""
        peaks = [process.peak_rss_kib() for process in self.processes]
        return sum(peak for peak in peaks if peak is not None) if peaks else None

    def finish(self) -> TracerCounts:
        try:
            for process in self.processes:
                process.stop()
            return self._counts()
        finally:
            self.kill()
            for process in self.processes:
                process.stdout_path.unlink(missing_ok=True)  # mode 3 writes 100 MB or more

    def kill(self) -> None:
        for process in self.processes:
            process.kill()

    def _counts(self) -> TracerCounts:
        return TracerCounts()


class DbprobeAttached(Attached):
    """dbprobe commands, each its own process; the first is ``slow`` (or runs it), whose
    summary counts the statements."""

    def _counts(self) -> TracerCounts:
        slow = self.processes[0].summary(has="statements")
        summaries = [slow, *(process.summary() for process in self.processes[1:])]
        return TracerCounts(statements=slow["statements"], events=slow["slow"],
                            lost_events=sum(summary["lost_events"] for summary in summaries))


class WatchpointAttached(DbprobeAttached):
    """dbprobe slow and the watchpoints beside it: slow counts the statements, the
    watchpoints' summary says how many backends they watched and trapped."""

    def _counts(self) -> TracerCounts:
        counts = DbprobeAttached._counts(self)
        watched = self.processes[1].summary()
        refused = f", {len(watched['refused'])} refused" if watched["refused"] else ""
        return dataclasses.replace(counts, check=(
            f"{watched['traps']} traps on {watched['backends']} backends{refused}; "
            f"perf_event_open {watched['open_us_median']} us (median), {watched['open_us_max']} max; "
            f"program {watched['bpf_runs']} runs, {watched['bpf_run_ns']} ns"))


class AgentAttached(Attached):
    """dbprobe agent: its counts are read from its /metrics, while it still serves them."""

    def finish(self) -> TracerCounts:
        try:
            time.sleep(AGENT_REFRESH_S)  # the agent reads the kernel's counters once a second
            self._scraped = self._scrape()
        except BaseException:
            self.kill()
            raise
        return super().finish()

    def _counts(self) -> TracerCounts:
        return self._scraped

    def _scrape(self) -> TracerCounts:
        log = self.processes[0].stderr_path.read_text(errors="replace")
        address = re.search(r"serving metrics on http://(\S+)/metrics", log).group(1)
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            text = response.read().decode()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return TracerCounts(statements=int(totals.get("dbprobe_statements_total", 0)),
                            events=int(totals.get("dbprobe_events_sent_total", 0)),
                            lost_events=int(totals.get("dbprobe_events_lost_total", 0)))


class BpftraceAttached(Attached):
    """The reference; once attached, it checks that bpftrace enabled the probe's semaphore
    (the kernel's reference counter does it for every process when bpftrace runs without
    -p; with -p, bpftrace writes it in that one process)."""

    def __init__(self, process: TracerProcess, server: BenchServer, probe: str) -> None:
        super().__init__([process])
        try:
            self.semaphore_check = _semaphore_check(server, probe)
        except BaseException:
            self.kill()
            raise

    def _counts(self) -> TracerCounts:
        output = self.processes[0].stdout_path.read_text(errors="replace")
        return TracerCounts(statements=bpftrace.histogram_total(output),
                            check=self.semaphore_check)


class PgStatStatementsAttached(Attached):
    def __init__(self, server: BenchServer) -> None:
        super().__init__([])
        self._server = server
        server.psql("SELECT pg_stat_statements_reset()")

    def _counts(self) -> TracerCounts:
        calls = self._server.psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements")
        return TracerCounts(statements=int(calls.strip()))


def attach(mode: Mode, server: BenchServer, protocol: str, tools: Tools) -> Attached:
    """Attach ``mode`` to the server; the server must already be in the mode's state."""
    return _ATTACHERS[mode.key](server, protocol, tools)


def _nothing(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    return Attached([])


def _dbprobe(*commands: list[str], reference: bool = False
             ) -> Callable[[BenchServer, str, Tools], Attached]:
    def start(server: BenchServer, protocol: str, tools: Tools) -> Attached:
        snapshot = tools.reference if reference else tools.dbprobe
        if snapshot is None:
            raise BenchError("a -ref mode needs a reference revision")
        processes: list[TracerProcess] = []
        try:
            for command in commands:
                processes.append(TracerProcess(
                    f"dbprobe-{command[0]}", snapshot.argv(*command, "-p", str(server.pid)),
                    tools.workdir, ready_mark=ATTACHED_MARK, **snapshot.popen_kwargs()))
        except BaseException:
            for process in processes:
                process.kill()
            raise
        return DbprobeAttached(processes)
    return start


def _slow_and_watchpoints(*options: str) -> Callable[[BenchServer, str, Tools], Attached]:
    def start(server: BenchServer, protocol: str, tools: Tools) -> Attached:
        return _slow_beside(server, tools, tools.dbprobe.module_argv(
            "bench.watchpoint", "trace", str(server.pid), *options))
    return start


def _slow_beside(server: BenchServer, tools: Tools, watchpoints: list[str]) -> Attached:
    processes = [TracerProcess("dbprobe-slow", tools.dbprobe.argv(
        "slow", "--threshold", "100ms", "--json", "-p", str(server.pid)), tools.workdir,
        ready_mark=ATTACHED_MARK, **tools.dbprobe.popen_kwargs())]
    try:
        processes.append(TracerProcess("watchpoint", watchpoints, tools.workdir,
                                       ready_mark=ATTACHED_MARK, **tools.dbprobe.popen_kwargs()))
    except BaseException:
        processes[0].kill()
        raise
    return WatchpointAttached(processes)


def _reports_in_one_process(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    process = TracerProcess("dbprobe-together",
                            tools.dbprobe.module_argv("bench.combined", str(server.pid)),
                            tools.workdir, ready_mark=ATTACHED_MARK, **tools.dbprobe.popen_kwargs())
    return DbprobeAttached([process])


AGENT_READY_MARK = "txn via"  # the agent's line for the program with every family
AGENT_REFRESH_S = 1.5


def _agent(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    config = tools.workdir / "agent.toml"
    config.write_text(f'listen = "127.0.0.1:0"\nbinaries = ["{server.binary}"]\n'
                      f'watch = ["{server.binary}"]\n')
    return AgentAttached([TracerProcess(
        "dbprobe-agent", tools.dbprobe.argv("agent", "--config", str(config)), tools.workdir,
        ready_mark=AGENT_READY_MARK, **tools.dbprobe.popen_kwargs())])


def _bpftrace(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    script = bpftrace.reference_script(str(server.binary), protocol)
    process = TracerProcess("bpftrace", ["bpftrace", "-e", script], tools.workdir,
                            ready_mark=bpftrace.READY_LINE, mark_on_stdout=True)
    return BpftraceAttached(process, server, bpftrace.REFERENCE_PROBES[protocol][0])


def _semaphore_check(server: BenchServer, probe: str) -> str:
    """Whether the tracer enabled the probe's semaphore, as the postmaster sees it."""
    offset = semaphore_file_offset(server.binary, bpftrace.USDT_PROVIDER, probe)
    if offset is None:
        return f"{probe} has no semaphore"
    value = semaphore_value(server.pid, server.binary, offset)
    return f"{probe} semaphore {'set' if value else 'NOT set'} ({value}) in the postmaster"


def _empty_probes(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    script = bpftrace.empty_probes_script(tools.dbprobe.planned_probes(server.pid)["query"])
    return Attached([TracerProcess("bpftrace-empty", ["bpftrace", "-e", script], tools.workdir,
                                   ready_mark=bpftrace.READY_LINE, mark_on_stdout=True)])


def _slow_onehit(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    process = TracerProcess("dbprobe-onehit", tools.dbprobe.module_argv(
        "bench.onehit", "--threshold", "100ms", "--json", "-p", str(server.pid)),
        tools.workdir, ready_mark=ATTACHED_MARK, **tools.dbprobe.popen_kwargs())
    return DbprobeAttached([process])


ONEHIT_PROBES = ("EndCommand", "AbortCurrentTransaction")


def _empty_onehit(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    script = bpftrace.empty_probes_script(
        bpftrace.probe_spec(str(server.binary), "uprobe", symbol, False) for symbol in ONEHIT_PROBES)
    return Attached([TracerProcess("bpftrace-empty-onehit", ["bpftrace", "-e", script], tools.workdir,
                                   ready_mark=bpftrace.READY_LINE, mark_on_stdout=True)])


def _pg_stat_statements(server: BenchServer, protocol: str, tools: Tools) -> Attached:
    return PgStatStatementsAttached(server)


_ATTACHERS: dict[str, Callable[[BenchServer, str, Tools], Attached]] = {
    "baseline": _nothing,
    "slow": _dbprobe(["slow", "--threshold", "100ms", "--json"]),
    "slow-ref": _dbprobe(["slow", "--threshold", "100ms", "--json"], reference=True),
    "slow-breakdown": _dbprobe(["slow", "--threshold", "100ms", "--breakdown", "--json"]),
    "slow-breakdown-ref": _dbprobe(["slow", "--threshold", "100ms", "--breakdown", "--json"],
                                   reference=True),
    "slow-all": _dbprobe(["slow", "--threshold", "0", "--json"]),
    "slow-watchpoint": _slow_and_watchpoints(),
    "slow-watchpoint-idle": _slow_and_watchpoints("--unwritten"),
    "three": _dbprobe(["slow", "--threshold", "100ms", "--json"], ["locks", "--json"],
                      ["txn", "--threshold", "100ms", "--json"]),
    "together": _reports_in_one_process,
    "bpftrace": _bpftrace,
    "agent": _agent,
    "pgss": _pg_stat_statements,
    "empty": _empty_probes,
    "slow-onehit": _slow_onehit,
    "empty-onehit": _empty_onehit,
}
