"""``dbprobe demo``: the README's first command, for real."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import psutil

from tests.support.tracing import DbprobeRun, run_dbprobe


def _cluster_pid(stderr: str) -> int:
    return int(re.search(r"cluster up, pid (\d+)", stderr).group(1))


def _cluster_dirs() -> set[Path]:
    return set(Path("/tmp").glob("dbprobe-pg-*"))


def test_demo_shows_all_three_reports_and_cleans_up(require_root_bpf):
    before = _cluster_dirs()
    finished = run_dbprobe("demo", "--duration", "12", "--clients", "3", timeout=240)
    assert finished.returncode == 0, finished.stderr
    out = finished.stdout

    # Each slow statement with where its time went: pg_sleep's, in its wait event.
    assert re.search(r"^\[slow\] \S+ +\d+ +postgres +(simple|extended) +\d+\.\d+ \[cpu [^]]*"
                     r"top Timeout:PgSleep [\d.]+ms\] select pg_sleep\(\?\)$", out, re.M)
    assert re.search(r"^\[lock\] .* (waited|WAITING) .* for .*Lock on ", out, re.M)
    assert re.search(r"^\[lock\]     blocker: pid \d+, idle in transaction", out, re.M)
    assert re.search(r"^\[txn\]  .* commit +3 +\d+\.\d begin; update accounts set balance = balance - \? where id = \?; commit$", out, re.M)
    for digest in ("[slow] # Slow-query digest", "[lock] # Lock-wait digest", "[txn]  # Transaction digest"):
        assert digest in out
    # Every statement by class: the fast ones too, in the digest and as top shows them.
    # Each class with where its statements' time went: the sleeps off CPU, the point queries on it.
    assert re.search(r"^\[slow\] +\d+ +[0-9a-f]{16} .*$\n^\[slow\] +\[cpu [^]]*\] select balance from accounts where id = \?$",
                     out, re.M)
    assert re.search(r"^\[slow\] +\[cpu [^]]* other [\d.]+m?s top Timeout:PgSleep [\d.]+m?s\] select pg_sleep\(\?\)$", out, re.M)
    assert re.search(r"^\[top\]  CALLS/S +MS/S +MEAN +P95 +P99 +ERR/S +MOSTLY +DATABASE +QUERY$", out, re.M)
    assert re.search(r"^\[top\] .* other \d+% +postgres +select pg_sleep\(\?\)$", out, re.M)
    assert re.search(r"^\[top\] .* postgres +select balance from accounts where id = \?$", out, re.M)
    assert "of public.accounts" in out  # the demo names relations through its own connection
    assert "workload running" in finished.stderr

    assert not psutil.pid_exists(_cluster_pid(finished.stderr))
    assert _cluster_dirs() <= before  # its temporary directory is gone


def test_ctrl_c_stops_early_with_digests_and_cleans_up(require_root_bpf):
    run = DbprobeRun(["demo", "--duration", "120", "--clients", "2"])
    run.wait_attached(timeout=180)
    time.sleep(3)
    finished = run.stop(signal.SIGINT, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert "[slow] # Slow-query digest" in finished.stdout
    assert not psutil.pid_exists(_cluster_pid(finished.stderr))
    assert "cluster stopped and removed" in finished.stderr


def test_keep_leaves_the_cluster_running(require_root_bpf):
    finished = run_dbprobe("demo", "--duration", "3", "--clients", "2", "--keep", timeout=240)
    assert finished.returncode == 0, finished.stderr
    pid = _cluster_pid(finished.stderr)
    workdir = Path(re.search(r"and remove (\S+)", finished.stderr).group(1))
    try:
        assert psutil.pid_exists(pid)
        assert (workdir / "data" / "PG_VERSION").is_file()
    finally:
        psutil.Process(pid).send_signal(signal.SIGINT)
        psutil.Process(pid).wait(30)
        shutil.rmtree(workdir)
