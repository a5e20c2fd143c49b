"""``dbprobe agent`` refuses what it cannot use in one line, exit status 2, before attaching."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tracing import run_dbprobe


def refused(*args: str) -> str:
    finished = run_dbprobe("agent", *args, timeout=60)
    assert finished.returncode == 2, (finished.returncode, finished.stderr)
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in finished.stderr, finished.stderr
    assert lines[0].startswith("dbprobe: error: "), lines[0]
    return lines[0]


def test_a_configuration_mistake_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[thresholds]\nquery = "quick"\n')
    line = refused("--config", str(config))
    assert line == (f"dbprobe: error: {config}: thresholds.query: 'quick' is not a duration "
                    f"(examples: 50ms, 1s, 250us, 2m)")
    config.write_text("top_k = 10\nlisten = 9187\n")
    assert refused("--config", str(config)).endswith("listen: must be a string, not a number")


def test_a_missing_configuration_file(tmp_path: Path) -> None:
    assert refused("--config", str(tmp_path / "none.toml")).endswith("none.toml: no such file")


@pytest.mark.parametrize("listen", ["9187", "localhost:port", "::1:9187"])
def test_an_unusable_listen_flag(listen: str) -> None:
    assert refused("--listen", listen).startswith(f"dbprobe: error: --listen: '{listen}'")


def test_an_events_file_in_a_missing_directory(tmp_path: Path) -> None:
    line = refused("--events", str(tmp_path / "no" / "events.jsonl"))
    assert line.endswith("does not exist")


def test_a_port_already_taken(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'binaries = ["{tmp_path}/*"]\nwatch = []\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused("--config", str(config), "--listen", f"127.0.0.1:{port}")
    assert line == f"dbprobe: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_not_root_is_one_line_at_start() -> None:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user (CI runs as root)")
    completed = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-m", "dbprobe", "agent", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("dbprobe: error: ") and "root" in line, line
