"""The configurations compared: what is attached to the server during a run.

Each configuration is attached before a run and finished after it; while attached it says
how much CPU its own processes used and their peak memory, and when finished how many
statements it counted (a tracer that counts nothing measures nothing) and how many
events it lost.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import bpftrace
from bench.cluster import BenchServer
from bench.errors import BenchError
from bench.procstat import peak_rss_kib, read_process_cpu
from bench.usdt import semaphore_file_offset, semaphore_value

READY_TIMEOUT_S = 180.0  # three BPF compilations at once on a small machine take a while
STOP_TIMEOUT_S = 120.0
ATTACHED_MARK = "probes attached"  # dbprobe's status line once its probes are in place
SUMMARY_TAIL_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Mode:
    key: str
    title: str
    command: str  # what a user would type, for the report
    pg_stat_statements: bool = False


MODES: dict[str, Mode] = {mode.key: mode for mode in (
    Mode("baseline", "no tracing", "(nothing attached)"),
    Mode("slow", "dbprobe slow 100ms", "dbprobe slow --threshold 100ms --json -p PID"),
    Mode("slow-all", "dbprobe slow 0 (all)",
         "dbprobe slow --threshold 0 --json -p PID > FILE"),
    Mode("three", "slow+locks+txn",
         "dbprobe slow --threshold 100ms --json -p PID & dbprobe locks --json -p PID & "
         "dbprobe txn --threshold 100ms --json -p PID"),
    Mode("bpftrace", "bpftrace hist (ref)",
         "bpftrace -e 'usdt:...:query__start {@start[tid]=nsecs} usdt:...:query__done "
         "/@start[tid]/ {@=hist(nsecs-@start[tid]); delete(@start[tid])}' (extended: "
         "query__execute__start/done)"),
    Mode("pgss", "pg_stat_statements",
         "shared_preload_libraries=pg_stat_statements; CREATE EXTENSION pg_stat_statements",
         pg_stat_statements=True),
)}


@dataclass(frozen=True, slots=True)
class TracerCounts:
    statements: int | None = None  # statements the configuration counted
    events: int | None = None  # statements delivered to user space
    lost_events: int | None = None
    check: str = ""  # what was verified about the configuration, for the report


class TracerProcess:
    """One tracer running in the background, its output in files of ``workdir``."""

    def __init__(self, name: str, argv: list[str], workdir: Path, *, ready_mark: str,
                 mark_on_stdout: bool = False) -> None:
        self.name = name
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        self._ready_path = self.stdout_path if mark_on_stdout else self.stderr_path
        self._ready_mark = ready_mark
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                            stderr=stderr)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> float:
        """Seconds from its start until it said its probes are attached."""
        while time.monotonic() - self.started < READY_TIMEOUT_S:
            if self._ready_mark in self._ready_path.read_text(errors="replace"):
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode} before "
                                 f"attaching: {self.stderr_tail()}")
            time.sleep(0.02)
        self.kill()
        raise BenchError(f"{self.name} did not attach within {READY_TIMEOUT_S:.0f} s")

    def cpu_ticks(self) -> int:
        cpu = read_process_cpu(self.pid)
        if cpu is None:
            raise BenchError(f"{self.name} exited during the run: {self.stderr_tail()}")
        return cpu.total_ticks

    def peak_rss_kib(self) -> int | None:
        return peak_rss_kib(self.pid)

    def stop(self) -> None:
        """SIGINT (a tracer prints its summary then) and wait; an error if it fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"{self.name} did not stop within {STOP_TIMEOUT_S:.0f} s") from None
        if self.process.returncode != 0:
            raise BenchError(f"{self.name} exited with {self.process.returncode}: "
                             f"{self.stderr_tail()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stderr_tail(self) -> str:
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(nothing on stderr)"

    def summary(self) -> dict:
        """The last JSON summary dbprobe printed on stdout."""
        for line in reversed(_tail_lines(self.stdout_path)):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "summary":
                return record
        raise BenchError(f"{self.name} printed no summary: {self.stderr_tail()}")


def _tail_lines(path: Path) -> list[str]:
    with open(path, "rb") as stream:
        stream.seek(0, 2)
        stream.seek(max(stream.tell() - SUMMARY_TAIL_BYTES, 0))
        return stream.read().decode(errors="replace").splitlines()


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
    """dbprobe commands, each its own process; the first is ``slow``, whose summary
    counts the statements."""

    def _counts(self) -> TracerCounts:
        summaries = [process.summary() for process in self.processes]
        slow = summaries[0]
        return TracerCounts(statements=slow["statements"], events=slow["slow"],
                            lost_events=sum(summary["lost_events"] for summary in summaries))


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


def dbprobe_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dbprobe", *args]


def attach(mode: Mode, server: BenchServer, protocol: str, workdir: Path) -> Attached:
    """Attach ``mode`` to the server; the server must already be in the mode's state."""
    return _ATTACHERS[mode.key](server, protocol, workdir)


def _nothing(server: BenchServer, protocol: str, workdir: Path) -> Attached:
    return Attached([])


def _dbprobe(*commands: list[str]) -> Callable[[BenchServer, str, Path], Attached]:
    def start(server: BenchServer, protocol: str, workdir: Path) -> Attached:
        processes: list[TracerProcess] = []
        try:
            for command in commands:
                processes.append(TracerProcess(
                    f"dbprobe-{command[0]}", dbprobe_argv(*command, "-p", str(server.pid)),
                    workdir, ready_mark=ATTACHED_MARK))
        except BaseException:
            for process in processes:
                process.kill()
            raise
        return DbprobeAttached(processes)
    return start


def _bpftrace(server: BenchServer, protocol: str, workdir: Path) -> Attached:
    script = bpftrace.reference_script(str(server.binary), protocol)
    process = TracerProcess("bpftrace", ["bpftrace", "-e", script], workdir,
                            ready_mark=bpftrace.READY_LINE, mark_on_stdout=True)
    return BpftraceAttached(process, server, bpftrace.REFERENCE_PROBES[protocol][0])


def _semaphore_check(server: BenchServer, probe: str) -> str:
    """Whether the tracer enabled the probe's semaphore, as the postmaster sees it."""
    offset = semaphore_file_offset(server.binary, bpftrace.USDT_PROVIDER, probe)
    if offset is None:
        return f"{probe} has no semaphore"
    value = semaphore_value(server.pid, server.binary, offset)
    return f"{probe} semaphore {'set' if value else 'NOT set'} ({value}) in the postmaster"


def _pg_stat_statements(server: BenchServer, protocol: str, workdir: Path) -> Attached:
    return PgStatStatementsAttached(server)


_ATTACHERS: dict[str, Callable[[BenchServer, str, Path], Attached]] = {
    "baseline": _nothing,
    "slow": _dbprobe(["slow", "--threshold", "100ms", "--json"]),
    "slow-all": _dbprobe(["slow", "--threshold", "0", "--json"]),
    "three": _dbprobe(["slow", "--threshold", "100ms", "--json"], ["locks", "--json"],
                      ["txn", "--threshold", "100ms", "--json"]),
    "bpftrace": _bpftrace,
    "pgss": _pg_stat_statements,
}
