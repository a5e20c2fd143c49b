"""Running ``dbprobe agent`` and a real Prometheus for the tests, and reading what they say.

The agent runs as a user would run it, ``python -m dbprobe agent --config FILE``, in the
background for a whole test module; its metrics are read over HTTP (parsed with
prometheus_client's own parser) and its events from its events file. Prometheus is the
distribution's binary, started with a generated configuration that scrapes the agent every
second, listening on 127.0.0.1 only, its storage in a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from dbprobe.demo.server import PostgresLayout, installed_postgres_bindir

REPOSITORY = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"serving metrics on http://(?P<address>[^/\s]+)/metrics")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 120.0  # it may be compiling a program when asked to stop


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.25):
    """The first true value of condition(), or AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g} s: {what}")
        time.sleep(every)


# -- the agent -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class AgentProcess:
    """``python -m dbprobe ARGS`` (the agent) in the background; stderr followed live.
    `config` is the file it reads, which a test may rewrite before a SIGHUP."""

    def __init__(self, args: list[str], config: Path | None = None):
        self.config = config
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dbprobe", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPOSITORY)
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._readers = [threading.Thread(target=self._follow, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stderr, self._stderr),
                                               (self.process.stdout, self._stdout))]
        for reader in self._readers:
            reader.start()
        found = wait_for(lambda: self.process.poll() is not None or LISTENING.search(self.stderr),
                         START_TIMEOUT_S, f"the agent did not start serving:\n{self.stderr}")
        if self.process.poll() is not None:
            for reader in self._readers:
                reader.join(5)
            raise AssertionError(f"the agent exited with {self.process.returncode}:\n{self.stderr}")
        self.address = found.group("address")

    @staticmethod
    def _follow(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as response:
            return response.read().decode()

    def samples(self, name: str, **labels: str) -> list[Sample]:
        """The samples named `name` whose labels include `labels`."""
        found = []
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    found.append(Sample(sample.name, dict(sample.labels), sample.value))
        return found

    def value(self, name: str, **labels: str) -> float:
        """The sum of the matching samples (0 when there is none)."""
        return sum(sample.value for sample in self.samples(name, **labels))

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        finally:
            for reader in self._readers:
                reader.join(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- Prometheus ----------------------------------------------------------------------------

class Prometheus:
    """The distribution's Prometheus, scraping `targets` every second."""

    def __init__(self, workdir: Path, targets: list[str]):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: make setup installs Debian's package"
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: dbprobe\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(target) for target in targets)}]\n")
        (workdir / "data").mkdir()
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._ready, 60, f"Prometheus did not become ready: {self.log.read_text()[-2000:]}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expression: str, at: float | None = None) -> list[dict]:
        """The result vector of an instant query (each {"metric": {...}, "value": [t, "v"]})."""
        parameters = {"query": expression}
        if at is not None:
            parameters["time"] = f"{at:.3f}"
        url = f"http://127.0.0.1:{self.port}/api/v1/query?{urllib.parse.urlencode(parameters)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"Prometheus refused {expression!r}: {error.read().decode()}") from None
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, expression: str, at: float | None = None) -> float | None:
        """The single value of `expression`, None when it has no data."""
        result = self.query(expression, at)
        if not result:
            return None
        assert len(result) == 1, f"{expression} gave {len(result)} series: {result}"
        return float(result[0]["value"][1])

    def targets_up(self) -> bool:
        return self.scalar("min(up)") == 1.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- server trees --------------------------------------------------------------------------

def copy_postgres_tree(dest: Path) -> Path:
    """A copy of the installed PostgreSQL (USDT notes kept) in `dest`, laid out as installed:
    programs copied, share and module directories linked. Its postgres is another file (a
    new inode) with the same build. The new bindir."""
    source = PostgresLayout.of(installed_postgres_bindir())
    bindir = dest / source.bindir.relative_to(source.prefix)
    shutil.copytree(source.bindir, bindir, symlinks=True)
    for original in (source.sharedir, source.pkglibdir):
        linked = dest / original.relative_to(source.prefix)
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to(original, target_is_directory=True)
    for directory, _, files in os.walk(dest):
        os.chmod(directory, 0o755)  # the postgres OS user runs programs from it
    return bindir


def replace_file_with_copy(path: Path) -> None:
    """What a package upgrade does: a new file (a new inode) renamed over the old one."""
    fresh = path.with_name(path.name + ".new")
    shutil.copy2(path, fresh)
    os.replace(fresh, path)


def uprobe_events_of(pid: int) -> list[str]:
    """The tracefs uprobe events dbprobe process `pid` defined (named dbprobe_<pid>_<n>):
    libbcc's fallback where the kernel cannot create a uprobe with perf_event_open alone."""
    text = Path("/sys/kernel/tracing/uprobe_events").read_text()
    return [line for line in text.splitlines() if f"dbprobe_{pid}_" in line]


def perf_event_fds(pid: int) -> int:
    """How many perf events process `pid` holds open: one per uprobe it attached."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:[perf_event]"
        except OSError:
            pass
    return count
