"""Client sessions of a MySQL or MariaDB server in lock tests: a statement that waits runs on
a thread of its own while the test, in another session, holds the lock and lets it go."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import pytest

TOLERANCE_MS = 400  # scheduling on a busy machine; never below the true wait
CLOCK_SLACK_S = 0.05  # dbprobe's wall clock (from kernel monotonic times) against the test's


def run(connection, sql: str) -> list:
    cursor = connection.cursor()
    cursor.execute(sql)
    rows = cursor.fetchall() if cursor.with_rows else []
    cursor.close()
    return rows


class Waiter:
    """A statement run on its own thread, which blocks until the lock it waits for is free."""

    def __init__(self, connection, sql: str):
        self.rows: list | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(connection, sql), daemon=True)
        self._thread.start()

    def _run(self, connection, sql: str) -> None:
        try:
            self.rows = run(connection, sql)
        except Exception as error:  # a lock wait timeout is expected in some tests
            self.error = error

    def join(self) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the waiting statement never finished"


@dataclass
class Hold:
    """When the test queued the waiter, asked the holder to let go, and heard it had."""

    queued: float = 0.0
    releasing: float = 0.0
    released: float = 0.0


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def assert_waited(wait: dict, hold: Hold) -> None:
    """The wait began after the waiter was queued and ended when the holder let go."""
    start, end = wall(wait["start"]), wall(wait["ts"])
    assert hold.queued - CLOCK_SLACK_S <= start <= hold.releasing, (wait, hold)
    assert hold.releasing - CLOCK_SLACK_S <= end < hold.released + TOLERANCE_MS / 1000, (wait, hold)
    assert wait["wait_ms"] == pytest.approx((end - start) * 1000, abs=0.01)
