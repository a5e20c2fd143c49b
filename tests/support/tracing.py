"""Running the real ``dbprobe`` command in the background, as a user would, and reading it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ATTACH_TIMEOUT_S = 60.0
ATTACHED_MARK = "probes attached"
UPROBE_EVENTS_FILES = (Path("/sys/kernel/tracing/uprobe_events"),
                       Path("/sys/kernel/debug/tracing/uprobe_events"))

# Every run started, so a failing test cannot leave a tracer attached (conftest kills them).
STARTED_RUNS: list["DbprobeRun"] = []
# The pid of every dbprobe process started, running or not: the uprobe events BCC makes
# through tracefs are named after it (dbprobe_<pid>_<n>_bcc_<pid>).
STARTED_PIDS: set[int] = set()


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
        STARTED_PIDS.add(self.process.pid)

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


def kill_leftover_runs() -> None:
    while STARTED_RUNS:
        STARTED_RUNS.pop().kill()


def run_dbprobe(*args: str, timeout: float = 60.0) -> Finished:
    """Run dbprobe to completion (for commands and errors that end by themselves)."""
    with subprocess.Popen([sys.executable, "-m", "dbprobe", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[2]) as process:
        STARTED_PIDS.add(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    return Finished(process.returncode, stdout, stderr)


def assert_one_line_error(finished: Finished, *fragments: str) -> None:
    """Exit status 2 and one line on stderr holding every fragment: dbprobe's way to say no."""
    assert finished.returncode == 2, (finished.stdout, finished.stderr)
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dbprobe: error: "), finished.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def uprobe_events_left(pids: set[int] | None = None) -> list[str]:
    """The tracefs uprobe events still defined that dbprobe processes of these pids made.

    By default: every dbprobe the tests started, and the test process itself (tests that
    attach in-process). Events of other processes are not looked at, so tracers run by
    others on the same machine do not count. Empty when tracefs cannot be read.
    """
    owners = (STARTED_PIDS | {os.getpid()}) if pids is None else pids
    prefixes = tuple(f"dbprobe_{pid}_" for pid in owners)
    for path in UPROBE_EVENTS_FILES:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        return [line for line in lines
                if line.split(" ", 1)[0].partition("/")[2].startswith(prefixes)]
    return []


def stale_uprobe_events() -> list[str]:
    """The tracefs uprobe events named after a dbprobe process that no longer exists: what a
    dbprobe that died, or detached badly, left behind."""
    stale = []
    for path in UPROBE_EVENTS_FILES:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            name = line.split(" ", 1)[0].partition("/")[2]
            owner = name.split("_")[1] if name.startswith("dbprobe_") else ""
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                stale.append(name)
        return stale
    return []


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
