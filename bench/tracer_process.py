"""A tracer running in the background beside the benchmark, its output in files."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.procstat import peak_rss_kib, read_process_cpu

READY_TIMEOUT_S = 180.0  # three BPF compilations at once on a small machine take a while
STOP_TIMEOUT_S = 120.0
SUMMARY_TAIL_BYTES = 1 << 20


class TracerProcess:
    """One tracer running in the background, its output in files of ``workdir``."""

    def __init__(self, name: str, argv: list[str], workdir: Path, *, ready_mark: str,
                 mark_on_stdout: bool = False, **popen_kw: Any) -> None:
        self.name = name
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        self._ready_path = self.stdout_path if mark_on_stdout else self.stderr_path
        self._ready_mark = ready_mark
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                            stderr=stderr, **popen_kw)

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

    def summary(self, has: str | None = None) -> dict:
        """The last JSON summary dbprobe printed on stdout (the last with the field `has`)."""
        for line in reversed(_tail_lines(self.stdout_path)):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if (isinstance(record, dict) and record.get("event") == "summary"
                    and (has is None or has in record)):
                return record
        raise BenchError(f"{self.name} printed no summary: {self.stderr_tail()}")


def _tail_lines(path: Path) -> list[str]:
    with open(path, "rb") as stream:
        stream.seek(0, 2)
        stream.seek(max(stream.tell() - SUMMARY_TAIL_BYTES, 0))
        return stream.read().decode(errors="replace").splitlines()
