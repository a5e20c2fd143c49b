"""``dbprobe top`` against a real PostgreSQL with real BPF: full screen in a real terminal
(tmux), and as plain tables when stdout is a pipe."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from tests.support.terminal import TmuxSession, process_alive
from tests.support.tracing import (STARTED_PIDS, DbprobeRun, assert_one_line_error,
                                   run_dbprobe, uprobe_events_left)

ATTACH_TIMEOUT_S = 120.0  # compiling on a busy two-core machine
DATABASE = "shop"


class Workload:
    """In a thread until stopped, in the database `shop`: a slow class with few calls, a fast
    one with many (extended protocol), and a statement with a literal (simple protocol)."""

    def __init__(self, server):
        self._server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.rounds = 0

    def _run(self) -> None:
        with self._server.connect(dbname=DATABASE) as connection:
            while not self._stop.is_set():
                connection.execute("select pg_sleep(%s)", (0.02,))
                for number in range(50):
                    connection.execute("select %s::int", (number,))
                connection.execute("select 'secret-value' as literal")
                self.rounds += 1
                time.sleep(0.05)

    def __enter__(self) -> "Workload":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def server(pg_server, require_root_bpf):
    if not pg_server.psql(f"select 1 from pg_database where datname = '{DATABASE}'").strip():
        pg_server.psql(f"create database {DATABASE}")
    return pg_server


def _row(text: str, query: str) -> list[str]:
    """The cells of the screen's row of a class, by its query."""
    for line in text.split("\n"):
        if line.rstrip().endswith(query):
            return line.split(maxsplit=7)
    raise AssertionError(f"no row for {query}:\n{text}")


def _first_row(text: str) -> str:
    lines = text.split("\n")
    return lines[next(n for n, line in enumerate(lines) if line.startswith("CALLS/S")) + 1]


@pytest.mark.parametrize("stop_key", ["q", "C-c"])
def test_top_in_a_terminal_shows_the_classes_sorts_and_stops(server, stop_key) -> None:
    command = [sys.executable, "-m", "dbprobe", "top", "-p", str(server.pid), "--interval", "0.5"]
    with TmuxSession(command, width=120, height=20) as session:
        STARTED_PIDS.add(session.pid)
        session.wait_for(lambda t: "CALLS/S" in t, timeout=ATTACH_TIMEOUT_S)  # attached
        with Workload(server):
            text = session.wait_for(lambda t: "select pg_sleep(?)" in t and "select ?::int" in t
                                    and "select ? as literal" in t)
            sleep_row, int_row = _row(text, "select pg_sleep(?)"), _row(text, "select ?::int")
            assert sleep_row[6] == DATABASE and int_row[6] == DATABASE
            assert 15 <= float(sleep_row[4].removesuffix("ms")) <= 500  # its p99, in ms
            assert float(int_row[0].replace(",", "")) > float(sleep_row[0])  # calls/s
            assert "secret-value" not in text
            assert "select pg_sleep(?)" in _first_row(text)  # by total time: 20 ms each

            session.press("3")
            text = session.wait_for(lambda t: "sorted by CALLS/S (calls)" in t
                                    and "select ?::int" in _first_row(t))
        session.press(stop_key)
        assert session.wait_exit() == 0
        assert not process_alive(session.pid)
        assert uprobe_events_left({session.pid}) == []
        assert session.modes() == {"alternate_on": False, "cursor_flag": True, "keypad_flag": False}


def test_top_to_a_pipe_prints_one_plain_table_per_interval(server) -> None:
    run = DbprobeRun(["top", "-p", str(server.pid), "--interval", "0.5", "--duration", "4"])
    run.wait_attached(ATTACH_TIMEOUT_S)
    with Workload(server) as workload:
        finished = run.wait(60)
    assert finished.returncode == 0, finished.stderr
    assert workload.rounds > 0
    assert "\x1b" not in finished.stdout
    tables = [block for block in finished.stdout.split("\n\n") if block.strip()]
    assert len(tables) >= 7, finished.stdout  # 4 s of 0.5 s intervals, the last one cut short
    for table in tables:
        lines = table.split("\n")
        assert lines[0].startswith("# ") and "statements/s" in lines[0]
        assert lines[1].startswith("CALLS/S    MS/S   MEAN    P95    P99 ERR/S DATABASE QUERY")
    busy = [table for table in tables if "select pg_sleep(?)" in table]
    assert busy, finished.stdout
    assert _row(busy[-1], "select ?::int")[6] == DATABASE
    assert "secret-value" not in finished.stdout


def test_top_with_the_breakdown_says_where_each_class_time_went(server) -> None:
    run = DbprobeRun(["top", "-p", str(server.pid), "--interval", "1", "--duration", "3", "--breakdown"])
    run.wait_attached(ATTACH_TIMEOUT_S)
    with Workload(server):
        finished = run.wait(60)
    assert finished.returncode == 0, finished.stderr
    busy = [table for table in finished.stdout.split("\n\n") if "select pg_sleep(?)" in table]
    assert busy, finished.stdout
    header = busy[-1].split("\n")[1]
    assert header.startswith("CALLS/S    MS/S   MEAN    P95    P99 ERR/S MOSTLY      DATABASE QUERY")
    # The sleep's 20 ms are off CPU in no wait event of I/O, a lock or the client: other.
    part, share = " ".join(_row(busy[-1], "select pg_sleep(?)")[6:]).split()[:2]
    assert part == "other" and int(share.rstrip("%")) >= 80, busy[-1]


def test_top_shows_literals_when_asked(server) -> None:
    run = DbprobeRun(["top", "-p", str(server.pid), "--interval", "0.5", "--duration", "2",
                      "--show-literals"])
    run.wait_attached(ATTACH_TIMEOUT_S)
    with Workload(server):
        finished = run.wait(60)
    assert finished.returncode == 0, finished.stderr
    assert "select 'secret-value' as literal" in finished.stdout


@pytest.mark.parametrize(("option", "fragment"), [(["--sort", "fastest"], "--sort"),
                                                  (["--interval", "0"], "more than zero"),
                                                  (["--duration", "soon"], "'soon'")])
def test_bad_options_are_one_line_errors(option, fragment) -> None:
    assert_one_line_error(run_dbprobe("top", *option), fragment)


def test_a_pid_that_does_not_exist_is_a_one_line_error_before_any_screen(require_root_bpf) -> None:
    assert_one_line_error(run_dbprobe("top", "-p", "4194304"), "no process with pid 4194304")
