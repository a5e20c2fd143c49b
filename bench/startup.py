"""How long ``dbprobe slow`` takes from its start to its first event.

dbprobe is started against a server that already has a busy session: the session runs
``SELECT pg_sleep(0.2)`` over and over (every one slower than the default 100 ms
threshold), so the first JSON line arrives at most one statement after the probes are in
place. Measured: process start to the "probes attached" status line, and to that line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from bench.cluster import BenchServer
from bench.errors import BenchError
from bench.procstat import peak_rss_kib
from bench.snapshot import DbprobeSnapshot
from bench.tracers import ATTACHED_MARK

SLEEP_STATEMENT = "SELECT pg_sleep(0.2);\n"
FEED_INTERVAL_S = 0.2  # one statement per statement's duration: psql never runs dry
FIRST_EVENT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class StartupResult:
    to_attached_s: float
    to_first_event_s: float
    peak_rss_kib: int | None


def time_to_first_event(server: BenchServer, dbprobe: DbprobeSnapshot) -> StartupResult:
    session = server.server.run_as_postgres(
        ["psql", "-X", "-q", "-o", "/dev/null"], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    stop_feeding = threading.Event()
    feeder = threading.Thread(target=_feed, args=(session, stop_feeding), daemon=True)
    feeder.start()
    time.sleep(0.5)  # the session's backend exists before dbprobe starts
    try:
        return _run_dbprobe_until_first_event(server.pid, dbprobe)
    finally:
        stop_feeding.set()
        feeder.join()
        session.terminate()
        session.wait()


def _feed(session: subprocess.Popen, stop: threading.Event) -> None:
    assert session.stdin is not None
    try:
        while not stop.is_set():
            session.stdin.write(SLEEP_STATEMENT)
            session.stdin.flush()
            stop.wait(FEED_INTERVAL_S)
    except (BrokenPipeError, ValueError):
        pass


def _run_dbprobe_until_first_event(pid: int, dbprobe: DbprobeSnapshot) -> StartupResult:
    started = time.monotonic()
    process = subprocess.Popen(dbprobe.argv("slow", "--json", "-p", str(pid)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               **dbprobe.popen_kwargs())
    attached_at: list[float] = []
    stderr_lines: list[str] = []
    reader = threading.Thread(target=_follow_stderr, daemon=True,
                              args=(process, started, attached_at, stderr_lines))
    reader.start()
    timer = threading.Timer(FIRST_EVENT_TIMEOUT_S, process.kill)
    timer.start()
    try:
        first_event = _first_event_seconds(process, started)
        peak = peak_rss_kib(process.pid)
    finally:
        timer.cancel()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
        reader.join(5)
    if first_event is None or not attached_at:
        raise BenchError(f"dbprobe slow gave no event within {FIRST_EVENT_TIMEOUT_S:.0f} s: "
                         + " | ".join(stderr_lines[-3:]))
    return StartupResult(to_attached_s=attached_at[0], to_first_event_s=first_event,
                         peak_rss_kib=peak)


def _first_event_seconds(process: subprocess.Popen, started: float) -> float | None:
    assert process.stdout is not None
    for line in process.stdout:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") != "summary":
            return time.monotonic() - started
    return None


def _follow_stderr(process: subprocess.Popen, started: float, attached_at: list[float],
                   lines: list[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.rstrip())
        if ATTACHED_MARK in line and not attached_at:
            attached_at.append(time.monotonic() - started)


