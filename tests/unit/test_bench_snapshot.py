"""The benchmark's snapshots of dbprobe: the working tree, and a git revision to compare with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.snapshot import REPOSITORY, take_revision_snapshot

HAS_HISTORY = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"],
                             capture_output=True).returncode == 0


@pytest.mark.skipif(not HAS_HISTORY, reason="not a git checkout")
def test_a_revision_snapshot_holds_that_revisions_package_and_probes(tmp_path: Path) -> None:
    snapshot = take_revision_snapshot(tmp_path / "ref", "HEAD")
    head = subprocess.run(["git", "-C", str(REPOSITORY), "show", "HEAD:probes/postgresql.toml"],
                          capture_output=True, text=True, check=True).stdout
    assert (snapshot.root / "probes" / "postgresql.toml").read_text() == head
    assert (snapshot.root / "dbprobe" / "__main__.py").is_file()
    assert not (snapshot.root / "tests").exists()
    assert snapshot.revision.startswith("git ") and snapshot.revision.endswith("(HEAD)")
    assert snapshot.popen_kwargs()["cwd"] == snapshot.root


@pytest.mark.skipif(not HAS_HISTORY, reason="not a git checkout")
def test_an_unknown_revision_is_a_bench_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="cannot take revision 'no-such-revision-x'"):
        take_revision_snapshot(tmp_path / "ref", "no-such-revision-x")
    assert not (tmp_path / "ref").exists()
