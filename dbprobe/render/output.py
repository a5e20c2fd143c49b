"""Where report text goes: stdout, as JSON lines or as lines made safe for a terminal."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

from dbprobe.errors import DbprobeError
from dbprobe.render.text import terminal_safe


class OutputFailed(DbprobeError):
    """stdout cannot be written (a full disk, a closed descriptor): one line, a clean detach."""


def require_stdout() -> None:
    """Fail before anything is attached when there is nowhere to write the report to."""
    if sys.stdout is None:
        raise OutputFailed("stdout is closed: give dbprobe somewhere to write its report "
                           "(a file, a pipe or the terminal)")


def write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputFailed(f"cannot write the report to stdout: {error.strerror or error}") from None


def flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputFailed(f"cannot write the report to stdout: {error.strerror or error}") from None


def status(message: str) -> None:
    """A message for the person running dbprobe, on stderr: never mixed into report output."""
    print(f"dbprobe: {terminal_safe(message)}", file=sys.stderr, flush=True)


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
        write_stdout(text + "\n")
