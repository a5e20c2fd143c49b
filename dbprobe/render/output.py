"""Where report text goes: stdout, as JSON lines or as lines made safe for a terminal."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

from dbprobe.render.text import terminal_safe


def status(message: str) -> None:
    """A message for the person running dbprobe, on stderr: never mixed into report output."""
    print(f"dbprobe: {message}", file=sys.stderr, flush=True)


def terminal_width() -> int | None:
    """The terminal's width, or None when stdout is not a terminal (lines are never cut)."""
    try:
        interactive = sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # stdout was closed
        interactive = False
    return shutil.get_terminal_size().columns if interactive else None


@dataclass(frozen=True, slots=True)
class Output:
    """How a report writes: JSON lines or text, literals shown or not, cut to a width."""

    json: bool
    show_literals: bool
    width: int | None  # the terminal's, or None to never cut lines
    prefix: str = ""  # put before every line (the demo tags each report's lines)

    def emit(self, text: str) -> None:
        """Write report text to stdout, each line with the prefix. Text reports escape control
        characters (JSON escapes them itself). The trace's poll loop flushes after each batch
        of records, not after every line."""
        if not self.json:
            text = terminal_safe(text)
        if self.prefix:
            text = "\n".join(self.prefix + line for line in text.split("\n"))
        sys.stdout.write(text + "\n")
