"""The dbprobe under test, frozen when the benchmark starts.

A full benchmark runs for half an hour. The tracers it starts all run a copy of dbprobe
(the package and its probes/) taken at the start, so that edits to the working tree in
the meantime do not mix two versions into one set of results.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dbprobe
from bench.errors import BenchError
from dbprobe.recipes.load import probes_dir

REPOSITORY = Path(__file__).resolve().parents[1]  # holds bench/, for helpers run as modules


@dataclass(frozen=True, slots=True)
class DbprobeSnapshot:
    root: Path  # holds dbprobe/ and probes/
    revision: str  # what was copied: a git description, or the package version

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dbprobe", *args]

    def module_argv(self, module: str, *args: str) -> list[str]:
        """A module of bench/ run with the snapshot's dbprobe."""
        return [sys.executable, "-m", module, *args]

    def popen_kwargs(self) -> dict[str, Any]:
        """Where and how to start these: ``python -m`` puts the working directory first on
        sys.path (so not the repository's), then PYTHONPATH, then the installed dbprobe."""
        return {"cwd": self.root,
                "env": {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.root), str(REPOSITORY)])}}


    def planned_probes(self, pid: int) -> dict[str, tuple[str, ...]]:
        """The probes this dbprobe attaches to a PostgreSQL server for each report family,
        named as bpftrace names them."""
        done = subprocess.run(self.module_argv("bench.plan_probes", str(pid)),
                              capture_output=True, text=True, **self.popen_kwargs())
        if done.returncode != 0:
            last_words = (done.stderr.strip().splitlines() or ["(no error output)"])[-1]
            raise BenchError(f"cannot list dbprobe's probes: {last_words}")
        return {family: tuple(probes) for family, probes in json.loads(done.stdout).items()}


def take_snapshot(dest: Path) -> DbprobeSnapshot:
    package = Path(dbprobe.__file__).resolve().parent
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(package, dest / "dbprobe", ignore=ignored)
    shutil.copytree(probes_dir(), dest / "probes", ignore=ignored)
    return DbprobeSnapshot(root=dest, revision=_revision(package.parent))


def take_revision_snapshot(dest: Path, revision: str) -> DbprobeSnapshot:
    """dbprobe/ and probes/ as a git revision of this repository has them: what a change is
    measured against, in the same run."""
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", "--format=tar", revision,
                              "dbprobe", "probes"], capture_output=True, timeout=60)
    if archive.returncode != 0:
        last_words = (archive.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise BenchError(f"cannot take revision {revision!r} of dbprobe: {last_words}")
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        members = [member for member in tar.getmembers() if member.isdir() or member.isfile()]
        if any(Path(member.name).is_absolute() or ".." in Path(member.name).parts
               for member in members):
            raise BenchError(f"revision {revision!r}: the archive names files outside its tree")
        tar.extractall(dest, members=members)
    described = subprocess.run(["git", "-C", str(REPOSITORY), "describe", "--always", revision],
                               capture_output=True, text=True, timeout=10)
    label = described.stdout.strip() if described.returncode == 0 else revision
    return DbprobeSnapshot(root=dest, revision=f"git {label} ({revision})")


def _revision(source: Path) -> str:
    try:
        described = subprocess.run(["git", "-C", str(source), "describe", "--always", "--dirty"],
                                   capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        described = None
    if described is not None and described.returncode == 0 and described.stdout.strip():
        return f"git {described.stdout.strip()}"
    return f"version {getattr(dbprobe, '__version__', 'unknown')}"
