"""Running the real ``dbprobe`` command in the background, as a user would, and reading it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ATTACH_TIMEOUT_S = 60.0
ATTACHED_MARK = "probes attached"

# Every run started, so a failing test cannot leave a tracer attached (conftest kills them).
STARTED_RUNS: list["DbprobeRun"] = []


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def events(self, kind: str) -> list[dict]:
        return [record for record in self.json_lines() if record.get("event") == kind]


@dataclass
class DbprobeRun:
    """``python -m dbprobe ARGS`` started in the background; stderr is followed live."""

    args: list[str]
    process: subprocess.Popen = field(init=False)
    _stderr: list[str] = field(default_factory=list, init=False)
    _reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dbprobe", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self._reader = threading.Thread(target=self._follow_stderr, daemon=True)
        self._reader.start()
        STARTED_RUNS.append(self)

    def _follow_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_attached(self, timeout: float = ATTACH_TIMEOUT_S) -> float:
        """Seconds until dbprobe said its probes are attached; fails if it exits first."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if ATTACHED_MARK in self.stderr:
                return time.monotonic() - started
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"dbprobe exited with {self.process.returncode} "
                                     f"before attaching:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"dbprobe did not attach within {timeout} s:\n{self.stderr}")

    def stop(self, signal_number: int = signal.SIGINT, timeout: float = 30.0) -> Finished:
        if self.process.poll() is None:
            self.process.send_signal(signal_number)
        return self.wait(timeout)

    def finish(self, settle_s: float = 0.3) -> Finished:
        """SIGTERM once the last events had time to arrive; dbprobe must exit cleanly."""
        time.sleep(settle_s)
        finished = self.stop(signal.SIGTERM)
        assert finished.returncode == 0, finished.stderr
        return finished

    def wait(self, timeout: float = 60.0) -> Finished:
        try:
            stdout = self.process.stdout.read() if self.process.stdout else ""
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            self._reader.join(5)
        return Finished(self.process.returncode, stdout, self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def kill_leftover_runs() -> list[str]:
    """Kill the runs still going; the uprobe entries any of the runs left in tracefs."""
    pids = []
    while STARTED_RUNS:
        run = STARTED_RUNS.pop()
        run.kill()
        pids.append(run.process.pid)
    return dbprobe_uprobe_events(*pids) if pids else []


def run_dbprobe(*args: str, timeout: float = 60.0) -> Finished:
    """Run dbprobe to completion (for commands and errors that end by themselves)."""
    with subprocess.Popen([sys.executable, "-m", "dbprobe", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[2]) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert dbprobe_uprobe_events(process.pid) == [], "dbprobe left uprobe entries in tracefs"
    return Finished(process.returncode, stdout, stderr)


def semaphore_value(pid: int, binary: str, semaphore_vaddr: int) -> int:
    """The USDT semaphore (a u16) of a probe, read from a running process's memory."""
    real = os.path.realpath(binary)
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and os.path.realpath(fields[5]) == real and int(fields[2], 16) == 0:
                base = int(fields[0].split("-")[0], 16)
                break
        else:
            raise AssertionError(f"{binary} is not mapped in pid {pid}")
    with open(f"/proc/{pid}/mem", "rb") as memory:
        memory.seek(base + semaphore_vaddr)
        return int.from_bytes(memory.read(2), "little")


UPROBE_EVENTS = Path("/sys/kernel/tracing/uprobe_events")
# dbprobe names its uprobes dbprobe_<its pid>_<n>; libbcc's tracefs fallback adds _bcc_<pid>.
_DBPROBE_EVENT = re.compile(r"^[pr]:\S*/dbprobe_(?P<pid>\d+)_\d+\S*\s", re.MULTILINE)


def dbprobe_uprobe_events(*pids: int) -> list[str]:
    """The tracefs uprobe entries that dbprobe processes created (those of `pids`, or of any
    dbprobe when none are given): dbprobe leaves none behind, on any path."""
    text = UPROBE_EVENTS.read_text() if UPROBE_EVENTS.exists() else ""
    wanted = {str(pid) for pid in pids}
    return [line for line in text.splitlines()
            if (match := _DBPROBE_EVENT.match(line + "\n")) and (not wanted or match["pid"] in wanted)]
