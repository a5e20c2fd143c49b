#!/opt/dbprobe/bin/python
"""The dbprobe image's entry point: pick kernel headers, find the server, run dbprobe.

Usage: dbprobe-entrypoint [COMMAND [ARGS...]], with the arguments of ``dbprobe``.

- Kernel headers: the host's, when /lib/modules and /usr/src are mounted and hold them
  (or the kernel carries its own, CONFIG_IKHEADERS); otherwise the image's generic ones,
  which are enough for dbprobe's uprobe programs.
- DBPROBE_SERVER_PORT: when set, and the command traces servers without a -p or --binary
  of its own, wait (up to DBPROBE_WAIT_S seconds, default 120) until exactly one database
  server listens on that port, then trace that one only (-p PID). In the host's pid
  namespace dbprobe sees every server of the host, and a server's pid is not known before
  it starts.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from dbprobe.discover import processes as discovery
from dbprobe.kernel import preflight
from dbprobe.discover.processes import ServerProcess

GENERIC_HEADERS_VARIABLE = "GENERIC_KERNEL_HEADERS"
PORT_VARIABLE = "DBPROBE_SERVER_PORT"
WAIT_VARIABLE = "DBPROBE_WAIT_S"
DEFAULT_WAIT_S = 120.0
POLL_S = 1.0
SERVER_COMMANDS = frozenset({"slow", "locks", "txn", "list"})
SERVER_OPTIONS = frozenset({"-p", "--pid", "--binary"})


def say(message: str) -> None:
    print(f"dbprobe-entrypoint: {message}", file=sys.stderr, flush=True)


def choose_kernel_headers(environment: dict[str, str]) -> None:
    """Point BCC at the image's generic headers when the host provides none."""
    if preflight.kernel_headers_dir() is not None or preflight.KHEADERS_ARCHIVE.exists():
        return
    generic = environment.get(GENERIC_HEADERS_VARIABLE)
    if generic and preflight.kernel_headers_dir([Path(generic)]) is not None:
        environment["BCC_KERNEL_SOURCE"] = generic
        say(f"no kernel headers mounted for this kernel: using the image's generic ones ({generic})")


def traces_servers_unrestricted(arguments: list[str]) -> bool:
    """Whether `arguments` run a command that looks for servers, without -p or --binary."""
    if not arguments or arguments[0] not in SERVER_COMMANDS:
        return False
    return not any(argument.split("=", 1)[0] in SERVER_OPTIONS or argument[:2] == "-p"
                   for argument in arguments[1:])


def servers_on_port(port: int) -> list[ServerProcess]:
    return [server for server in discovery.find_servers() if server.port == port]


def wait_for_server(port: int, wait_s: float) -> ServerProcess:
    say(f"waiting for a database server on port {port}")
    deadline = time.monotonic() + wait_s
    while True:
        servers = servers_on_port(port)
        if len(servers) == 1:
            return servers[0]
        if len(servers) > 1:
            pids = ", ".join(str(server.pid) for server in servers)
            raise SystemExit(f"dbprobe-entrypoint: several servers on port {port} (pids {pids}): "
                             f"pass -p PID instead of {PORT_VARIABLE}")
        if time.monotonic() >= deadline:
            raise SystemExit(f"dbprobe-entrypoint: no database server on port {port} "
                             f"after {wait_s:g} s")
        time.sleep(POLL_S)


def describe(server: ServerProcess) -> str:
    where = f"container {server.container}" if server.container else "the host"
    return f"{server.db} {server.version or '(version unknown)'}, pid {server.pid}, in {where}"


def number_from(environment: dict[str, str], name: str, default: float) -> float:
    value = environment.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"dbprobe-entrypoint: {name}={value!r} is not a number") from None


def main(arguments: list[str]) -> None:
    environment = dict(os.environ)
    choose_kernel_headers(environment)
    if environment.get(PORT_VARIABLE) and traces_servers_unrestricted(arguments):
        port = int(number_from(environment, PORT_VARIABLE, 0))
        server = wait_for_server(port, number_from(environment, WAIT_VARIABLE, DEFAULT_WAIT_S))
        say(f"tracing {describe(server)}")
        arguments = [*arguments, "-p", str(server.pid)]
    os.execvpe("dbprobe", ["dbprobe", *arguments], environment)


if __name__ == "__main__":
    main(sys.argv[1:])
