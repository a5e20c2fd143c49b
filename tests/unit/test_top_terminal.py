"""`dbprobe top`'s full-screen view on a real terminal (tmux), fed by made-up intervals:
what it draws, what its keys do, a resize, and a terminal given back as it was."""

from __future__ import annotations

import sys
import time

import pytest

from tests.support.terminal import TmuxSession, process_alive

WIDTH, HEIGHT = 90, 12


@pytest.fixture
def session():
    with TmuxSession([sys.executable, "-m", "tests.support.top_fake"], width=WIDTH,
                     height=HEIGHT) as running:
        yield running


def _rows(text: str) -> list[str]:
    """The table's rows: the lines between its header and the blank ones."""
    lines = text.split("\n")
    start = next(n for n, line in enumerate(lines) if line.startswith("CALLS/S")) + 1
    return [line for line in lines[start:] if line.strip() and not line.startswith("1-5 ")]


def test_the_screen_shows_the_classes_and_its_keys_steer_it(session: TmuxSession) -> None:
    # Once the one warning the made-up run gives is on the screen: the rest stays still.
    text = session.wait_for(lambda t: "select pg_sleep(?)" in t and "made-up" in t, timeout=20)
    assert session.modes() == {"alternate_on": True, "cursor_flag": False, "keypad_flag": True}
    lines = session.screen()
    assert len(lines) == HEIGHT
    assert lines[0].startswith("dbprobe top  ") and "every 0.5 s" in lines[0]
    assert lines[2].startswith("sorted by MS/S (total)   database all   warning: a made-up")
    assert lines[-1].startswith("1-5 s S sort   d database   space p pause   q quit")
    assert [row.split()[6] for row in _rows(text)] == ["app", "shop", "shop"]
    assert "select pg_sleep(?)" in _rows(text)[0]

    session.press("3")
    text = session.wait_for(lambda t: "sorted by CALLS/S (calls)" in t)
    assert "select * from orders where id = ?" in _rows(text)[0]

    session.press("d")
    text = session.wait_for(lambda t: "database app" in t)
    assert len(_rows(text)) == 1 and "select pg_sleep(?)" in _rows(text)[0]
    session.press("d", "d")
    session.wait_for(lambda t: "database all" in t)

    session.press(" ")
    paused = session.wait_for(lambda t: "PAUSED" in t)
    time.sleep(1.5)  # three intervals: the clock and the error rates would have moved
    assert session.text() == paused
    session.press("p")
    session.wait_for(lambda t: "PAUSED" not in t and t.split("\n")[0] != paused.split("\n")[0])


def test_a_resize_redraws_at_the_new_size(session: TmuxSession) -> None:
    session.wait_for(lambda t: "select pg_sleep(?)" in t, timeout=20)
    session.resize(60, 8)
    text = session.wait_for(lambda t: "(made up)…" in t)
    lines = session.screen()
    assert len(lines) == 8 and max(len(line.rstrip()) for line in lines) == 60
    assert lines[7].startswith("1-5 s S sort")
    assert lines[3].startswith("CALLS/S") and "select" in text


def test_q_quits_with_the_terminal_given_back(session: TmuxSession) -> None:
    text = session.wait_for(lambda t: "a made-up warning" in t, timeout=20)
    assert text.split("\n")[2].endswith("database all   warning: a made-up warning")
    session.press("q")
    assert session.wait_exit() == 0
    assert not process_alive(session.pid)
    text = session.text()
    assert "quit after" in text  # written once curses had restored the screen
    assert "dbprobe: warning: a made-up warning" in text  # kept for stderr until then
    assert "CALLS/S" not in text  # the full-screen view was taken down
    assert session.modes() == {"alternate_on": False, "cursor_flag": True, "keypad_flag": False}
