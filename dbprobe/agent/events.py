"""Events as JSON lines, for log shippers: slow statements, lock waits, deadlocks.

Each line is the object ``--json`` prints for the same record, with the agent's name for
the server added as ``"server"``. The file is opened for appending and reopened at every
reload (SIGHUP), so that logrotate can move it away. A write that fails is counted and said
once; the agent goes on serving its metrics.
"""

from __future__ import annotations

import json
import sys
from typing import Callable, TextIO

from dbprobe.errors import DbprobeError


def with_server(line: str, server: str | None) -> str:
    """The JSON object `line` with a "server" member added at its end."""
    if server is None:
        return line
    return f'{line[:-1]}, "server": {json.dumps(server, ensure_ascii=False)}}}'


class EventSink:
    def __init__(self, path: str | None, warn: Callable[[str], None]):
        self.path = path
        self._warn = warn
        self._stream: TextIO | None = None
        self._failing = False
        self.written = 0
        self.failed = 0
        self._open()

    def _open(self) -> None:
        if self.path is None:
            return
        if self.path == "-":
            self._stream = sys.stdout
            return
        try:
            self._stream = open(self.path, "a", encoding="utf-8")
        except OSError as error:
            raise DbprobeError(f"--events {self.path}: cannot open it for appending: "
                               f"{error.strerror or error}") from None

    def write(self, line: str) -> bool:
        if self._stream is None:
            return False
        try:
            self._stream.write(line + "\n")
        except (OSError, ValueError) as error:
            self._failed(error)
            return False
        self.written += 1
        return True

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as error:
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        self.failed += 1
        if not self._failing:
            self._failing = True
            reason = getattr(error, "strerror", None) or str(error)
            self._warn(f"cannot write events to {self.path}: {reason}; events are dropped "
                       f"(and counted) until the next reload")

    def reopen(self, path: str | None) -> None:
        """Close the file and open `path` (the same one after logrotate moved it)."""
        self.close()
        self.path = path
        self._failing = False
        self._open()

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.flush()
            if stream is not sys.stdout:
                stream.close()
        except (OSError, ValueError):
            pass
