"""A Docker engine for a test: the one already running, or a private dockerd started for it.

A private engine keeps everything under one temporary directory (data root, exec root,
socket, pidfile, log), uses no bridge and touches no iptables rules (the tests use the
host's network), and on ``stop()`` leaves nothing behind: its process and the containerd it
manages end, the mounts it made are gone, and so is the directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
INFO_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 30


class EngineUnavailable(Exception):
    """No Docker engine runs here and none could be started; the message says why."""


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class DockerEngine:
    """The docker CLI bound to one engine; ``environment`` is what a child process needs."""

    docker: str
    environment: dict[str, str]
    started_here: bool = False
    _root: Path | None = field(default=None, repr=False)
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    def connect_or_start(cls) -> "DockerEngine":
        docker = shutil.which("docker")
        if docker is None:
            raise EngineUnavailable("no docker command (apt-get install docker.io)")
        existing = cls(docker, dict(os.environ))
        if existing.responds():
            return existing
        return cls._start_private(docker)

    @classmethod
    def _start_private(cls, docker: str) -> "DockerEngine":
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise EngineUnavailable("no Docker engine running and no dockerd (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise EngineUnavailable("no Docker engine running, and starting one needs root")
        root = Path(tempfile.mkdtemp(prefix="dbprobe-docker-"))
        log = (root / "dockerd.log").open("wb")
        process = subprocess.Popen(
            [dockerd, f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
             f"--pidfile={root / 'dockerd.pid'}", f"--host=unix://{root / 'docker.sock'}",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        environment = {**os.environ, "DOCKER_HOST": f"unix://{root / 'docker.sock'}"}
        engine = cls(docker, environment, started_here=True, _root=root, _process=process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not engine.responds():
            if process.poll() is not None or time.monotonic() > deadline:
                why = (f"exited with {process.returncode}" if process.poll() is not None
                       else f"did not answer within {START_TIMEOUT_S:g} s")
                engine.stop()
                raise EngineUnavailable(f"dockerd {why}:\n{_tail(root / 'dockerd.log')}")
            time.sleep(0.5)
        return engine

    def responds(self) -> bool:
        try:
            return subprocess.run([self.docker, "info"], env=self.environment, capture_output=True,
                                  timeout=INFO_TIMEOUT_S).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def run(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run([self.docker, *args], env=self.environment, capture_output=True,
                                   text=True, timeout=timeout)
        if check and completed.returncode != 0:
            output = "\n".join((completed.stdout + completed.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise AssertionError(f"docker {' '.join(args[:2])} failed ({completed.returncode}):\n{output}")
        return completed

    def lines(self, *args: str) -> list[str]:
        return [line for line in self.run(*args).stdout.splitlines() if line.strip()]

    # -- images ---------------------------------------------------------------------------

    def image_id(self, reference: str) -> str | None:
        found = self.run("image", "inspect", "--format", "{{.Id}}", reference, check=False)
        return found.stdout.strip() if found.returncode == 0 else None

    def remove_image_and_descendants(self, image_id: str) -> None:
        """Remove an image and every image built on it (tagged or not: the layers of
        builds, finished or failed), children first."""
        parents = {}
        every_image = self.lines("images", "--all", "--quiet", "--no-trunc")
        if not every_image:
            return
        for line in self.lines("image", "inspect", "--format", "{{.Id}} {{.Parent}}", *set(every_image)):
            child, _, parent = line.partition(" ")
            parents[child] = parent.strip()
        doomed = [image for image in parents if self._descends_from(image, image_id, parents)]
        doomed.sort(key=lambda image: self._depth(image, parents), reverse=True)
        for image in doomed:
            self.run("rmi", "--force", "--no-prune", image, check=False)

    @staticmethod
    def _descends_from(image: str, ancestor: str, parents: dict[str, str]) -> bool:
        while image:
            if image == ancestor:
                return True
            image = parents.get(image, "")
        return False

    @staticmethod
    def _depth(image: str, parents: dict[str, str]) -> int:
        depth = 0
        while parents.get(image):
            image, depth = parents[image], depth + 1
        return depth

    # -- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop a private engine and remove all it left; nothing to do for an existing one."""
        if not self.started_here or self._root is None:
            return
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_TIMEOUT_S)
        self._end_managed_containerd(self._root)
        for mount_point in self.mounts():
            subprocess.run(["umount", "--lazy", mount_point], capture_output=True)
        left = self.mounts()
        if not left:
            shutil.rmtree(self._root, ignore_errors=True)
        if left:
            raise AssertionError(f"mounts left under {self._root}: {left}")

    @staticmethod
    def _end_managed_containerd(root: Path) -> None:
        """dockerd ends the containerd it started; this covers a dockerd that was killed."""
        pidfile = root / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            if Path(f"/proc/{pid}/exe").resolve().name == "containerd":
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def mounts(self) -> list[str]:
        """Mount points under a private engine's directory, deepest first."""
        if self._root is None:
            return []
        prefix = str(self._root) + "/"
        with open("/proc/self/mountinfo") as mountinfo:
            points = [line.split()[4] for line in mountinfo]
        return sorted({point for point in points if point.startswith(prefix)},
                      key=lambda point: point.count("/"), reverse=True)
