"""A PostgreSQL frontend that sends extended-protocol messages in any order the protocol
allows, which no driver does on demand: several Executes of one row-limited portal before
a Sync, Describe and Close between them, named and unnamed statements and portals.

Only what the tests need: protocol 3.0 over the server's unix socket, trust
authentication, text parameters.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path


def _cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def parse(sql: str, statement: str = "") -> bytes:
    return _message(b"P", _cstring(statement) + _cstring(sql) + struct.pack("!h", 0))


def bind(statement: str = "", portal: str = "", params: tuple[str, ...] = ()) -> bytes:
    body = _cstring(portal) + _cstring(statement) + struct.pack("!hh", 0, len(params))
    for param in params:
        encoded = param.encode()
        body += struct.pack("!i", len(encoded)) + encoded
    return _message(b"B", body + struct.pack("!h", 0))


def describe_portal(portal: str = "") -> bytes:
    return _message(b"D", b"P" + _cstring(portal))


def describe_statement(statement: str = "") -> bytes:
    return _message(b"D", b"S" + _cstring(statement))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return _message(b"E", _cstring(portal) + struct.pack("!i", max_rows))


def close_portal(portal: str = "") -> bytes:
    return _message(b"C", b"P" + _cstring(portal))


SYNC = _message(b"S", b"")
FLUSH = _message(b"H", b"")


@dataclass
class Responses:
    """What the server answered up to ReadyForQuery: message types in order, errors."""

    kinds: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return self.kinds.count(kind)


class WireConnection:
    def __init__(self, socket_dir: Path, port: int, user: str, dbname: str = "postgres") -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(Path(socket_dir) / f".s.PGSQL.{port}"))
        self._buffer = b""
        params = _cstring("user") + _cstring(user) + _cstring("database") + _cstring(dbname)
        body = struct.pack("!i", 196608) + params + b"\0"
        self._sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self.backend_pid = 0
        self.wait_ready()

    def send(self, *messages: bytes) -> None:
        self._sock.sendall(b"".join(messages))

    def wait_ready(self) -> Responses:
        """Read until ReadyForQuery."""
        responses = Responses()
        while True:
            kind, body = self._read_message()
            if kind == "Z":
                return responses
            responses.kinds.append(kind)
            if kind == "E":
                responses.errors.append(body.decode(errors="replace"))
            elif kind == "K":
                self.backend_pid = struct.unpack("!i", body[:4])[0]
            elif kind == "R" and struct.unpack("!i", body[:4])[0] != 0:
                raise RuntimeError("the server asks for a password; the tests' clusters trust")

    def run(self, *messages: bytes) -> Responses:
        """Send the messages (ending with a Sync) and read the answers up to ReadyForQuery."""
        self.send(*messages)
        return self.wait_ready()

    def close(self) -> None:
        try:
            self._sock.sendall(_message(b"X", b""))
        finally:
            self._sock.close()

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_message(self) -> tuple[str, bytes]:
        header = self._read_exactly(5)
        length = struct.unpack("!i", header[1:])[0]
        return header[:1].decode(), self._read_exactly(length - 4)

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
