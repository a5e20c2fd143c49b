"""A Docker Compose project driven from a test: ``docker compose`` (v2) or ``docker-compose`` (v1).

The project runs from a staged copy of the files the images are built from, laid out as in
the repository (what a .dockerignore would keep), so the build context is small and holds
nothing of the work tree but those files.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.docker_engine import DockerEngine

# What docker/Dockerfile and docker/docker-compose.yml use from the repository.
CONTEXT_ENTRIES = ("pyproject.toml", "README.md", "dbprobe", "probes", "docker")
BUILD_TIMEOUT_S = 1200.0
OUTPUT_TAIL_LINES = 40


def stage_context(repository: Path, destination: Path) -> Path:
    destination.mkdir(parents=True)
    for entry in CONTEXT_ENTRIES:
        source = repository / entry
        if source.is_dir():
            shutil.copytree(source, destination / entry,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, destination / entry)
    return destination


def compose_command(engine: DockerEngine) -> list[str] | None:
    """The compose command that works with this engine, the plugin first; None if neither."""
    if engine.run("compose", "version", check=False).returncode == 0:
        return [engine.docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@dataclass
class ComposeProject:
    engine: DockerEngine
    command: list[str]
    file: Path
    name: str
    variables: dict[str, str]

    def run(self, *args: str, timeout: float = 300.0, check: bool = True,
            log: Path | None = None) -> subprocess.CompletedProcess:
        environment = {**self.engine.environment, **self.variables}
        argv = [*self.command, "--project-name", self.name, "--file", str(self.file), *args]
        if log is not None:
            with log.open("w") as sink:
                returncode = subprocess.run(argv, env=environment, stdout=sink, stderr=subprocess.STDOUT,
                                            timeout=timeout).returncode
            completed = subprocess.CompletedProcess(argv, returncode, log.read_text(errors="replace"), "")
        else:
            completed = subprocess.run(argv, env=environment, capture_output=True, text=True,
                                       timeout=timeout)
        if check and completed.returncode != 0:
            output = "\n".join((completed.stdout + completed.stderr).splitlines()[-OUTPUT_TAIL_LINES:])
            raise AssertionError(f"{' '.join(args[:2])} failed ({completed.returncode}):\n{output}")
        return completed

    def container_id(self, service: str) -> str:
        ids = self.run("ps", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"service {service}: containers {ids}"
        return ids[0]

    def logs(self, service: str) -> tuple[str, str]:
        """A service's (stdout, stderr), kept apart as the container wrote them."""
        completed = self.engine.run("logs", self.container_id(service))
        return completed.stdout, completed.stderr

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes of the project the engine still has."""
        label = f"label=com.docker.compose.project={self.name}"
        return [f"{kind} {item}"
                for kind, listing in (("container", ["ps", "--all"]), ("network", ["network", "ls"]),
                                      ("volume", ["volume", "ls"]))
                for item in self.engine.lines(*listing, "--quiet", "--filter", label)]
