"""A real terminal for tests: a program run in a detached tmux session of a fixed size, its
screen read back as text, keys sent to it, its exit status and the terminal's state read
once it ends.

The program runs under a shell that, when it ends, writes its exit status on the screen and
stays, so the terminal is still there to look at: back from the alternate screen, cursor
shown, keypad mode off. Each session has a tmux server of its own (its own socket), so
nothing else running tmux on the machine is touched; closing the session stops that server.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import psutil

REPOSITORY = Path(__file__).resolve().parents[2]
_CONFIG = "set -g status off\n"  # and nothing of a user's configuration
_EXITED = re.compile(r"^\[exit status (\d+)\]$", re.M)


class TmuxSession:
    def __init__(self, argv: Sequence[str], *, width: int, height: int,
                 env: dict[str, str] | None = None):
        self._workdir = Path(tempfile.mkdtemp(prefix="dbprobe-tmux-"))
        config = self._workdir / "tmux.conf"
        config.write_text(_CONFIG)
        self._socket = str(self._workdir / "socket")
        environment = {"LC_ALL": "C.UTF-8", "TERM": "tmux-256color", **(env or {})}
        exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items())
        command = (f"cd {shlex.quote(str(REPOSITORY))}; env -u COLUMNS -u LINES {exports} "
                   f"{shlex.join(argv)}; status=$?; echo; echo \"[exit status $status]\"; exec sleep 3600")
        self._tmux("-f", str(config), "new-session", "-d", "-x", str(width), "-y", str(height),
                   command)
        self.pid = self._program_pid(int(self._tmux("display-message", "-p", "#{pane_pid}")))

    @staticmethod
    def _program_pid(shell: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = psutil.Process(shell).children()
            if children:
                return children[0].pid
            time.sleep(0.02)
        raise AssertionError("the program did not start in its tmux session")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-u", "-S", self._socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> list[str]:
        """The pane as text, one string per line, trailing blanks kept to the pane's width."""
        return self._tmux("capture-pane", "-p", "-N").split("\n")[:-1]

    def text(self) -> str:
        return "\n".join(self.screen())

    def press(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-l", key) if len(key) == 1 else self._tmux("send-keys", key)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-x", str(width), "-y", str(height))

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 60.0) -> str:
        """The screen's text once the condition holds on it; fails with the screen if not."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if condition(text):
                return text
            if time.monotonic() > deadline or self.exit_status() is not None:
                raise AssertionError(f"the screen never showed what was awaited:\n{text}")
            time.sleep(0.1)

    def exit_status(self) -> int | None:
        """The program's exit status once it ended; None while it runs."""
        found = _EXITED.search(self.text())
        return int(found.group(1)) if found else None

    def modes(self) -> dict[str, bool]:
        """What the program left the terminal in: alternate screen, cursor shown, keypad."""
        names = ("alternate_on", "cursor_flag", "keypad_flag")
        values = self._tmux("display-message", "-p", " ".join(f"#{{{n}}}" for n in names)).split()
        return {name: value == "1" for name, value in zip(names, values)}

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the program did not end within {timeout} s:\n{self.text()}")
            time.sleep(0.1)
        return status

    def close(self) -> None:
        if process_alive(self.pid):  # a test that failed midway: stop it as a user would
            os.kill(self.pid, signal.SIGTERM)
            try:
                psutil.Process(self.pid).wait(30)
            except psutil.Error:
                pass
        subprocess.run(["tmux", "-S", self._socket, "kill-server"], capture_output=True)
        for path in self._workdir.iterdir():
            path.unlink(missing_ok=True)
        self._workdir.rmdir()

    def __enter__(self) -> "TmuxSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
