"""Where the output goes and how dbprobe stops: write errors, hostile text, signals, early
interrupts and values that used to get through. Each is one line on stderr and a clean exit,
never a traceback, with nothing of dbprobe's left attached."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.tracing import DbprobeRun, Finished

REPOSITORY = Path(__file__).resolve().parents[2]
UPROBE_EVENTS = Path("/sys/kernel/tracing/uprobe_events")


def leftover_uprobes(pid: int) -> list[str]:
    """Entries a dbprobe process (by pid) created in tracefs and did not remove."""
    return [line for line in UPROBE_EVENTS.read_text().splitlines() if f"dbprobe_{pid}_" in line]


def run_with_stdout(stdout_spec: str, *args: str, timeout: float = 90) -> tuple[Finished, int]:
    """Run dbprobe through the shell with its stdout redirected as `stdout_spec` says
    (`>/dev/full`, `>&-`); (what it did, its pid)."""
    command = " ".join([sys.executable, "-m", "dbprobe", *args])
    process = subprocess.Popen(["sh", "-c", f"echo $$; exec {command} {stdout_spec}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPOSITORY)
    pid = int(process.stdout.readline())
    stdout, stderr = process.communicate(timeout=timeout)
    return Finished(process.returncode, stdout, stderr), pid


def assert_one_line_error(finished: Finished, *fragments: str) -> None:
    assert finished.returncode != 0, finished.stderr
    assert "Traceback" not in finished.stderr and "Exception ignored" not in finished.stderr, finished.stderr
    errors = [line for line in finished.stderr.splitlines() if line.startswith("dbprobe: error: ")]
    assert len(errors) == 1, finished.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("command", [["slow", "--duration", "2"], ["locks", "--duration", "2"],
                                     ["txn", "--duration", "2"], ["list"], ["doctor"]])
def test_a_full_disk_on_stdout_is_one_line_and_a_clean_detach(command, pg_server, require_root_bpf):
    finished, pid = run_with_stdout(">/dev/full", *command)
    assert_one_line_error(finished, "cannot write the report to stdout", "No space left on device")
    assert leftover_uprobes(pid) == []


@pytest.mark.parametrize("command", [["slow", "--duration", "2"], ["list"], ["doctor"]])
def test_a_closed_stdout_is_refused_before_anything_is_attached(command, pg_server, require_root_bpf):
    finished, pid = run_with_stdout(">&-", *command)
    assert_one_line_error(finished, "stdout is closed")
    assert "probes attached" not in finished.stderr
    assert leftover_uprobes(pid) == []


def test_control_characters_from_a_client_never_reach_the_terminal(pg_server, require_root_bpf):
    run = DbprobeRun(["slow", "--threshold", "0", "-p", str(pg_server.pid)])
    run.wait_attached()
    pg_server.psql('select 1 as "\x1b[31mRED\x07\rX";')
    finished = run.finish(settle_s=0.5)
    assert "\x1b" not in finished.stdout and "\x07" not in finished.stdout
    assert "\r" not in finished.stdout
    assert '"\\x1b[31mRED\\x07\\x0dX"' in finished.stdout


def test_txn_lines_escape_control_characters_too(pg_server, require_root_bpf):
    run = DbprobeRun(["txn", "-p", str(pg_server.pid)])
    run.wait_attached()
    pg_server.psql('begin; select 2 as "\x1b]0;owned\x07"; commit;')
    finished = run.finish(settle_s=0.5)
    assert "\x1b" not in finished.stdout and "\x07" not in finished.stdout
    assert "\\x1b]0;owned\\x07" in finished.stdout


def test_an_ignored_sighup_stays_ignored_as_under_nohup(pg_server, require_root_bpf):
    process = subprocess.Popen(
        [sys.executable, "-m", "dbprobe", "slow", "--json", "-p", str(pg_server.pid)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPOSITORY,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60
        while "probes attached" not in _stderr_so_far(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert process.poll() is None, "SIGHUP stopped dbprobe although it was ignored"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert '"event": "summary"' in stdout
    assert leftover_uprobes(process.pid) == []


_stderr_seen: dict[int, str] = {}


def _stderr_so_far(process: subprocess.Popen) -> str:
    """What the process wrote to stderr up to now, read without blocking."""
    import os
    import select

    seen = _stderr_seen.get(process.pid, "")
    while select.select([process.stderr], [], [], 0)[0]:
        chunk = os.read(process.stderr.fileno(), 65536).decode(errors="replace")
        if not chunk:
            break
        seen += chunk
    _stderr_seen[process.pid] = seen
    return seen


# From the moment the interpreter is up (tens of milliseconds; an interrupt before that is
# the interpreter's own), through the imports, the compile and the attach.
@pytest.mark.parametrize("delay_s", [0.15, 0.25, 0.4, 0.6, 0.9])
def test_an_interrupt_at_any_moment_is_quiet(delay_s, pg_server, require_root_bpf):
    process = subprocess.Popen([sys.executable, "-m", "dbprobe", "slow", "-p", str(pg_server.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPOSITORY)
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert process.returncode in (0, 130, -signal.SIGINT), stderr
    assert leftover_uprobes(process.pid) == []


def run_dbprobe(*args: str) -> Finished:
    completed = subprocess.run([sys.executable, "-m", "dbprobe", *args], capture_output=True,
                               text=True, timeout=60, cwd=REPOSITORY)
    return Finished(completed.returncode, completed.stdout, completed.stderr)


@pytest.mark.parametrize("command", ["slow", "locks", "txn"])
def test_a_threshold_longer_than_a_day_is_refused(command, require_root_bpf):
    finished = run_dbprobe(command, "--threshold", "99999999999999h")
    assert finished.returncode == 2
    assert_one_line_error(finished, "--threshold", "longer than a day")


@pytest.mark.parametrize("clients", ["-1", "0", "1", "many"])
def test_demo_needs_at_least_two_clients(clients):
    finished = run_dbprobe("demo", "--clients", clients)
    assert finished.returncode == 2
    assert_one_line_error(finished, "--clients")


@pytest.mark.parametrize("argv", [["--foo"], ["--foo", "slow"], ["-x", "list"]])
def test_an_unknown_option_before_the_command_is_named(argv):
    finished = run_dbprobe(*argv)
    assert finished.returncode == 2
    assert_one_line_error(finished, f"unknown option {argv[0]}")
