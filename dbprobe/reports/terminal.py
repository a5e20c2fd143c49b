"""The full-screen terminal, with the standard library's curses: set up and restored, keys
read without waiting, whole screens of lines drawn.

While the screen is up, what is written to stderr (a server that stops, lost events) would
land in the middle of the drawing; it goes to a callback instead (the screen shows it on its
status line) and is written to the real stderr once the terminal is restored.
"""

from __future__ import annotations

import curses
import locale
import sys
from typing import Callable, Collection, Sequence

RESIZE = "resize"


class Terminal:
    def __init__(self, on_message: Callable[[str], None]):
        self._on_message = on_message
        self._window = None
        self._stderr = None
        self._messages: list[str] = []
        self._ascii_only = False
        self._cursor = 1

    def __enter__(self) -> "Terminal":
        locale.setlocale(locale.LC_ALL, "")  # curses writes UTF-8 only under a UTF-8 locale
        self._ascii_only = locale.getpreferredencoding(False).lower().replace("-", "") != "utf8"
        self._window = curses.initscr()
        try:
            curses.noecho()
            curses.cbreak()  # keys arrive one by one; Ctrl-C still stops the trace
            self._window.keypad(True)
            self._window.nodelay(True)
            self._cursor = _set_cursor(0)
        except BaseException:
            curses.endwin()
            raise
        self._stderr, sys.stderr = sys.stderr, _Lines(self._message)
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr = self._stderr
        _set_cursor(self._cursor)
        self._window.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()
        for message in self._messages:
            sys.stderr.write(message + "\n")
        sys.stderr.flush()

    def _message(self, line: str) -> None:
        self._messages.append(line)
        self._on_message(line)

    def size(self) -> tuple[int, int]:
        """(width, height) as the terminal is now."""
        height, width = self._window.getmaxyx()
        return width, height

    def keys(self) -> list[str]:
        """The keys pressed since the last call, and RESIZE for a change of size."""
        keys = []
        while (code := self._window.getch()) != -1:
            if code == curses.KEY_RESIZE:
                keys.append(RESIZE)
            elif 0 <= code < 128:
                keys.append(chr(code))
        return keys

    def draw(self, lines: Sequence[str], highlighted: Collection[int] = ()) -> None:
        self._window.erase()
        for row, line in enumerate(lines):
            if self._ascii_only:
                line = line.encode("ascii", "replace").decode("ascii")
            try:
                self._window.addstr(row, 0, line, curses.A_REVERSE if row in highlighted else 0)
            except curses.error:
                pass  # the screen's last cell is written, but the cursor cannot move past it
        self._window.refresh()


def _set_cursor(visibility: int) -> int:
    """Shows (1) or hides (0) the cursor; its visibility before. A terminal that cannot hide
    it shows it."""
    try:
        return curses.curs_set(visibility)
    except curses.error:
        return 1


class _Lines:
    """A stand-in for stderr that hands on each complete line."""

    def __init__(self, on_line: Callable[[str], None]):
        self._on_line = on_line
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._on_line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
